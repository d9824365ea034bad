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
import { adjust, type BucketState, type BucketWrite, decide, describe, probe, requireCost } from './bucket';
import { ATTR, DEFAULT_MAX_ATTEMPTS, KEY_PREFIX, TABLE, TTL_MARGIN_SECONDS } from './constants';
import { type Moment, moment } from './moment';
import { ringLength, slotMs } from './sliding-window';
import type { Decision } from './decision';
import { ContentionError, InvalidLimitError, StoreUnavailableError } from './errors';
import type { Limit } from './limits';

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
  /** Buckets whose last seen state is remembered, to guess the right write first. @default 10000 */
  readonly cacheSize?: number;
}

/** DynamoDB calls and failed conditions so far, for benchmarks and metrics. */
export interface StoreStats {
  calls: number;
  conditionFailures: number;
  reads: number;
}

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
  private readonly seen = new Map<string, BucketState>();

  constructor(options: LimitStoreOptions) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.tableName = options.tableName;
    this.clock = options.clock ?? Date.now;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.clockSkewMs = options.clockSkewMs ?? 0;
    this.cacheSize = options.cacheSize ?? 10_000;
  }

  /** Spend `cost` on `key` if `limit` allows it; a denial spends nothing. */
  async consume(key: string, limit: Limit, cost = 1): Promise<Decision> {
    requireCost(cost);
    this.checkLimit(limit);
    const pk = KEY_PREFIX.bucket + key;
    const now = this.now();
    let state = this.seen.get(pk);
    let fresh = false;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const plan = decide(limit, state, now, cost);
      let write = plan.write;
      if (!write) {
        if (fresh || plan.decision.exceedsLimit) return plan.decision;
        write = probe(limit, state, now, cost);
        if (!write) {
          state = await this.read(pk);
          fresh = true;
          continue;
        }
      }
      const outcome = await this.apply(pk, limit, write);
      state = outcome.state;
      fresh = true;
      if (outcome.ok) return { ...describe(limit, state, now), allowed: true };
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /**
   * Settle against a bucket: `delta` > 0 debits without a limit check (the bucket may go into
   * debt), `delta` < 0 refunds (never past full). `admittedAt` (epoch ms) says which
   * sliding-window slot a refund comes off. @default admittedAt now
   */
  async adjust(key: string, limit: Limit, delta: number, admittedAt?: number): Promise<void> {
    if (delta !== 0) requireCost(Math.abs(delta), 'adjustment');
    this.checkLimit(limit);
    const pk = KEY_PREFIX.bucket + key;
    const now = this.now();
    const admitted = admittedAt === undefined ? now : moment(admittedAt, this.clockSkewMs);
    let state = this.seen.get(pk);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const { write } = adjust(limit, state, now, delta, admitted);
      if (!write) return;
      const outcome = await this.apply(pk, limit, write);
      state = outcome.state;
      if (outcome.ok) return;
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /** The limit's numbers for `key` without spending anything (one consistent read). */
  async peek(key: string, limit: Limit): Promise<Decision> {
    const state = await this.read(KEY_PREFIX.bucket + key);
    return describe(limit, state, this.now());
  }

  private now(): Moment {
    return moment(this.clock(), this.clockSkewMs);
  }

  private checkLimit(limit: Limit): void {
    if (limit.shape === 'sliding_window' && slotMs(limit) < 4 * this.clockSkewMs) {
      throw new InvalidLimitError(
        `slidingWindow(${limit.limit}, ${limit.windowMs} ms, ${limit.subWindows}) has ${slotMs(limit)} ms slots, shorter than 4 x clockSkewMs (${this.clockSkewMs} ms): use fewer subWindows or a smaller clockSkewMs`,
      );
    }
  }

  private remember(pk: string, state: BucketState | undefined): void {
    this.seen.delete(pk);
    if (state === undefined) return;
    this.seen.set(pk, state);
    if (this.seen.size > this.cacheSize) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  private async read(pk: string): Promise<BucketState | undefined> {
    this.stats.calls++;
    this.stats.reads++;
    try {
      const out = await this.doc.send(new GetCommand({ TableName: this.tableName, Key: { [TABLE.partitionKey]: pk }, ConsistentRead: true }));
      const state = out.Item ? toState(out.Item) : undefined;
      this.remember(pk, state);
      return state;
    } catch (err) {
      throw new StoreUnavailableError('GetItem', pk, { cause: err });
    }
  }

  private async apply(pk: string, limit: Limit, write: BucketWrite): Promise<{ ok: boolean; state: BucketState | undefined }> {
    const expression = toExpression(write, limit);
    this.stats.calls++;
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { [TABLE.partitionKey]: pk },
          ...expression,
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      const state = toState(out.Attributes ?? {});
      this.remember(pk, state);
      return { ok: true, state };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) {
        this.stats.conditionFailures++;
        const state = err.Item ? toState(unmarshall(err.Item)) : undefined;
        this.remember(pk, state);
        return { ok: false, state };
      }
      throw new StoreUnavailableError('UpdateItem', pk, { cause: err });
    }
  }
}

function toState(item: Record<string, unknown>): BucketState {
  const num = (name: string): number | undefined => (typeof item[name] === 'number' ? (item[name] as number) : undefined);
  const slots: number[] = [];
  for (let i = 0; num(ATTR.slot + i) !== undefined; i++) slots.push(num(ATTR.slot + i) as number);
  const state: Record<string, unknown> = {
    tat: num(ATTR.tat),
    credit: num(ATTR.credit),
    creditAt: num(ATTR.creditAt),
    head: num(ATTR.head),
    total: num(ATTR.total),
    writes: num(ATTR.writes),
    slots: slots.length > 0 ? slots : undefined,
  };
  for (const name of Object.keys(state)) if (state[name] === undefined) delete state[name];
  return state as BucketState;
}

interface Expression {
  UpdateExpression: string;
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues: Record<string, unknown>;
}

/** Seconds since the epoch after which an item's state is the same as no item at all. */
function expiresAt(freshAtMs: number): number {
  return Math.ceil(freshAtMs / 1000) + TTL_MARGIN_SECONDS;
}

const tat = { '#tat': ATTR.tat };
const hasRoom = '#tat BETWEEN :late AND :lim';
const wasFull = 'attribute_not_exists(#tat) OR (#tat < :late AND #tat <= :lim)';

function toExpression(write: BucketWrite, limit: Limit): Expression {
  const exp = { '#exp': TABLE.ttlAttribute };
  switch (write.branch) {
    case 'advance':
      // The condition caps tat at horizon after this write, whatever other writers did: so is the expiry.
      return {
        ConditionExpression: hasRoom,
        UpdateExpression: 'SET #tat = #tat + :inc, #exp = :exp',
        ExpressionAttributeNames: { ...exp, ...tat },
        ExpressionAttributeValues: { ':late': write.late, ':lim': write.lim, ':inc': write.inc, ':exp': expiresAt(write.horizon) },
      };
    case 'start':
      return {
        ConditionExpression: wasFull,
        UpdateExpression: 'SET #tat = :tat, #exp = :exp',
        ExpressionAttributeNames: { ...exp, ...tat },
        ExpressionAttributeValues: { ':late': write.late, ':lim': write.lim, ':tat': write.tat, ':exp': expiresAt(write.tat) },
      };
    case 'restart': {
      const values: Record<string, unknown> = { ':early': write.early, ':tat': write.tat, ':credit': write.credit, ':exp': expiresAt(write.tat) };
      const conditions = ['attribute_not_exists(#tat)', 'attribute_not_exists(#cr)'];
      if (write.expectTat !== undefined) {
        conditions[0] = '#tat = :expectTat';
        values[':expectTat'] = write.expectTat;
      }
      if (write.expectCredit !== undefined) {
        conditions[1] = '#cr = :expectCredit';
        values[':expectCredit'] = write.expectCredit;
      }
      return {
        ConditionExpression: conditions.join(' AND '),
        UpdateExpression: 'SET #tat = :tat, #cr = :credit, #crAt = :early, #exp = :exp',
        ExpressionAttributeNames: { ...exp, ...tat, '#cr': ATTR.credit, '#crAt': ATTR.creditAt },
        ExpressionAttributeValues: values,
      };
    }
    case 'credit':
      return {
        ConditionExpression: '#tat > :mainBelow AND #tat <= :horizon AND #cr >= :cost',
        UpdateExpression: 'SET #cr = #cr - :cost',
        ExpressionAttributeNames: { ...tat, '#cr': ATTR.credit },
        ExpressionAttributeValues: { ':mainBelow': write.mainBelow, ':horizon': write.horizon, ':cost': write.cost },
      };
    case 'debit':
      // Debt can push tat past the horizon; the expiry moves with it (whole seconds, rounded up).
      return {
        ConditionExpression: '#tat >= :late',
        UpdateExpression: 'SET #tat = #tat + :inc, #exp = if_not_exists(#exp, :exp) + :incSeconds',
        ExpressionAttributeNames: { ...exp, ...tat },
        ExpressionAttributeValues: { ':late': write.late, ':inc': write.inc, ':exp': expiresAt(write.horizon), ':incSeconds': Math.ceil(write.inc / 1000) },
      };
    case 'refund':
      return {
        ConditionExpression: '#tat >= :floor',
        UpdateExpression: 'SET #tat = #tat - :dec',
        ExpressionAttributeNames: tat,
        ExpressionAttributeValues: { ':floor': write.floor, ':dec': write.dec },
      };
    case 'refill':
      return {
        ConditionExpression: '#tat = :expectTat',
        UpdateExpression: 'SET #tat = :late',
        ExpressionAttributeNames: tat,
        ExpressionAttributeValues: { ':expectTat': write.expectTat, ':late': write.late },
      };
    case 'init':
    case 'roll': {
      if (limit.shape !== 'sliding_window') throw new TypeError(`write ${write.branch} needs a sliding window`);
      const names: Record<string, string> = { ...exp, '#hd': ATTR.head, '#tot': ATTR.total, '#n': ATTR.writes };
      const values: Record<string, unknown> = { ':head': write.head, ':total': write.total, ':one': 1 };
      const sets = ['#hd = :head', '#tot = :total', '#exp = :exp'];
      write.slots.forEach((count, i) => {
        names[`#s${i}`] = ATTR.slot + i;
        values[`:s${i}`] = count;
        sets.push(`#s${i} = :s${i}`);
      });
      // Fresh once every slot the ring holds has left every container's window.
      values[':exp'] = expiresAt((write.head + ringLength(limit)) * slotMs(limit));
      if (write.branch === 'init') {
        return { ConditionExpression: 'attribute_not_exists(#hd)', UpdateExpression: `SET ${sets.join(', ')}, #n = :one`, ExpressionAttributeNames: names, ExpressionAttributeValues: values };
      }
      return {
        ConditionExpression: '#hd = :expectHead AND #n = :expectWrites',
        UpdateExpression: `SET ${sets.join(', ')}, #n = #n + :one`,
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: { ...values, ':expectHead': write.expectHead, ':expectWrites': write.expectWrites },
      };
    }
    case 'add': {
      const conditions = ['#hd = :head'];
      const values: Record<string, unknown> = { ':head': write.head, ':cost': write.cost, ':one': 1 };
      const names: Record<string, string> = { '#hd': ATTR.head, '#slot': ATTR.slot + write.position, '#n': ATTR.writes };
      if (write.maxTotal !== undefined) {
        conditions.push('#tot <= :maxTotal');
        values[':maxTotal'] = write.maxTotal;
      }
      if (write.minSlot !== undefined) {
        conditions.push('#slot >= :minSlot');
        values[':minSlot'] = write.minSlot;
      }
      const sets = ['#slot = #slot + :cost', '#n = #n + :one'];
      if (write.inTotal || write.maxTotal !== undefined) {
        names['#tot'] = ATTR.total;
        if (write.inTotal) sets.push('#tot = #tot + :cost');
      }
      return { ConditionExpression: conditions.join(' AND '), UpdateExpression: `SET ${sets.join(', ')}`, ExpressionAttributeNames: names, ExpressionAttributeValues: values };
    }
  }
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
