import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Brake, mirrorBrakeReader, ssmBrakeReader } from './brake';
import { Directory } from './directory';
import { Limiter } from '../engine/limiter';
import { type LimiterConfig, parseConfig } from '../engine/plans';
import { LimitStore } from '../engine/store';
import { Ledger } from '../engine/ledger';
import { alertSinkFromEnvironment } from './alerts';
import { CLIENT_TIMEOUTS, clientConfig } from './aws-clients';
import { putMetrics } from './metrics';
import { choiceSetting, numberSetting } from './settings';

/** One JSON line per event; LIMITER_LOG=errors keeps only errors, LIMITER_LOG=off none (benchmarks). */
export const log = (entry: Record<string, unknown>): void => {
  const mode = process.env.LIMITER_LOG;
  if (mode === 'off' || (mode === 'errors' && entry.level !== 'error')) return;
  console.log(JSON.stringify(entry));
};

export function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/**
 * The limiter configuration: config.json beside the handler (the construct writes it into the
 * function's asset; Lambda unpacks the asset in LAMBDA_TASK_ROOT), or LIMITER_CONFIG (npm start, tests).
 */
function limiterConfigText(): string {
  if (process.env.LIMITER_CONFIG) return process.env.LIMITER_CONFIG;
  const file = path.join(process.env.LAMBDA_TASK_ROOT ?? process.cwd(), 'config.json');
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new Error(`no limiter configuration: ${file} is missing and LIMITER_CONFIG is not set`);
  }
}

/** The limiter configuration this function was deployed with, parsed and checked. */
export const limiterConfig = (): LimiterConfig => parseConfig(JSON.parse(limiterConfigText()));

export interface CommonDeps {
  readonly config: LimiterConfig;
  /** The container's one DynamoDB client (every item the function reads or writes goes through it). */
  readonly dynamo: DynamoDBClient;
  readonly store: LimitStore;
  readonly limiter: Limiter;
  readonly directory: Directory;
  readonly brake: Brake;
  readonly brakeRetryAfterSeconds: number;
  readonly log: (entry: Record<string, unknown>) => void;
  /** The usage ledger, when LEDGER_TABLE_NAME names its table. */
  readonly ledger?: Ledger;
}

/**
 * What every function builds once per container from the environment the construct gives it
 * (lambda/gateway/api.ts): the configuration, the store, the limiter, the key directory, the brake.
 */
export function commonDepsFromEnvironment(): CommonDeps {
  const tableName = required('TABLE_NAME');
  const config = limiterConfig();
  const dynamo = new DynamoDBClient(clientConfig(CLIENT_TIMEOUTS.dynamodb));
  const store = new LimitStore({
    client: dynamo,
    tableName,
    clockSkewMs: numberSetting('clockSkewMs'),
    deadlineMs: CLIENT_TIMEOUTS.dynamodb.deadlineMs,
    // A busy container spends a few units of a large bucket from memory, exactly (engine/leases.ts).
    leases: leasesOf(numberSetting('leasePercent')),
    onTransactionConflict: (operation) =>
      putMetrics({
        dimensions: { Function: 'store' },
        metrics: { TransactionConflicts: { value: 1, unit: 'Count' } },
        properties: { operation },
      }),
  });
  return {
    config,
    dynamo,
    store,
    // Calendar budgets alert on EventBridge (lambda/runtime/alerts.ts).
    limiter: new Limiter({ store, config, log, alerts: alertSinkFromEnvironment() }),
    directory: new Directory({
      client: dynamo,
      tableName,
      cacheMs: numberSetting('keyCacheTtlSeconds') * 1000,
      deadlineMs: CLIENT_TIMEOUTS.dynamodb.deadlineMs,
    }),
    brake: new Brake({
      // Deployed: the table's mirror of the parameter (lambda/brake-mirror), which scales with the containers; else SSM itself.
      // A stale copy (the mirror failing) is replaced by a direct read with SSM's own short deadline.
      ...(process.env.BRAKE_SOURCE === 'mirror'
        ? {
            reader: mirrorBrakeReader(
              DynamoDBDocumentClient.from(dynamo),
              tableName,
              process.env.BRAKE_PARAMETER_NAME ?? '',
            ),
            deadlineMs: CLIENT_TIMEOUTS.dynamodb.deadlineMs,
            directRead: {
              reader: ssmBrakeReader(
                new SSMClient(clientConfig(CLIENT_TIMEOUTS.ssm)),
                process.env.BRAKE_PARAMETER_NAME ?? '',
              ),
              deadlineMs: CLIENT_TIMEOUTS.ssm.deadlineMs,
            },
          }
        : { client: new SSMClient(clientConfig(CLIENT_TIMEOUTS.ssm)), deadlineMs: CLIENT_TIMEOUTS.ssm.deadlineMs }),
      parameterName: process.env.BRAKE_PARAMETER_NAME ?? '',
      cacheMs: numberSetting('brakeCacheTtlSeconds') * 1000,
      coldStart: choiceSetting('brakeColdStart'),
      log,
      metrics: putMetrics,
    }),
    brakeRetryAfterSeconds: numberSetting('brakeRetryAfterSeconds'),
    log,
    ...(process.env.LEDGER_TABLE_NAME
      ? {
          ledger: new Ledger({
            client: dynamo,
            tableName: process.env.LEDGER_TABLE_NAME,
            flushSeconds: numberSetting('ledgerFlushSeconds'),
            retentionDays: numberSetting('ledgerRetentionDays'),
            log,
          }),
        }
      : {}),
  };
}

/** The store's leases from the setting: a share of each limit in percent, 0 for none. */
const leasesOf = (percent: number) => (percent > 0 ? { share: percent / 100 } : false);
