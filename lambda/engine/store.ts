import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  ProvisionedThroughputExceededException,
  RequestLimitExceeded,
  type DynamoDBClient,
  ResourceNotFoundException,
  ThrottlingException,
  TransactionCanceledException,
  TransactionConflictException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  type BatchGetCommandOutput,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { adjust, admission, type BucketState, memoryMs, numbersOf, requireCost } from './bucket';
import { DEFAULT_MAX_ATTEMPTS, DEFAULT_STORE_DEADLINE_MS, KEY_PREFIX, TABLE, TTL_MARGIN_SECONDS } from './constants';
import type { Decision } from './decision';

export type { Adjustment, Check, ItemOptions, ItemOutcome } from './item';
import { ContentionError, InvalidLimitError, ItemThrottledError, LimiterError, StoreUnavailableError } from './errors';
import { type Fragment, fragment } from './expressions';
import type { Spent } from './gcra';
import { LeaseBook, type LeaseOptions } from './leases';
import {
  type Adjustment,
  admitted,
  bucketOf,
  type Check,
  type Item,
  type ItemOptions,
  type ItemOutcome,
  planItem,
  predictItem,
  withBuckets,
} from './item';
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
  /**
   * Deadline of one operation (a decision on an item, a settlement, an adjustment), all its
   * DynamoDB calls and retries included: past it the calls are aborted and the operation fails
   * with StoreUnavailableError, so a hung DynamoDB yields the layer's failure mode, never a hang.
   * A write aborted in flight may still have landed: it is then spent, never over-admitted.
   * The deployed functions use 1000 (CLIENT_TIMEOUTS). @default 10000
   */
  readonly deadlineMs?: number;
  /** Called for every write refused because another transaction held an item (it is retried). @default nothing */
  readonly onTransactionConflict?: (operation: 'UpdateItem' | 'TransactWriteItems') => void;
  /**
   * Leases (leases.ts): a container deciding often on a large bucket takes a few units more in the
   * same write and spends them from memory, exactly. Off by default in the engine; the deployed
   * functions turn them on. @default false
   */
  readonly leases?: boolean | LeaseOptions;
}

/** One item of a decision over several (see decideTogether). */
export interface ItemRequest {
  readonly key: string;
  readonly checks: readonly Check[];
  readonly options?: ItemOptions;
  /** A failure of this item fails the whole decision (its layer's failure mode is closed). */
  readonly required?: boolean;
}

/** DynamoDB calls and failed conditions so far, for benchmarks and metrics. */
export interface StoreStats {
  calls: number;
  conditionFailures: number;
  reads: number;
  /** Writes DynamoDB refused because another transaction held an item (retried after a pause). */
  transactionConflicts: number;
}

/**
 * Real DynamoDB refuses a write to an item that an in-flight TransactWriteItems is writing
 * (TransactionConflictException), and cancels a transaction that meets another one
 * (TransactionCanceledException, reason TransactionConflict). Nothing was written: that is
 * contention, not an outage. Such a write is retried after a short jittered pause, up to this many
 * times per operation on top of maxAttempts, within the operation's deadline (which is the real
 * bound: 12 pauses take about 0.4 s). Six were too few: under a storm on one item, an operation
 * that also met a few failed conditions gathered seven conflicts over its attempts about once in
 * a thousand, and gave up with ContentionError (test/fidelity/dynamodb-faults.test.ts, 30% of
 * writes refused, caught it once in four to ten runs).
 */
export const CONFLICT_RETRIES = 12;

/** BatchGetItem calls per read of several items: keys left unprocessed are asked again this many times at most. */
const BATCH_READ_ROUNDS = 5;

/** A jittered pause before retrying a write that met another transaction: 5-15 ms, growing with the retry up to 35-45 ms. */
const conflictPause = (retry: number): Promise<void> =>
  new Promise((r) => setTimeout(r, 5 * Math.min(retry, 7) + Math.random() * 10));

/**
 * Limits on DynamoDB. One conditional UpdateItem per decision in steady state: the write is
 * guessed from the last state this container saw, the condition enforces the limit, and a failed
 * condition returns the item (ALL_OLD), so a miss costs one more write, never a read.
 */
export class LimitStore {
  readonly stats: StoreStats = { calls: 0, conditionFailures: 0, reads: 0, transactionConflicts: 0 };
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly clock: () => number;
  private readonly maxAttempts: number;
  private readonly clockSkewMs: number;
  private readonly cacheSize: number;
  private readonly deadlineMs: number;
  private readonly seen = new Map<string, Item>();
  private readonly onConflict: (operation: 'UpdateItem' | 'TransactWriteItems') => void;
  private readonly leases: LeaseBook | undefined;
  /** Items with a decision's write on its way, and how many. */
  private readonly writing = new Map<string, number>();

  constructor(options: LimitStoreOptions) {
    this.onConflict = options.onTransactionConflict ?? (() => {});
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.tableName = options.tableName;
    this.clock = options.clock ?? Date.now;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.clockSkewMs = options.clockSkewMs ?? 0;
    this.cacheSize = options.cacheSize ?? 10_000;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_STORE_DEADLINE_MS;
    this.leases = options.leases
      ? new LeaseBook(options.leases === true ? {} : options.leases, this.cacheSize)
      : undefined;
  }

  /** The abort signal of one operation's calls (see deadlineMs). */
  private deadline(): AbortSignal {
    return AbortSignal.timeout(this.deadlineMs);
  }

  /** Units of the bucket `name` of `key` this container holds in a live lease and has not spent (leases.ts). */
  leased(key: string, name = ''): number {
    return this.leases?.unspent(KEY_PREFIX.bucket + key, name, this.now().late) ?? 0;
  }

  /** Whether this container holds a live lease with units left on one of the buckets `names` of `key` (leases.ts). */
  holdsLease(key: string, names: readonly string[]): boolean {
    return this.leases?.holds(KEY_PREFIX.bucket + key, names, this.now().late) ?? false;
  }

  /** Spend `cost` on the bucket `key` if `limit` allows it; a denial spends nothing. */
  async consume(key: string, limit: Limit, cost = 1): Promise<Decision> {
    const outcome = await this.decideItem(key, [{ name: '', limit, cost }]);
    return outcome.decisions[0]!;
  }

  /** Settle against the bucket `key` (see Adjustment). */
  async adjust(key: string, limit: Limit, delta: number, admittedAt?: number): Promise<void> {
    await this.adjustItem(key, [{ name: '', limit, delta, ...(admittedAt === undefined ? {} : { admittedAt }) }]);
  }

  /** The bucket's numbers without spending anything (one consistent read). */
  async peek(key: string, limit: Limit): Promise<Decision> {
    return (await this.peekItem(key, [{ name: '', limit, cost: 1 }])).decisions[0]!;
  }

  /** Decide every check of one item with one conditional write: all admit, or nothing is spent. */
  async decideItem(key: string, checks: readonly Check[], options: ItemOptions = {}): Promise<ItemOutcome> {
    this.validate(checks);
    const pk = KEY_PREFIX.bucket + key;
    const at = this.now();
    const clockMs = (at.early + at.late) / 2;
    const signal = this.deadline();
    const item = this.seen.get(pk);
    const local = this.fromLeases(pk, checks, options, item, at);
    if (local) return local;
    // One lease at a time per item: a write already on its way here takes it for everyone.
    const extras = this.leases && !this.writing.has(pk) ? checks.map((c) => this.leases!.extraFor(pk, c, clockMs)) : [];
    this.writing.set(pk, (this.writing.get(pk) ?? 0) + 1);
    try {
      return await this.writeDecision(pk, key, checks, options, { at, clockMs, signal, item, extras });
    } finally {
      const left = (this.writing.get(pk) ?? 1) - 1;
      if (left > 0) this.writing.set(pk, left);
      else this.writing.delete(pk);
    }
  }

  /** The write loop of decideItem (see there). */
  private async writeDecision(
    pk: string,
    key: string,
    checks: readonly Check[],
    options: ItemOptions,
    start: { at: Moment; clockMs: number; signal: AbortSignal; item: Item | undefined; extras: number[] },
  ): Promise<ItemOutcome> {
    const { at, clockMs, signal } = start;
    let { item, extras } = start;
    let fresh = false;
    let conflicts = 0;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const lease = this.leaseOf(checks, extras, at);
      const step = planItem(lease.checks, options, item, fresh, lease.at);
      // A lease is taken only where it fits: never a denial (or a probe) for the sake of one.
      if (
        lease.leasing &&
        (step.kind !== 'write' || step.evals.some((e, i) => extras[i]! > 0 && !e.decision.allowed))
      ) {
        extras = [];
        attempt--;
        continue;
      }
      if (step.kind === 'done') return step.outcome;
      if (step.kind === 'read') {
        item = await this.read(pk, signal);
        fresh = true;
        continue;
      }
      // Until DynamoDB answers, decisions made meanwhile in this container start from the state this
      // write will most likely leave (so concurrent requests here guess the commuting branch).
      this.remember(pk, predictItem(item, lease.checks, step.evals));
      const outcome = await this.write(
        pk,
        step.fragments,
        lease.at,
        [...checks.map((c) => c.limit), ...(options.alsoHolds ?? [])],
        signal,
      );
      if (outcome.conflict) {
        this.remember(pk, item);
        if (!(await this.afterConflict(++conflicts, 'UpdateItem'))) break;
        attempt--;
        continue;
      }
      item = outcome.item;
      fresh = true;
      if (outcome.ok) {
        const leases = this.granted(pk, checks, extras, clockMs, lease.at);
        return {
          ...admitted(checks, step.evals, item, at),
          ...(item ? { written: item } : {}),
          ...(leases ? { leases } : {}),
        };
      }
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /**
   * The checks as written when leases are taken with them: their costs, and the moment, whose
   * late end moves as far as the shortest stamp of the token and leaky buckets leased.
   */
  private leaseOf(
    checks: readonly Check[],
    extras: readonly number[],
    at: Moment,
  ): { checks: readonly Check[]; at: Moment; leasing: boolean } {
    const leased = checks.filter((_, i) => (extras[i] ?? 0) > 0);
    if (!this.leases || leased.length === 0) return { checks, at, leasing: false };
    const stamps = leased.map((c) => this.leases!.stampMs(c.limit)).filter((ms) => ms > 0);
    const ms = stamps.length ? Math.min(...stamps) : 0;
    return {
      checks: checks.map((c, i) => ((extras[i] ?? 0) > 0 ? { ...c, cost: c.cost + extras[i]! } : c)),
      at: { early: at.early, late: at.late + ms },
      leasing: true,
    };
  }

  /** Records what a write spent, and the leases it took; the lease of each check, if any. */
  private granted(
    pk: string,
    checks: readonly Check[],
    extras: readonly number[],
    clockMs: number,
    stamped: Moment,
  ): (number | undefined)[] | undefined {
    const book = this.leases;
    if (!book) return undefined;
    for (const c of checks) book.used(pk, c, clockMs);
    if (!extras.some((e) => e > 0)) return undefined;
    return checks.map((c, i) =>
      (extras[i] ?? 0) > 0 ? book.grant(pk, c, extras[i]!, book.lastMoment(c.limit, stamped)) : undefined,
    );
  }

  /**
   * A decision made from this container's leases alone, with no write: every check that spends is
   * covered by a live lease, every admission check holds on the state last seen, and the item is
   * not in a penalty box as far as this container knows.
   */
  private fromLeases(
    pk: string,
    checks: readonly Check[],
    options: ItemOptions,
    item: Item | undefined,
    at: Moment,
  ): ItemOutcome | undefined {
    if (!this.leases || checks.some((c) => c.shadow || c.noLease) || checks.every((c) => c.mode === 'admit'))
      return undefined;
    const blockedUntil = options.block ? item?.[options.block] : undefined;
    if (typeof blockedUntil === 'number' && blockedUntil > at.early) return undefined;
    const admits = checks.every(
      (c) => c.mode !== 'admit' || admission(c.limit, bucketOf(item, c.name), at, c.cost).decision.allowed,
    );
    if (!admits) return undefined;
    const leases = this.leases.spend(pk, checks, at.late);
    if (!leases) return undefined;
    return {
      allowed: true,
      decisions: checks.map((c) => ({ ...numbersOf(c.limit, bucketOf(item, c.name), at), allowed: true })),
      leases,
      ...(item ? { item } : {}),
    };
  }

  /**
   * One decision over several items (a request's layers): every item admits, or none keeps what it
   * spent. `atomic` decides them in one TransactWriteItems (two write units per item); otherwise
   * they go out in parallel (one round-trip of latency) and, when any item denies, is throttled, or
   * fails while `required`, the items that admitted are refunded. A failure of an item that is not
   * required is returned in its place and changes nothing else (the layer's failure mode is open).
   * Refunds that fail are reported to `onRefundFailed` with the item's index (the spend stays: conservative).
   */
  async decideTogether(
    items: readonly ItemRequest[],
    options: { atomic?: boolean; onRefundFailed?: (index: number, err: LimiterError) => void } = {},
  ): Promise<(ItemOutcome | LimiterError)[]> {
    if (options.atomic) {
      try {
        return await this.decideItemsAtomically(items);
      } catch (err) {
        if (!(err instanceof LimiterError)) throw err;
        return items.map(() => err);
      }
    }
    // No later than any admission's own stamp: what a refund may give back is reckoned from here.
    const admittedAt = this.clock();
    const settled = await Promise.allSettled(items.map((it) => this.decideItem(it.key, it.checks, it.options)));
    const results = settled.map((s) => {
      if (s.status === 'fulfilled') return s.value;
      if (s.reason instanceof LimiterError) return s.reason;
      throw s.reason;
    });
    const undo = results.some(
      (r, i) =>
        (r instanceof LimiterError && (r instanceof ItemThrottledError || items[i]!.required)) ||
        (!(r instanceof LimiterError) && !r.allowed),
    );
    if (undo) await this.refundAdmitted(items, results, options.onRefundFailed, admittedAt);
    return results;
  }

  /** Gives back what the admitted items of a decision that did not go through spent. */
  private async refundAdmitted(
    items: readonly ItemRequest[],
    results: readonly (ItemOutcome | LimiterError)[],
    onRefundFailed: ((index: number, err: LimiterError) => void) | undefined,
    admittedAt: number,
  ): Promise<void> {
    await Promise.all(
      results.flatMap((r, i) => {
        if (r instanceof LimiterError || !r.allowed) return [];
        const it = items[i]!;
        const adjustments = it.checks.flatMap((c, j) =>
          c.mode !== 'admit' && r.decisions[j]!.allowed ? [refundOf(c, r, j, admittedAt)] : [],
        );
        if (!adjustments.length) return [];
        return [
          this.adjustItem(it.key, adjustments, { alsoHolds: it.options?.alsoHolds ?? [] }).catch((err: unknown) => {
            if (!(err instanceof LimiterError)) throw err;
            onRefundFailed?.(i, err);
          }),
        ];
      }),
    );
  }

  /**
   * Decide several items atomically with one TransactWriteItems: every item admits, or none is
   * written. Costs two write units per item (transactional) and returns no new state, so the
   * numbers reported are this container's prediction.
   */
  async decideItemsAtomically(items: readonly ItemRequest[]): Promise<ItemOutcome[]> {
    for (const it of items) this.validate(it.checks);
    const pks = items.map((it) => KEY_PREFIX.bucket + it.key);
    const at = this.now();
    const signal = this.deadline();
    const state = pks.map((pk) => this.seen.get(pk));
    const fresh = pks.map(() => false);
    let conflicts = 0;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const steps = items.map((it, i) => planItem(it.checks, it.options ?? {}, state[i], fresh[i]!, at));
      const denied = steps.findIndex((s) => s.kind === 'done' && !s.outcome.allowed);
      if (denied >= 0)
        return steps.map((s, i) =>
          s.kind === 'done'
            ? s.outcome
            : {
                allowed: true,
                decisions: items[i]!.checks.map((c) => numbersOf(c.limit, bucketOf(state[i], c.name), at)),
              },
        );
      const reads = steps.flatMap((s, i) => (s.kind === 'read' ? [i] : []));
      if (reads.length) {
        await this.readInto(state, pks, reads, signal);
        for (const i of reads) fresh[i] = true;
        continue;
      }
      const writes = steps.map((s, i) => {
        const it = items[i]!;
        const fragments = s.kind === 'write' ? s.fragments : [];
        return this.request(pks[i]!, [
          ...fragments,
          this.expiry(at, [...it.checks.map((c) => c.limit), ...(it.options?.alsoHolds ?? [])]),
        ]);
      });
      this.stats.calls++;
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: writes.map((w) => ({
              Update: { ...w, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const },
            })),
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw unavailable('TransactWriteItems', pks.join(','), err);
        // An on-demand table throttles a transaction by cancelling it: throughput, not a failed condition.
        if (isThrottling(err)) throw unavailable('TransactWriteItems', pks.join(','), err);
        if (isConflict(err)) {
          if (!(await this.afterConflict(++conflicts, 'TransactWriteItems'))) break;
          attempt--;
          continue;
        }
        this.stats.conditionFailures++;
        err.CancellationReasons?.forEach((reason, i) => {
          if (reason.Code === 'ConditionalCheckFailed') {
            state[i] = reason.Item ? unmarshall(reason.Item) : undefined;
            fresh[i] = true;
            this.remember(pks[i]!, state[i]);
          }
        });
        continue;
      }
      return steps.map((s, i) => {
        const evals = s.kind === 'write' ? s.evals : [];
        const predicted = predictItem(state[i], items[i]!.checks, evals);
        this.remember(pks[i]!, predicted);
        return admitted(items[i]!.checks, evals, predicted, at);
      });
    }
    throw new ContentionError(pks.join(','), this.maxAttempts);
  }

  /**
   * Claims `key` once: true for the one caller whose conditional put creates it, false for every
   * other (now or later, until `expiresAtMs` plus the TTL margin). One write, no read.
   */
  async claimOnce(
    key: string,
    expiresAtMs: number,
    record: Readonly<Record<string, string | number>> = {},
  ): Promise<boolean> {
    const pk = KEY_PREFIX.alert + key;
    this.stats.calls++;
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { [TABLE.partitionKey]: pk, ...record, [TABLE.ttlAttribute]: expiresAt(expiresAtMs) },
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': TABLE.partitionKey },
        }),
        { abortSignal: this.deadline() },
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw unavailable('PutItem', pk, err);
    }
  }

  /**
   * Adds to a fair-share meter (lambda/engine/share.ts) and returns it as it stands after: one
   * UpdateItem, ADD of each count (a new attribute starts at 0), REMOVE of the slots that have left
   * its window, and a TTL a day past `expiresAtMs`. Not conditional: a resend after a lost answer
   * counts twice (a meter is an estimate; documented there).
   */
  async addToMeter(
    key: string,
    adds: Readonly<Record<string, number>>,
    removes: readonly string[],
    expiresAtMs: number,
  ): Promise<Item> {
    const pk = KEY_PREFIX.share + key;
    const names: Record<string, string> = { '#exp': TABLE.ttlAttribute };
    const values: Record<string, unknown> = { ':exp': expiresAt(expiresAtMs) };
    const added = Object.entries(adds).map(([attr, n], i) => {
      names[`#a${i}`] = attr;
      values[`:a${i}`] = n;
      return `#a${i} :a${i}`;
    });
    const removed = removes.map((attr, i) => {
      names[`#r${i}`] = attr;
      return `#r${i}`;
    });
    const update = [
      'SET #exp = :exp',
      ...(added.length ? [`ADD ${added.join(', ')}`] : []),
      ...(removed.length ? [`REMOVE ${removed.join(', ')}`] : []),
    ].join(' ');
    this.stats.calls++;
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { [TABLE.partitionKey]: pk },
          UpdateExpression: update,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
        { abortSignal: this.deadline() },
      );
      return out.Attributes ?? {};
    } catch (err) {
      throw unavailable('UpdateItem', pk, err);
    }
  }

  /**
   * Settles several items exactly once: the adjustments and a ledger entry for `ledgerKey` go in
   * one TransactWriteItems whose ledger Put requires that no entry exists yet. A retry after a
   * timeout that did land finds the entry and changes nothing. Nothing is read: a refund needs
   * only what the admission spent and when (Adjustment.spent, admittedAt). When every refund is of
   * units already refilled, there is nothing to write, and nothing is written.
   */
  async settleOnce(
    ledgerKey: string,
    items: readonly { key: string; adjustments: readonly Adjustment[]; alsoHolds?: readonly Limit[] }[],
    record: Readonly<Record<string, string | number>> = {},
  ): Promise<'settled' | 'already-settled'> {
    const at = this.now();
    const ledger = KEY_PREFIX.settlement + ledgerKey;
    // What a live lease can take is settled into it, in memory: those adjustments write nothing.
    // Once per settlement: a caller retrying after a lost answer must not give a lease its units again.
    items = items.map((it) => ({
      ...it,
      adjustments: this.beyondLeases(KEY_PREFIX.bucket + it.key, it.adjustments, at, ledger),
    }));
    const pks = items.map((it) => KEY_PREFIX.bucket + it.key);
    const signal = this.deadline();
    const state = pks.map((pk) => this.seen.get(pk));
    let conflicts = 0;
    // A refund on an item this container has never seen starts from the item (one read for all).
    const unseen = items.flatMap((it, i) => (state[i] === undefined && refunds(it.adjustments) ? [i] : []));
    if (unseen.length) await this.readInto(state, pks, unseen, signal);
    for (let attempt = 1; attempt <= this.maxAttempts + 2; attempt++) {
      const updates = items.flatMap((it, i) => {
        const { fragments, next } = this.adjustments(state[i], it.adjustments, at);
        if (fragments.length === 0) return [];
        const limits = [...it.adjustments.map((a) => a.limit), ...(it.alsoHolds ?? [])];
        return [{ index: i, next, update: this.request(pks[i]!, [...fragments, this.expiry(at, limits)]) }];
      });
      // Nothing to write: every refund is of units the buckets have refilled since, which stays so
      // as time goes on. Settled, with no ledger needed.
      if (updates.length === 0) return 'settled';
      const put = {
        TableName: this.tableName,
        Item: { [TABLE.partitionKey]: ledger, ...record, settledAt: at.late, [TABLE.ttlAttribute]: expiresAt(at.late) },
        ConditionExpression: 'attribute_not_exists(#pk)',
        ExpressionAttributeNames: { '#pk': TABLE.partitionKey },
      };
      this.stats.calls++;
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              { Put: put },
              ...updates.map((u) => ({
                Update: { ...u.update, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const },
              })),
            ],
          }),
          { abortSignal: signal },
        );
        // A transaction returns no new state: the next decision here starts from the predicted one
        // (without it, it would guess the branch of a bucket it had never seen, and miss).
        for (const u of updates) this.remember(pks[u.index]!, u.next);
        return 'settled';
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw unavailable('TransactWriteItems', ledger, err);
        const reasons = err.CancellationReasons ?? [];
        if (reasons[0]?.Code === 'ConditionalCheckFailed') return 'already-settled';
        // Throttled: not resent here; the caller's retry backs off (the proxy's settle: 5 tries from 100 ms).
        if (isThrottling(err)) throw unavailable('TransactWriteItems', ledger, err);
        if (isConflict(err)) {
          if (!(await this.afterConflict(++conflicts, 'TransactWriteItems'))) break;
          attempt--;
          continue;
        }
        this.stats.conditionFailures++;
        reasons.slice(1).forEach((reason, k) => {
          const i = updates[k]!.index;
          if (reason.Code === 'ConditionalCheckFailed') state[i] = reason.Item ? unmarshall(reason.Item) : undefined;
        });
      }
    }
    throw new ContentionError(ledger, this.maxAttempts + 2);
  }

  /** The adjustments a live lease of this container cannot take (those it can, it takes). */
  private beyondLeases(
    pk: string,
    adjustments: readonly Adjustment[],
    at: Moment,
    once?: string,
  ): readonly Adjustment[] {
    const book = this.leases;
    if (!book) return adjustments;
    return adjustments.filter(
      (a) => a.lease === undefined || !book.settle(pk, a.name, a.lease, a.delta, at.late, once),
    );
  }

  /** The writes that settle `adjustments` on an item (none for refunds of what has refilled since). */
  private adjustments(
    item: Item | undefined,
    adjustments: readonly Adjustment[],
    at: Moment,
  ): { fragments: Fragment[]; next: Item } {
    const fragments: Fragment[] = [];
    const states: { name: string; state: BucketState }[] = [];
    adjustments.forEach((a, j) => {
      const admitted = a.admittedAt === undefined ? at : moment(a.admittedAt, this.clockSkewMs);
      const { write, next } = adjust(a.limit, bucketOf(item, a.name), at, a.delta, admitted, a.spent);
      if (!write) return;
      fragments.push(fragment(write, a.limit, a.name, `a${j}`));
      states.push({ name: a.name, state: next });
    });
    return { fragments, next: withBuckets(item, states) };
  }

  private validate(checks: readonly Check[]): void {
    for (const c of checks) {
      requireCost(c.cost);
      this.checkLimit(c.limit);
    }
  }

  /** Settle several buckets of one item with one conditional write. */
  async adjustItem(key: string, adjustments: readonly Adjustment[], options: ItemOptions = {}): Promise<void> {
    for (const a of adjustments) {
      if (a.delta !== 0) requireCost(Math.abs(a.delta), 'adjustment');
      this.checkLimit(a.limit);
    }
    const pk = KEY_PREFIX.bucket + key;
    const at = this.now();
    const signal = this.deadline();
    adjustments = this.beyondLeases(pk, adjustments, at);
    if (adjustments.length === 0) return;
    // A refund on an item this container has never seen starts from the item.
    let item = this.seen.get(pk) ?? (refunds(adjustments) ? await this.read(pk, signal) : undefined);
    let conflicts = 0;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const { fragments } = this.adjustments(item, adjustments, at);
      if (fragments.length === 0) return;
      const outcome = await this.write(
        pk,
        fragments,
        at,
        [...adjustments.map((a) => a.limit), ...(options.alsoHolds ?? [])],
        signal,
      );
      if (outcome.conflict) {
        if (!(await this.afterConflict(++conflicts, 'UpdateItem'))) break;
        attempt--;
        continue;
      }
      item = outcome.item;
      if (outcome.ok) return;
    }
    throw new ContentionError(key, this.maxAttempts);
  }

  /** Every check's numbers without spending anything (one consistent read). */
  async peekItem(key: string, checks: readonly Check[]): Promise<ItemOutcome> {
    const item = await this.read(KEY_PREFIX.bucket + key, this.deadline());
    const at = this.now();
    return {
      allowed: true,
      decisions: checks.map((c) => numbersOf(c.limit, bucketOf(item, c.name), at)),
    };
  }

  /**
   * Compare-and-set plain attributes of an item (the penalty box): succeeds only if every
   * attribute in `expect` still has the given value (undefined: absent). Returns the item after
   * the write, or as it was when the comparison failed.
   */
  async compareAndSet(
    key: string,
    expect: Readonly<Record<string, number | undefined>>,
    set: Readonly<Record<string, number | string>>,
    freshAtMs: number,
  ): Promise<{ ok: boolean; item: Item | undefined }> {
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
    const fragments: Fragment[] = [
      { ...(conditions.length ? { condition: conditions.join(' AND ') } : {}), sets, names, values },
    ];
    const signal = this.deadline();
    for (let conflicts = 1; ; conflicts++) {
      const outcome = await this.send(KEY_PREFIX.bucket + key, fragments, signal);
      if (!outcome.conflict) return outcome;
      if (!(await this.afterConflict(conflicts, 'UpdateItem'))) throw new ContentionError(key, conflicts);
    }
  }

  /** Counts the `conflicts`-th write of an operation that met another transaction; pauses and says whether to retry (CONFLICT_RETRIES). */
  private async afterConflict(conflicts: number, operation: 'UpdateItem' | 'TransactWriteItems'): Promise<boolean> {
    this.stats.transactionConflicts++;
    this.onConflict(operation);
    if (conflicts > CONFLICT_RETRIES) return false;
    await conflictPause(conflicts);
    return true;
  }

  /** The time as this store sees it (see clockSkewMs). */
  now(): Moment {
    return moment(this.clock(), this.clockSkewMs);
  }

  private checkLimit(limit: Limit): void {
    if (limit.shape === 'sliding_window' && slotMs(limit) < 4 * this.clockSkewMs) {
      throw new InvalidLimitError(
        `slidingWindow(${limit.limit}, ${limit.windowMs} ms, ${limit.subWindows}) has ${slotMs(limit)} ms ` +
          `slots, shorter than 4 x clockSkewMs (${this.clockSkewMs} ms): use fewer subWindows or a smaller ` +
          `clockSkewMs`,
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

  /** Reads the items at `indexes` of `pks` (readMany) into `state`. */
  private async readInto(
    state: (Item | undefined)[],
    pks: readonly string[],
    indexes: readonly number[],
    signal: AbortSignal,
  ): Promise<void> {
    const read = await this.readMany(
      indexes.map((i) => pks[i]!),
      signal,
    );
    indexes.forEach((i, k) => {
      state[i] = read[k];
    });
  }

  /**
   * Several items read at once: one BatchGetItem (strongly consistent, the same read units as
   * one GetItem each, one request and one round-trip). Keys DynamoDB leaves unprocessed (throttled
   * partitions) are asked again, within the operation's deadline. One key is a plain GetItem.
   */
  private async readMany(pks: readonly string[], signal: AbortSignal): Promise<(Item | undefined)[]> {
    if (pks.length <= 1) return Promise.all(pks.map((pk) => this.read(pk, signal)));
    const found = new Map<string, Item>();
    let pending = [...new Set(pks)];
    for (let round = 0; pending.length > 0; round++) {
      if (round >= BATCH_READ_ROUNDS) throw new ItemThrottledError('BatchGetItem', pending.join(','));
      if (round > 0) await new Promise((r) => setTimeout(r, 10 * round));
      this.stats.calls++;
      let out: BatchGetCommandOutput;
      try {
        out = await this.doc.send(
          new BatchGetCommand({
            RequestItems: {
              [this.tableName]: { Keys: pending.map((pk) => ({ [TABLE.partitionKey]: pk })), ConsistentRead: true },
            },
          }),
          { abortSignal: signal },
        );
      } catch (err) {
        throw unavailable('BatchGetItem', pending.join(','), err);
      }
      for (const item of out.Responses?.[this.tableName] ?? []) found.set(String(item[TABLE.partitionKey]), item);
      const unprocessed = (out.UnprocessedKeys?.[this.tableName]?.Keys ?? []).map((k) => String(k[TABLE.partitionKey]));
      this.stats.reads += pending.length - unprocessed.length;
      pending = unprocessed;
    }
    return pks.map((pk) => {
      const item = found.get(pk);
      this.remember(pk, item);
      return item;
    });
  }

  private async read(pk: string, signal: AbortSignal): Promise<Item | undefined> {
    this.stats.calls++;
    this.stats.reads++;
    try {
      const out = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: { [TABLE.partitionKey]: pk }, ConsistentRead: true }),
        { abortSignal: signal },
      );
      this.remember(pk, out.Item);
      return out.Item;
    } catch (err) {
      throw unavailable('GetItem', pk, err);
    }
  }

  /** The item's TTL: the longest memory of the limits it holds, from the latest present. */
  private expiry(at: Moment, limits: readonly Limit[]): Fragment {
    const memory = Math.max(0, ...limits.map(memoryMs));
    return {
      sets: ['#exp = :exp'],
      names: { '#exp': TABLE.ttlAttribute },
      values: { ':exp': expiresAt(at.late + memory) },
    };
  }

  /** One conditional write of all fragments. */
  private write(pk: string, fragments: Fragment[], at: Moment, limits: readonly Limit[], signal: AbortSignal) {
    return this.send(pk, [...fragments, this.expiry(at, limits)], signal);
  }

  private request(pk: string, fragments: Fragment[]) {
    // DynamoDB rejects redundant parentheses: only an OR needs them once it is ANDed with others.
    const conditions = fragments.flatMap((f) => (f.condition ? [f.condition] : []));
    const condition =
      conditions.length > 1 ? conditions.map((c) => (c.includes(' OR ') ? `(${c})` : c)).join(' AND ') : conditions[0];
    return {
      TableName: this.tableName,
      Key: { [TABLE.partitionKey]: pk },
      UpdateExpression: `SET ${fragments.flatMap((f) => f.sets).join(', ')}`,
      ...(condition ? { ConditionExpression: condition } : {}),
      ExpressionAttributeNames: Object.assign({}, ...fragments.map((f) => f.names)) as Record<string, string>,
      ExpressionAttributeValues: Object.assign({}, ...fragments.map((f) => f.values)) as Record<string, unknown>,
    };
  }

  /**
   * One UpdateItem: written (ok), refused by its condition (the item as it was), or refused because another
   * transaction held the item (conflict: nothing known).
   */
  private async send(
    pk: string,
    fragments: Fragment[],
    signal: AbortSignal,
  ): Promise<{ ok: boolean; item: Item | undefined; conflict?: true }> {
    this.stats.calls++;
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          ...this.request(pk, fragments),
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
        { abortSignal: signal },
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
      if (err instanceof TransactionConflictException) return { ok: false, item: undefined, conflict: true };
      throw unavailable('UpdateItem', pk, err);
    }
  }
}

/** DynamoDB refused for throughput (the SDK has retried already): the item is hot. */
function isThrottling(err: unknown): boolean {
  if (
    err instanceof ProvisionedThroughputExceededException ||
    err instanceof ThrottlingException ||
    err instanceof RequestLimitExceeded
  )
    return true;
  return (
    err instanceof TransactionCanceledException &&
    (err.CancellationReasons ?? []).some((r) => r.Code === 'ThrottlingError')
  );
}

/** The error a failed call becomes: throttling is told apart (a hot item, not an outage). */
function unavailable(operation: string, key: string, err: unknown): StoreUnavailableError {
  return isThrottling(err)
    ? new ItemThrottledError(operation, key, { cause: err })
    : new StoreUnavailableError(operation, key, { cause: err });
}

/** A transaction cancelled only because another transaction held an item: nothing was written. */
function isConflict(err: TransactionCanceledException): boolean {
  const reasons = err.CancellationReasons ?? [];
  return (
    reasons.some((r) => r.Code === 'TransactionConflict') &&
    reasons.every((r) => r.Code === 'TransactionConflict' || r.Code === 'None' || r.Code === undefined)
  );
}

/** Epoch seconds after which an item no longer matters, with a day's margin. */
function expiresAt(freshAtMs: number): number {
  return Math.ceil(freshAtMs / 1000) + TTL_MARGIN_SECONDS;
}

/** The table as the construct deploys it (key schema and TTL from TABLE), for local runs and tests. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await ensureTableOf(client, tableName, TABLE);
}

/**
 * Creates an on-demand table with `keys`' partition key (and sort key) and TTL attribute, when no
 * table of that name exists (npm start, tests, benchmarks; the construct makes the deployed ones).
 */
export async function ensureTableOf(
  client: DynamoDBClient,
  tableName: string,
  keys: { readonly partitionKey: string; readonly sortKey?: string; readonly ttlAttribute: string },
): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return;
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  const names = [keys.partitionKey, ...(keys.sortKey ? [keys.sortKey] : [])];
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: names.map((AttributeName, i) => ({ AttributeName, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
      AttributeDefinitions: names.map((AttributeName) => ({ AttributeName, AttributeType: 'S' })),
    }),
  );
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: keys.ttlAttribute, Enabled: true },
    }),
  );
}

const refunds = (adjustments: readonly Adjustment[]): boolean => adjustments.some((a) => a.delta < 0);

/** What a settlement needs of one check's admission: what it spent (Adjustment.spent) and the lease it used. */
export interface Spending {
  readonly spent: Spent;
  readonly lease?: number;
}

/**
 * What a check's admission spent, its bucket as the write left it (when DynamoDB returned it and
 * the check took no lease: a lease's units sit in the same stretch, so only the admission's own
 * time and cost bound where its units end), and the lease it used.
 */
export function spendingOf(check: Check, outcome: ItemOutcome, index: number): Spending {
  const lease = outcome.leases?.[index];
  const state = outcome.written && lease === undefined ? bucketOf(outcome.written, check.name) : undefined;
  return { spent: { cost: check.cost, ...(state ? { state } : {}) }, ...(lease === undefined ? {} : { lease }) };
}

/** The refund of a check an admitted item spent on, when the decision as a whole did not go through. */
function refundOf(check: Check, outcome: ItemOutcome, index: number, admittedAt: number): Adjustment {
  return { name: check.name, limit: check.limit, delta: -check.cost, admittedAt, ...spendingOf(check, outcome, index) };
}
