import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { type BucketState, check, type Plan, adjust, decide, describe, memoryMs, probe, requireCost } from './bucket';
import { ATTR, DEFAULT_MAX_ATTEMPTS, KEY_PREFIX, TABLE, TTL_MARGIN_SECONDS } from './constants';
import type { Decision } from './decision';
import { ContentionError, InvalidLimitError, StoreUnavailableError } from './errors';
import { attributeName, type BucketGuard, type Fragment, fragment } from './expressions';
import type { Limit } from './limits';
import { type Moment, moment } from './moment';
import { slotMs } from './sliding-window';

export interface LimitStoreOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** Epoch ms. Injected so tests and simulations control time. @default Date.now */
  readonly clock?: () => number;
  /** Conditional-write attempts per decision before giving up with ContentionError. @default 4 */
  readonly maxAttempts?: number;
  /**
   * How far this container's clock may be from true time. Refill and expiry are judged at
   * clock - clockSkewMs, charges stamped at clock + clockSkewMs, so clocks that differ by up to
   * this much never over-admit; the price is up to 2 x clockSkewMs of refill charged when an idle
   * bucket restarts, and sliding-window slots must be at least 4 x clockSkewMs long. @default 0
   */
  readonly clockSkewMs?: number;
  /** Items whose last seen state is remembered, to guess the right write first. @default 10000 */
  readonly cacheSize?: number;
}

/** One limit checked inside an item. Several checks of one item are decided by one write. */
export interface Check {
  /** The bucket's name inside the item (its attributes are `<name>_tat`, ...); '' for none. */
  readonly name: string;
  readonly limit: Limit;
  readonly cost: number;
  /** consume: spend `cost` if it fits. admit: require that `cost` fits, spend nothing. @default 'consume' */
  readonly mode?: 'consume' | 'admit';
  /** Evaluated and spent when it fits, but never denies. @default false */
  readonly shadow?: boolean;
}

export interface CheckOutcome {
  readonly check: Check;
  readonly decision: Decision;
}

export interface ItemOutcome {
  readonly allowed: boolean;
  /** One per check, in the order given. */
  readonly outcomes: readonly CheckOutcome[];
  /** The first non-shadow check that denied. */
  readonly deniedBy?: CheckOutcome;
  /** Epoch ms until which the item's block attribute (the penalty box) denies. */
  readonly blockedUntil?: number;
}

export interface ItemOptions {
  /** Attribute holding an epoch-ms "denied until"; while it lies ahead, every decision denies. */
  readonly block?: string;
  /** Other limits kept in the same item, so the item's TTL covers them too. */
  readonly alsoHolds?: readonly Limit[];
}

export interface Adjustment {
  readonly name: string;
  readonly limit: Limit;
  /** > 0 debits without a limit check (may leave debt); < 0 refunds, never past full. */
  readonly delta: number;
  /** When the refunded cost was admitted (epoch ms): a sliding window refunds that slot. */
  readonly admittedAt?: number;
}

/** DynamoDB calls and failed conditions so far, for benchmarks and metrics. */
export interface StoreStats {
  calls: number;
  conditionFailures: number;
  reads: number;
}

type Item = Record<string, unknown>;

/**
 * Limits on DynamoDB. One conditional UpdateItem per decision in steady state: the write is
 * guessed from the last state this container saw, the condition enforces the limit, and a failed
 * condition returns the item (ALL_OLD), so a miss costs one more write, never a read.
 */
export class LimitStore {
  readonly stats: StoreStats = { calls: 0, conditionFailures: 0, reads: 0 };
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly clock: () => number;
  private readonly maxAttempts: number;
  private readonly clockSkewMs: number;
  private readonly cacheSize: number;
  private readonly seen = new Map<string, Item>();

  constructor(options: LimitStoreOptions) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.tableName = options.tableName;
    this.clock = options.clock ?? Date.now;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.clockSkewMs = options.clockSkewMs ?? 0;
    this.cacheSize = options.cacheSize ?? 10_000;
  }

  /** Spend `cost` on the bucket `key` if `limit` allows it; a denial spends nothing. */
  async consume(key: string, limit: Limit, cost = 1): Promise<Decision> {
    const outcome = await this.decideItem(key, [{ name: '', limit, cost }]);
    return outcome.outcomes[0]!.decision;
  }

  /** Settle against the bucket `key` (see Adjustment). */
  async adjust(key: string, limit: Limit, delta: number, admittedAt?: number): Promise<void> {
    await this.adjustItem(key, [{ name: '', limit, delta, ...(admittedAt === undefined ? {} : { admittedAt }) }]);
  }

  /** The bucket's numbers without spending anything (one consistent read). */
  async peek(key: string, limit: Limit): Promise<Decision> {
    return (await this.peekItem(key, [{ name: '', limit, cost: 1 }])).outcomes[0]!.decision;
  }

  /** Decide every check of one item with one conditional write: all admit, or nothing is spent. */
  async decideItem(key: string, checks: readonly Check[], options: ItemOptions = {}): Promise<ItemOutcome> {
    for (const c of checks) {
      requireCost(c.cost);
      this.checkLimit(c.limit);
    }
    const pk = KEY_PREFIX.bucket + key;
    const at = this.now();
    let item = this.seen.get(pk);
    let fresh = false;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const evals = checks.map((c) => evaluate(c, bucketOf(item, c.name), at));
      const blockedUntil = options.block ? numberOf(item, options.block) : undefined;
      const blocked = blockedUntil !== undefined && blockedUntil > at.early;
      const deniedAt = evals.findIndex((e, i) => !checks[i]!.shadow && !e.decision.allowed);
      const final = deniedAt >= 0 && evals[deniedAt]!.decision.exceedsLimit;
      if ((blocked || deniedAt >= 0) && (fresh || final)) return denial(checks, evals, deniedAt, blocked ? blockedUntil : undefined);

      const fragments: Fragment[] = [];
      let needRead = false;
      evals.forEach((e, i) => {
        const c = checks[i]!;
        const source = e.decision.allowed ? e.source : c.shadow ? undefined : (e.probe ?? (needRead = true, undefined));
        if (source) fragments.push(fragment(source, c.limit, c.name, `a${i}`));
      });
      if (needRead) {
        item = await this.read(pk);
        fresh = true;
        continue;
      }
      if (options.block) fragments.push(notBlocked(options.block, at));
      const outcome = await this.write(pk, fragments, at, [...checks.map((c) => c.limit), ...(options.alsoHolds ?? [])]);
      item = outcome.item;
      fresh = true;
      if (outcome.ok) {
        const outcomes = checks.map((c, i) => ({ check: c, decision: evals[i]!.decision.allowed ? { ...describe(c.limit, bucketOf(item, c.name), at), allowed: true } : evals[i]!.decision }));
        return { allowed: true, outcomes };
      }
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /** Settle several buckets of one item with one conditional write. */
  async adjustItem(key: string, adjustments: readonly Adjustment[], options: ItemOptions = {}): Promise<void> {
    for (const a of adjustments) {
      if (a.delta !== 0) requireCost(Math.abs(a.delta), 'adjustment');
      this.checkLimit(a.limit);
    }
    const pk = KEY_PREFIX.bucket + key;
    const at = this.now();
    let item = this.seen.get(pk);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const fragments: Fragment[] = [];
      adjustments.forEach((a, i) => {
        const admitted = a.admittedAt === undefined ? at : moment(a.admittedAt, this.clockSkewMs);
        const { write } = adjust(a.limit, bucketOf(item, a.name), at, a.delta, admitted);
        if (write) fragments.push(fragment(write, a.limit, a.name, `a${i}`));
      });
      if (fragments.length === 0) return;
      const outcome = await this.write(pk, fragments, at, [...adjustments.map((a) => a.limit), ...(options.alsoHolds ?? [])]);
      item = outcome.item;
      if (outcome.ok) return;
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /** Every check's numbers without spending anything (one consistent read). */
  async peekItem(key: string, checks: readonly Check[]): Promise<ItemOutcome> {
    const item = await this.read(KEY_PREFIX.bucket + key);
    const at = this.now();
    return { allowed: true, outcomes: checks.map((c) => ({ check: c, decision: describe(c.limit, bucketOf(item, c.name), at) })) };
  }

  /**
   * Compare-and-set plain attributes of an item (the penalty box): succeeds only if every
   * attribute in `expect` still has the given value (undefined: absent). Returns the item after
   * the write, or as it was when the comparison failed.
   */
  async compareAndSet(key: string, expect: Readonly<Record<string, number | undefined>>, set: Readonly<Record<string, number | string>>, freshAtMs: number): Promise<{ ok: boolean; item: Item | undefined }> {
    const names: Record<string, string> = { '#exp': TABLE.ttlAttribute };
    const values: Record<string, unknown> = { ':exp': expiresAt(freshAtMs) };
    const conditions = Object.entries(expect).map(([attr, value], i) => {
      names[`#e${i}`] = attr;
      if (value === undefined) return `attribute_not_exists(#e${i})`;
      values[`:e${i}`] = value;
      return `#e${i} = :e${i}`;
    });
    // Never shorten the item's TTL here: its buckets may need longer than the block does.
    const sets = ['#exp = if_not_exists(#exp, :exp)'];
    Object.entries(set).forEach(([attr, value], i) => {
      names[`#s${i}`] = attr;
      values[`:s${i}`] = value;
      sets.push(`#s${i} = :s${i}`);
    });
    const fragments: Fragment[] = [{ ...(conditions.length ? { condition: conditions.join(' AND ') } : {}), sets, names, values }];
    return this.send(KEY_PREFIX.bucket + key, fragments);
  }

  /** The time as this store sees it (see clockSkewMs). */
  now(): Moment {
    return moment(this.clock(), this.clockSkewMs);
  }

  private checkLimit(limit: Limit): void {
    if (limit.shape === 'sliding_window' && slotMs(limit) < 4 * this.clockSkewMs) {
      throw new InvalidLimitError(
        `slidingWindow(${limit.limit}, ${limit.windowMs} ms, ${limit.subWindows}) has ${slotMs(limit)} ms slots, shorter than 4 x clockSkewMs (${this.clockSkewMs} ms): use fewer subWindows or a smaller clockSkewMs`,
      );
    }
  }

  private remember(pk: string, item: Item | undefined): void {
    this.seen.delete(pk);
    if (item === undefined) return;
    this.seen.set(pk, item);
    if (this.seen.size > this.cacheSize) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private async read(pk: string): Promise<Item | undefined> {
    this.stats.calls++;
    this.stats.reads++;
    try {
      const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: { [TABLE.partitionKey]: pk }, ConsistentRead: true }));
      this.remember(pk, out.Item);
      return out.Item;
    } catch (err) {
      throw new StoreUnavailableError('GetItem', pk, { cause: err });
    }
  }

  /** One conditional write of all fragments; the item's TTL covers the longest memory of `limits`. */
  private write(pk: string, fragments: Fragment[], at: Moment, limits: readonly Limit[]) {
    const memory = Math.max(0, ...limits.map(memoryMs));
    const exp: Fragment = { sets: ['#exp = :exp'], names: { '#exp': TABLE.ttlAttribute }, values: { ':exp': expiresAt(at.late + memory) } };
    return this.send(pk, [...fragments, exp]);
  }

  private async send(pk: string, fragments: Fragment[]): Promise<{ ok: boolean; item: Item | undefined }> {
    // DynamoDB rejects redundant parentheses: only an OR needs them once it is ANDed with others.
    const conditions = fragments.flatMap((f) => (f.condition ? [f.condition] : []));
    const condition = conditions.length > 1 ? conditions.map((c) => (c.includes(' OR ') ? `(${c})` : c)).join(' AND ') : conditions[0];
    this.stats.calls++;
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { [TABLE.partitionKey]: pk },
          UpdateExpression: `SET ${fragments.flatMap((f) => f.sets).join(', ')}`,
          ...(condition ? { ConditionExpression: condition } : {}),
          ExpressionAttributeNames: Object.assign({}, ...fragments.map((f) => f.names)),
          ExpressionAttributeValues: Object.assign({}, ...fragments.map((f) => f.values)),
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      this.remember(pk, out.Attributes);
      return { ok: true, item: out.Attributes };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        this.stats.conditionFailures++;
        const item = err.Item ? unmarshall(err.Item) : undefined;
        this.remember(pk, item);
        return { ok: false, item };
      }
      throw new StoreUnavailableError('UpdateItem', pk, { cause: err });
    }
  }
}

interface Evaluation {
  readonly decision: Decision;
  /** The write (consume) or guard (admit) that makes an admission true in the store. */
  readonly source?: Plan['write'] | BucketGuard;
  /** What to try when a stale view says deny; undefined: read first. */
  readonly probe?: Plan['write'] | BucketGuard;
}

function evaluate(c: Check, state: BucketState | undefined, at: Moment): Evaluation {
  if (c.mode === 'admit') {
    const { decision, guard } = check(c.limit, state, at, c.cost);
    return { decision, source: guard, probe: guard };
  }
  const plan = decide(c.limit, state, at, c.cost);
  return { decision: plan.decision, ...(plan.write ? { source: plan.write } : {}), ...(plan.write ? {} : { probe: probe(c.limit, state, at, c.cost) }) };
}

function denial(checks: readonly Check[], evals: readonly Evaluation[], deniedAt: number, blockedUntil: number | undefined): ItemOutcome {
  const outcomes = checks.map((c, i) => ({ check: c, decision: evals[i]!.decision }));
  return { allowed: false, outcomes, ...(deniedAt >= 0 ? { deniedBy: outcomes[deniedAt]! } : {}), ...(blockedUntil === undefined ? {} : { blockedUntil }) };
}

function notBlocked(attribute: string, at: Moment): Fragment {
  return { condition: 'attribute_not_exists(#blk) OR #blk <= :blkAt', sets: [], names: { '#blk': attribute }, values: { ':blkAt': at.early } };
}

function numberOf(item: Item | undefined, attribute: string): number | undefined {
  const value = item?.[attribute];
  return typeof value === 'number' ? value : undefined;
}

/** The state of the bucket called `name` inside an item. */
function bucketOf(item: Item | undefined, name: string): BucketState | undefined {
  if (!item) return undefined;
  const num = (attr: string) => numberOf(item, attributeName(name, attr));
  const slots: number[] = [];
  for (let i = 0; num(ATTR.slot + i) !== undefined; i++) slots.push(num(ATTR.slot + i)!);
  const state: Record<string, number | number[]> = {};
  const fields = { tat: ATTR.tat, credit: ATTR.credit, creditAt: ATTR.creditAt, head: ATTR.head, total: ATTR.total, writes: ATTR.writes } as const;
  for (const [field, attr] of Object.entries(fields)) {
    const value = num(attr);
    if (value !== undefined) state[field] = value;
  }
  if (slots.length > 0) state.slots = slots;
  return Object.keys(state).length ? (state as BucketState) : undefined;
}

/** Epoch seconds after which an item no longer matters, with a day's margin. */
function expiresAt(freshAtMs: number): number {
  return Math.ceil(freshAtMs / 1000) + TTL_MARGIN_SECONDS;
}

/** The table as the construct deploys it (key schema and TTL from TABLE), for local runs and tests. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return;
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: TABLE.partitionKey, KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: TABLE.partitionKey, AttributeType: 'S' }],
    }),
  );
  await client.send(new UpdateTimeToLiveCommand({ TableName: tableName, TimeToLiveSpecification: { AttributeName: TABLE.ttlAttribute, Enabled: true } }));
}
