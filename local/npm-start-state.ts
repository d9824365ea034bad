import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * Where a running `npm start` says what it runs on (its table, brake parameter and endpoints, which
 * change at every start), so that `npm run cli -- --local ...` finds them: the commands the README
 * and the start-up banner print work as printed. A discovery file, not a configuration: the CLI
 * reads the limiter configuration from the table.
 */
export interface NpmStartState {
  readonly baseUrl: string;
  readonly tableName: string;
  /** The usage ledger's table (absent in a state file written before it existed). */
  readonly ledgerTableName?: string;
  readonly brakeParameterName: string;
  readonly dynamoEndpoint: string;
  readonly ssmEndpoint: string;
}

/** In .data/ of the directory npm runs in (LLM_LIMITER_DATA_DIR elsewhere, for tests). */
export const npmStartStateFile = (): string =>
  path.resolve(process.env.LLM_LIMITER_DATA_DIR ?? '.data', 'npm-start.json');

export function writeNpmStartState(state: NpmStartState): void {
  const file = npmStartStateFile();
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(state, null, 2)}\n`);
}

export function removeNpmStartState(): void {
  rmSync(npmStartStateFile(), { force: true });
}

/** What the running npm start wrote, or undefined when none is running here. */
export function readNpmStartState(): NpmStartState | undefined {
  try {
    return JSON.parse(readFileSync(npmStartStateFile(), 'utf8')) as NpmStartState;
  } catch {
    return undefined;
  }
}
