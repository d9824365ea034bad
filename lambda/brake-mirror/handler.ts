import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetParameterCommand, type GetParameterCommandOutput, ParameterNotFound, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { TABLE } from '../engine/constants';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
import { isThrottling, withBackoff } from '../runtime/backoff';
import { BRAKE_MIRROR_HEARTBEAT_MS, BRAKE_MIRROR_SHARDS, brakeMirrorKey } from '../runtime/brake';
import { log, required } from '../runtime/environment';

export interface MirrorDeps {
  readonly ssm: SSMClient;
  readonly doc: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly parameterName: string;
  readonly shards?: number;
  readonly clock?: () => number;
  readonly log: (entry: Record<string, unknown>) => void;
}

/**
 * How the mirror outlasts SSM throttling (Parameter Store's 40 GetParameter calls a second are
 * shared by the whole account): up to 6 s of retries with pauses of 0-100 ms, doubling to at most
 * 1 s, within the function's 10 s timeout (the table's writes after it take about a second at most).
 */
export const MIRROR_SSM_BACKOFF = { budgetMs: 6_000, baseMs: 100, capMs: 1_000 } as const;

const NAMES = {
  '#value': 'value',
  '#version': 'version',
  '#modified': 'modifiedAt',
  '#missing': 'missing',
  '#at': 'mirroredAt',
};
/** A present parameter's copy lands over a copy of an older change, or of the same change at a lower version. */
const presentIsNewer =
  'attribute_not_exists(#modified) OR #modified < :modified OR (#modified = :modified AND #version <= :version AND #missing = :false)';
/** A missing parameter's copy lands over a copy of a change made before the parameter was seen missing. */
const missingIsNewer = 'attribute_not_exists(#modified) OR #modified < :at';

/**
 * Copies the brake parameter into the table, where every container reads it. Runs on each change
 * of the parameter (EventBridge's "Parameter Store Change", delivered best effort) and once a
 * minute (so a lost event is repaired within a minute): one SSM read per run, whatever the number
 * of containers. Each run reads the copies first and writes only one that differs from the
 * parameter or is due for its heartbeat (BRAKE_MIRROR_HEARTBEAT_MS): a read costs a fifth of a
 * write, and most runs change nothing.
 *
 * One run outlasts SSM throttling (MIRROR_SSM_BACKOFF), so a flip is not left to the next minute.
 *
 * Events arrive out of order, so a copy never replaces one of a later change. Later is by the
 * parameter's LastModifiedDate, then its version: a version alone would freeze the mirror after
 * the parameter is deleted and created again, since the new one starts at version 1. A missing
 * parameter is released; its copy keeps the last change's date (and version 0), so the parameter
 * created again, modified after that, lands over it.
 */
export async function mirrorBrake(deps: MirrorDeps): Promise<{ value: string; version: number; missing: boolean }> {
  let value = '';
  let version = 0;
  let modified = 0;
  let missing = false;
  try {
    const out = await readParameter(deps);
    value = out.Parameter?.Value ?? '';
    version = out.Parameter?.Version ?? 0;
    modified = out.Parameter?.LastModifiedDate?.getTime() ?? 0;
  } catch (err) {
    if (!(err instanceof ParameterNotFound)) throw err;
    missing = true;
  }
  const at = (deps.clock ?? Date.now)();
  const shards = deps.shards ?? BRAKE_MIRROR_SHARDS;
  const copy = missing
    ? {
        UpdateExpression: 'SET #value = :value, #version = :version, #missing = :true, #at = :at',
        ConditionExpression: missingIsNewer,
        ExpressionAttributeNames: NAMES,
        ExpressionAttributeValues: { ':value': value, ':version': version, ':true': true, ':at': at },
      }
    : {
        UpdateExpression:
          'SET #value = :value, #version = :version, #modified = :modified, #missing = :false, #at = :at',
        ConditionExpression: presentIsNewer,
        ExpressionAttributeNames: NAMES,
        ExpressionAttributeValues: {
          ':value': value,
          ':version': version,
          ':modified': modified,
          ':false': false,
          ':at': at,
        },
      };
  const written = await Promise.all(
    Array.from({ length: shards }, async (_, shard): Promise<number> => {
      const Key = { [TABLE.partitionKey]: brakeMirrorKey(deps.parameterName, shard) };
      const { Item: held } = await deps.doc.send(new GetCommand({ TableName: deps.tableName, Key }));
      if (held && sameCopy(held, { value, version, modified, missing }) && isFresh(Number(held.mirroredAt), at))
        return 0;
      try {
        await deps.doc.send(new UpdateCommand({ TableName: deps.tableName, Key, ...copy }));
        return 1;
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw err; // a later change is there already
        return 0;
      }
    }),
  );
  deps.log({ outcome: 'brake_mirrored', version, missing, shards, written: written.reduce((a, b) => a + b, 0) });
  return { value, version, missing };
}

/** A copy that says what the parameter says (a missing parameter's copy keeps its last change's date). */
const sameCopy = (
  held: Record<string, unknown>,
  read: { value: string; version: number; modified: number; missing: boolean },
): boolean =>
  held.value === read.value &&
  Number(held.version) === read.version &&
  held.missing === read.missing &&
  (read.missing || Number(held.modifiedAt) === read.modified);

/** Rewritten within the heartbeat, and not dated after this run (a clock that went back rewrites it). */
const isFresh = (mirroredAt: number, at: number): boolean =>
  mirroredAt <= at && at - mirroredAt < BRAKE_MIRROR_HEARTBEAT_MS;

/** The parameter, read again after throttling (only the mirror does: the request path never waits for SSM). */
const readParameter = (deps: MirrorDeps): Promise<GetParameterCommandOutput> =>
  withBackoff(() => deps.ssm.send(new GetParameterCommand({ Name: deps.parameterName })), {
    ...MIRROR_SSM_BACKOFF,
    retryable: isThrottling,
    onRetry: (err, retry, delayMs) =>
      deps.log({
        level: 'warn',
        message: 'SSM throttled the brake read: retrying',
        error: (err as Error).name,
        retry,
        delayMs,
      }),
  });

/** Built once per container from the environment the construct gives the mirror. */
export function mirrorDepsFromEnvironment(): MirrorDeps {
  return {
    ssm: new SSMClient(clientConfig(CLIENT_TIMEOUTS.ssm)),
    doc: DynamoDBDocumentClient.from(new DynamoDBClient(clientConfig(CLIENT_TIMEOUTS.dynamodb))),
    tableName: required('TABLE_NAME'),
    parameterName: required('BRAKE_PARAMETER_NAME'),
    log,
  };
}
