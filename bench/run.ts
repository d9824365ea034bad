/** npm run bench: every benchmark, one JSON line per figure. Not part of npm test. */
import { startDynamoDbLocal } from '../local/dynamodb-local';
import { benchAuthorizer, benchObservability } from './authorizer';
import { benchConstruct } from './construct';
import { benchCost } from './cost';
import { benchBrake } from './brake';
import { benchEngine, benchLeases } from './engine';
import { benchFidelity } from './fidelity';
import { benchGateway } from './gateway';
import { benchPackage } from './package';
import { benchProxy } from './proxy';
import { benchSecurity } from './security';

const only = process.argv[2];
const dynamo = await startDynamoDbLocal();
try {
  if (!only || only === 'engine') await benchEngine(dynamo.endpoint);
  if (only === 'leases') await benchLeases(dynamo.endpoint); // (part of engine)
  if (!only || only === 'authorizer') await benchAuthorizer(dynamo.endpoint);
  if (!only || only === 'observability') await benchObservability(dynamo.endpoint);
  if (!only || only === 'proxy') await benchProxy(dynamo.endpoint);
  if (!only || only === 'security') await benchSecurity(dynamo.endpoint);
  if (!only || only === 'fidelity') await benchFidelity(dynamo.endpoint);
  if (!only || only === 'cost') await benchCost(dynamo.endpoint);
  if (!only || only === 'brake') await benchBrake();
  if (!only || only === 'construct') await benchConstruct();
  if (!only || only === 'package') await benchPackage();
  // Last: npm start's stack points the SDK's environment at its own local services.
  if (!only || only === 'gateway') await benchGateway();
} finally {
  await dynamo.stop();
}
