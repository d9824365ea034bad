import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { configSha256 } from './config-hash';
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

const SHA_ATTRIBUTE = 'configSha256';
/** Each configuration ever published, under its hash, so a deploy (or its rollback) can name one. */
const configByShaKey = (sha256: string) => `${KEY_PREFIX.config}sha256#${sha256}`;

/** The item in DynamoDB's attribute-value form: what PutItem is given (by the SDK or a custom resource). */
export function configItem(config: LimiterConfig, key = CONFIG_ITEM_KEY): Record<string, { S: string }> {
  return {
    [TABLE.partitionKey]: { S: key },
    [CONFIG_ATTRIBUTE]: { S: JSON.stringify(config) },
    [SHA_ATTRIBUTE]: { S: configSha256(config) },
  };
}

/** Publishes `config`: kept under its hash first, then made the one the CLI reads. */
export async function publishConfig(client: DynamoDBClient, tableName: string, config: LimiterConfig): Promise<void> {
  const sha256 = configSha256(config);
  await client.send(new PutItemCommand({ TableName: tableName, Item: configItem(config, configByShaKey(sha256)) }));
  await client.send(new PutItemCommand({ TableName: tableName, Item: configItem(config) }));
}

/** A configuration published before, by its hash; undefined when none was. */
export async function readConfigBySha256(
  client: DynamoDBClient,
  tableName: string,
  sha256: string,
): Promise<LimiterConfig | undefined> {
  return readConfigItem(client, tableName, configByShaKey(sha256));
}

/** The published configuration, or undefined when the table has none (a deploy of an older version). */
export const readPublishedConfig = (client: DynamoDBClient, tableName: string): Promise<LimiterConfig | undefined> =>
  readConfigItem(client, tableName, CONFIG_ITEM_KEY);

async function readConfigItem(
  client: DynamoDBClient,
  tableName: string,
  key: string,
): Promise<LimiterConfig | undefined> {
  const out = await client.send(
    new GetItemCommand({ TableName: tableName, Key: { [TABLE.partitionKey]: { S: key } }, ConsistentRead: true }),
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
