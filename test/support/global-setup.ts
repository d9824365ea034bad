import type { TestProject } from 'vitest/node';
import { ensureTable } from '../../lambda/engine/store';
import { localClient, startDynamoDbLocal } from '../../lambda/local/dynamodb-local';

export const TEST_TABLE = 'llm-rate-limiter-test';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamoEndpoint: string;
    tableName: string;
  }
}

/** One DynamoDB Local for the whole run; tests isolate themselves by random key prefixes. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dynamo = await startDynamoDbLocal();
  const client = localClient(dynamo.endpoint);
  await ensureTable(client, TEST_TABLE);
  client.destroy();
  project.provide('dynamoEndpoint', dynamo.endpoint);
  project.provide('tableName', TEST_TABLE);
  return () => dynamo.stop();
}
