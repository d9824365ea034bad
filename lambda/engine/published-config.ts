import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { KEY_PREFIX, TABLE } from './constants';
import { InvalidLimitError } from './errors';
import { type LimiterConfig, parseConfig } from './plans';

/**
 * The limiter configuration, published in the table beside the tenants it governs, so that the
 * CLI checks plans against what the functions run with and never against a hand-made copy. The
 * construct writes it at every deploy (a custom resource's PutItem); npm start writes it at
 * start-up. The functions never read it: theirs is config.json in their own code.
 */
export const CONFIG_ITEM_KEY = `${KEY_PREFIX.config}limiter`;
const CONFIG_ATTRIBUTE = 'config';

/** The item in DynamoDB's attribute-value form: what PutItem is given (by the SDK or a custom resource). */
export function configItem(config: LimiterConfig): Record<string, { S: string }> {
  return { [TABLE.partitionKey]: { S: CONFIG_ITEM_KEY }, [CONFIG_ATTRIBUTE]: { S: JSON.stringify(config) } };
}

export async function publishConfig(client: DynamoDBClient, tableName: string, config: LimiterConfig): Promise<void> {
  await client.send(new PutItemCommand({ TableName: tableName, Item: configItem(config) }));
}

/** The published configuration, or undefined when the table has none (a deploy of an older version). */
export async function readPublishedConfig(
  client: DynamoDBClient,
  tableName: string,
): Promise<LimiterConfig | undefined> {
  const out = await client.send(
    new GetItemCommand({
      TableName: tableName,
      Key: { [TABLE.partitionKey]: { S: CONFIG_ITEM_KEY } },
      ConsistentRead: true,
    }),
  );
  const text = out.Item?.[CONFIG_ATTRIBUTE]?.S;
  if (text === undefined) return undefined;
  try {
    return parseConfig(JSON.parse(text));
  } catch (err) {
    throw new InvalidLimitError(
      `the configuration published in table ${tableName} does not parse (${(err as Error).message}): redeploy, or pass --config`,
    );
  }
}
