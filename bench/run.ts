/** npm run bench: every benchmark, one JSON line per figure. Not part of npm test. */
import { startDynamoDbLocal } from '../test/support/dynamodb-local';
import { benchEngine } from './engine';

const dynamo = await startDynamoDbLocal();
try {
  await benchEngine(dynamo.endpoint);
} finally {
  await dynamo.stop();
}
