import { readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** Temporary folders the tests make: CDK apps' default outdirs (cdk.out*) and the tests' own (llm-limiter-*). */
const TEMPORARY = /^(cdk\.out|llm-limiter-)/;

/** Removes the temporary folders made since `startedMs` (by this run), so a run leaves nothing behind. */
function removeTemporaryFolders(startedMs: number): void {
  for (const name of readdirSync(tmpdir())) {
    if (!TEMPORARY.test(name)) continue;
    const dir = join(tmpdir(), name);
    try {
      if (statSync(dir).birthtimeMs >= startedMs) rmSync(dir, { recursive: true, force: true });
    } catch {
      // gone already (another cleanup), nothing to do
    }
  }
}

/** One DynamoDB Local for the whole run; tests isolate themselves by random key prefixes. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const startedMs = Date.now() - 1_000;
  const dynamo = await startDynamoDbLocal();
  const client = localClient(dynamo.endpoint);
  await ensureTable(client, TEST_TABLE);
  client.destroy();
  project.provide('dynamoEndpoint', dynamo.endpoint);
  project.provide('tableName', TEST_TABLE);
  return async () => {
    await dynamo.stop();
    removeTemporaryFolders(startedMs);
  };
}
