import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetParameterCommand, ParameterNotFound, type SSMClient } from '@aws-sdk/client-ssm';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { BRAKE_MIRROR_SHARDS, brakeMirrorKey } from '../runtime/brake';
import { TABLE } from '../engine/constants';

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
 * Copies the brake parameter into the table, where every container reads it. Runs on each change
 * of the parameter (EventBridge's "Parameter Store Change", delivered best effort) and once a
 * minute (so a lost event is repaired within a minute): one SSM read per run, whatever the number
 * of containers. Each shard item keeps the parameter's version, and a write never replaces a newer
 * version, so events arriving out of order cannot bring an old value back.
 */
export async function mirrorBrake(deps: MirrorDeps): Promise<{ value: string; version: number; missing: boolean }> {
  let value = '';
  let version = 0;
  let missing = false;
  try {
    const out = await deps.ssm.send(new GetParameterCommand({ Name: deps.parameterName }));
    value = out.Parameter?.Value ?? '';
    version = out.Parameter?.Version ?? 0;
  } catch (err) {
    if (!(err instanceof ParameterNotFound)) throw err;
    missing = true;
  }
  const at = (deps.clock ?? Date.now)();
  const shards = deps.shards ?? BRAKE_MIRROR_SHARDS;
  await Promise.all(
    Array.from({ length: shards }, async (_, shard) => {
      try {
        await deps.doc.send(
          new UpdateCommand({
            TableName: deps.tableName,
            Key: { [TABLE.partitionKey]: brakeMirrorKey(deps.parameterName, shard) },
            UpdateExpression: 'SET #value = :value, #version = :version, #missing = :missing, #at = :at',
            ConditionExpression: 'attribute_not_exists(#version) OR #version <= :version',
            ExpressionAttributeNames: {
              '#value': 'value',
              '#version': 'version',
              '#missing': 'missing',
              '#at': 'mirroredAt',
            },
            ExpressionAttributeValues: { ':value': value, ':version': version, ':missing': missing, ':at': at },
          }),
        );
      } catch (err) {
        if (!(err instanceof ConditionalCheckFailedException)) throw err; // a newer version is there already
      }
    }),
  );
  deps.log({ outcome: 'brake_mirrored', version, missing, shards });
  return { value, version, missing };
}
