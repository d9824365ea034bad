import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureTable } from '../../lambda/engine/store';
import { ensureLedgerTable } from '../../lambda/engine/ledger';
import { localClient, startDynamoDbLocal } from '../../local/dynamodb-local';

export const TEST_TABLE = 'llm-rate-limiter-test';
export const TEST_LEDGER_TABLE = 'llm-rate-limiter-test-ledger';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamoEndpoint: string;
    tableName: string;
    ledgerTableName: string;
  }
}

/** One DynamoDB Local for the whole run; tests isolate themselves by random key prefixes. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Every temporary folder of this run (CDK apps' default cdk.out*, the tests' own) goes in one
  // folder of its own, removed at the end: a run leaves nothing behind and never touches another
  // run's folders (two runs on one machine once removed each other's).
  const runDir = mkdtempSync(join(tmpdir(), 'llm-limiter-run-'));
  process.env.TMPDIR = runDir;
  const dynamo = await startDynamoDbLocal();
  const client = localClient(dynamo.endpoint);
  await ensureTable(client, TEST_TABLE);
  await ensureLedgerTable(client, TEST_LEDGER_TABLE);
  client.destroy();
  project.provide('dynamoEndpoint', dynamo.endpoint);
  project.provide('tableName', TEST_TABLE);
  project.provide('ledgerTableName', TEST_LEDGER_TABLE);
  return async () => {
    await dynamo.stop();
    rmSync(runDir, { recursive: true, force: true });
  };
}
