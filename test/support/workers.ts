import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dynamoEndpoint, tableName } from './dynamo';

const run = promisify(execFile);

/** Runs a worker script (one "Lambda container") in a process of its own, on the tests' table; its JSON answer. */
export async function runWorker<T>(worker: string, ...args: string[]): Promise<T> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', worker, dynamoEndpoint(), tableName(), ...args]);
  return JSON.parse(stdout) as T;
}
