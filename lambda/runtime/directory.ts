import { createHash } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { DEFAULT_STORE_DEADLINE_MS, KEY_PREFIX, TABLE } from '../engine/constants';
import { StoreUnavailableError } from '../engine/errors';
import type { Identity, TenantRecord } from '../engine/limiter';
import { type Overrides, parsePlan } from '../engine/plans';

/** An API key as stored: only its SHA-256 hash is the item's key; the key itself is never kept. */
export interface KeyRecord extends Identity {
  readonly status: 'active' | 'revoked';
  /** ISO time of creation. */
  readonly created: string;
}

/** Tenant and user ids: no ':' (item keys use it as separator), nothing a log would choke on. */
export const ID_PATTERN = /^[A-Za-z0-9._@-]{1,128}$/;
/** What a key may look like: printable ASCII without spaces, 20 to 200 characters. */
export const API_KEY_PATTERN = /^[\x21-\x7e]{20,200}$/;

export const hashKey = (apiKey: string): string => createHash('sha256').update(apiKey, 'utf8').digest('hex');

type Headers = Readonly<Record<string, string | undefined>> | null | undefined;
type MultiHeaders = Readonly<Record<string, readonly string[] | undefined>> | null | undefined;

/** Every value of a header (name in lower case, matched without regard to case), from the multi-value map when there is one. */
export function headerValues(headers: Headers, multi: MultiHeaders | undefined, name: string): string[] {
  const found: string[] = [];
  for (const [k, v] of Object.entries(multi ?? {})) if (k.toLowerCase() === name && v) found.push(...v);
  if (found.length === 0)
    for (const [k, v] of Object.entries(headers ?? {})) if (k.toLowerCase() === name && v !== undefined) found.push(v);
  return found;
}

/**
 * The caller's key from `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key`. Header
 * names are matched without regard to case; a header sent twice, two different keys, or a value
 * that is not a well-formed key is a problem, named (never quoting the key).
 */
export function extractApiKey(headers: Headers, multi?: MultiHeaders): { key: string } | { problem: string } {
  const values = (name: string): string[] => headerValues(headers, multi, name);
  const auth = values('authorization');
  const xApiKey = values('x-api-key');
  if (auth.length > 1 || xApiKey.length > 1) return { problem: 'credential header sent more than once' };
  const candidates: string[] = [];
  if (auth.length === 1) {
    const match = /^Bearer +(\S*)\s*$/i.exec(auth[0]!);
    if (!match) return { problem: 'Authorization is not "Bearer <key>"' };
    candidates.push(match[1]!);
  }
  if (xApiKey.length === 1) candidates.push(xApiKey[0]!.trim());
  if (candidates.length === 0) return { problem: 'no API key: send Authorization: Bearer <key> or x-api-key' };
  if (candidates.length === 2 && candidates[0] !== candidates[1]) return { problem: 'two different API keys' };
  const key = candidates[0]!;
  if (!API_KEY_PATTERN.test(key)) return { problem: 'malformed API key' };
  return { key };
}

export interface DirectoryOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** How long a key or tenant lookup is reused in this container (the revocation delay). @default 30000, at most 60000 */
  readonly cacheMs?: number;
  readonly clock?: () => number;
  /** Deadline of one lookup, retries included: past it the lookup fails (StoreUnavailableError). The functions use 1000. @default 10000 */
  readonly deadlineMs?: number;
}

export const MAX_KEY_CACHE_MS = 60_000;
/** A tenant's plan and overrides are reread when older than this: a plan change reaches traffic within 5 s. */
export const TENANT_CACHE_MS = 5_000;

/**
 * Keys and tenants, read through a short per-container cache (unknown keys are cached too): a key
 * for `cacheMs` (the revocation delay), a tenant for at most TENANT_CACHE_MS (a plan change's).
 */
export class Directory {
  readonly stats = { reads: 0 };
  private readonly doc: DynamoDBDocumentClient;
  private readonly cache = new Map<string, { at: number; value: Record<string, unknown> | undefined }>();
  private readonly cacheMs: number;
  private readonly clock: () => number;

  constructor(private readonly options: DirectoryOptions) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.cacheMs = Math.min(MAX_KEY_CACHE_MS, options.cacheMs ?? 30_000);
    this.clock = options.clock ?? Date.now;
  }

  /** The key's record, if it exists and its ids are well formed. */
  async key(hash: string): Promise<KeyRecord | undefined> {
    const item = await this.get(KEY_PREFIX.apiKey + hash);
    if (!item || !ID_PATTERN.test(String(item.tenant)) || !ID_PATTERN.test(String(item.user))) return undefined;
    return {
      tenant: String(item.tenant),
      user: String(item.user),
      status: item.status === 'active' ? 'active' : 'revoked',
      created: String(item.created ?? ''),
    };
  }

  /** The tenant's plan and overrides. Overrides that do not parse throw InvalidLimitError (fail closed). */
  async tenant(id: string): Promise<TenantRecord | undefined> {
    const item = await this.get(KEY_PREFIX.tenant + id, Math.min(this.cacheMs, TENANT_CACHE_MS));
    if (!item || typeof item.plan !== 'string') return undefined;
    const overrides = item.overrides === undefined ? undefined : parsePlan(item.overrides, `tenant ${id} overrides`);
    return { id, plan: item.plan, ...(overrides ? { overrides } : {}) };
  }

  private async get(pk: string, maxAgeMs = this.cacheMs): Promise<Record<string, unknown> | undefined> {
    const now = this.clock();
    const hit = this.cache.get(pk);
    if (hit && now - hit.at < maxAgeMs) return hit.value;
    this.stats.reads++;
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.options.tableName, Key: { [TABLE.partitionKey]: pk } }),
        { abortSignal: AbortSignal.timeout(this.options.deadlineMs ?? DEFAULT_STORE_DEADLINE_MS) },
      );
      this.cache.delete(pk);
      this.cache.set(pk, { at: now, value: out.Item });
      if (this.cache.size > 10_000) this.cache.delete(this.cache.keys().next().value!);
      return out.Item;
    } catch (err) {
      throw new StoreUnavailableError('GetItem', pk.startsWith(KEY_PREFIX.apiKey) ? `${KEY_PREFIX.apiKey}<hash>` : pk, {
        cause: err,
      });
    }
  }
}

/** Writes an item; with `onlyIfNew` it must not exist yet (ConditionalCheckFailedException otherwise). */
async function put(
  client: DynamoDBClient,
  tableName: string,
  item: Record<string, unknown>,
  onlyIfNew: boolean,
): Promise<void> {
  const condition = onlyIfNew
    ? { ConditionExpression: 'attribute_not_exists(#pk)', ExpressionAttributeNames: { '#pk': TABLE.partitionKey } }
    : {};
  await DynamoDBDocumentClient.from(client).send(new PutCommand({ TableName: tableName, Item: item, ...condition }));
}

/** Admin writes (the CLI, npm start and tests use them): a key is stored by hash only. */
export async function putApiKey(
  client: DynamoDBClient,
  tableName: string,
  apiKey: string,
  record: Omit<KeyRecord, 'created'> & { created?: string },
  options: { onlyIfNew?: boolean } = {},
): Promise<void> {
  if (!ID_PATTERN.test(record.tenant) || !ID_PATTERN.test(record.user))
    throw new TypeError(`tenant and user ids must match ${ID_PATTERN}`);
  if (!API_KEY_PATTERN.test(apiKey))
    throw new TypeError('an API key is 20-200 printable ASCII characters without spaces');
  const item = {
    [TABLE.partitionKey]: KEY_PREFIX.apiKey + hashKey(apiKey),
    tenant: record.tenant,
    user: record.user,
    status: record.status,
    created: record.created ?? new Date().toISOString(),
  };
  await put(client, tableName, item, options.onlyIfNew ?? false);
}

export async function putTenant(
  client: DynamoDBClient,
  tableName: string,
  tenant: { id: string; plan: string; overrides?: Overrides },
  options: { onlyIfNew?: boolean } = {},
): Promise<void> {
  if (!ID_PATTERN.test(tenant.id)) throw new TypeError(`tenant ids must match ${ID_PATTERN}`);
  const item = {
    [TABLE.partitionKey]: KEY_PREFIX.tenant + tenant.id,
    plan: tenant.plan,
    ...(tenant.overrides ? { overrides: JSON.parse(JSON.stringify(tenant.overrides)) } : {}),
  };
  await put(client, tableName, item, options.onlyIfNew ?? false);
}
