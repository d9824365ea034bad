import { ticksPerUnit } from './constants';
import { type Decision, denied } from './decision';
import type { LeakyBucketLimit, TokenBucketLimit } from './limits';
import type { Moment } from './moment';

/**
 * Token and leaky buckets as GCRA: the state is the "theoretical arrival time" `tat` at which the
 * bucket would be full again. Cost k is admitted iff max(tat, now) + k*T <= now + C*T, where T is
 * the time one unit takes to refill (drain). Debt is simply tat beyond now + C*T.
 *
 * Every number written to the store is a whole number. Time is kept in whole ticks since
 * LIMITER_EPOCH_MS, with T a whole number of ticks (M = max(1, ceil(1e6 / rate)) ticks per unit,
 * so a tick is at most a microsecond): a charge of k units is exactly k*M ticks, with no
 * rounding. The present is read as whole ticks, rounded down: the one approximation, a
 * microsecond at most.
 * DynamoDB stores a number exactly (38 digits), JavaScript as the nearest double: in milliseconds,
 * `tat = tat + 86.39999999999999` (a refill interval of tokensPerDay(1e6)) stored a decimal that
 * read back as a different double, and a later compare-and-set on `tat = :expected` could never
 * succeed. Whole numbers below 2^53 are the same in both; MAX_RATE_PER_SECOND (constants.ts) keeps
 * ticks below that until about 2050.
 */
export type GcraLimit = TokenBucketLimit | LeakyBucketLimit;

export interface GcraState {
  /** Whole ticks since LIMITER_EPOCH_MS. */
  readonly tat?: number;
  /** Burst credit in whole thousandths of a unit. */
  readonly credit?: number;
  /** Whole ticks since LIMITER_EPOCH_MS: when `credit` was last materialised. */
  readonly creditAt?: number;
  /** Whole ticks ever refunded: how far refunds may have moved later admissions' units (see adjustGcra). */
  readonly refunded?: number;
}

/** The conditional write that makes a plan true in the store (every number whole: ticks, thousandths). */
export type GcraWrite =
  /** tat BETWEEN late AND lim -> tat += inc. Commutes under contention (the hot path). */
  | { readonly branch: 'advance'; readonly late: number; readonly lim: number; readonly inc: number }
  /** attribute_not_exists(tat) OR (tat < late [AND tat <= lim]) -> tat = late + inc (the bucket was full; lim absent for a debit). */
  | { readonly branch: 'start'; readonly late: number; readonly lim?: number; readonly tat: number }
  /** Burst credit: compare-and-set on the old state, materialising the credit earned while full. */
  | {
      readonly branch: 'restart';
      readonly early: number;
      readonly expectTat?: number;
      readonly expectCredit?: number;
      readonly tat: number;
      readonly credit: number;
    }
  /** Main bucket cannot cover the cost but is not in debt: spend credit. cr >= cost -> cr -= cost. */
  | { readonly branch: 'credit'; readonly mainBelow: number; readonly horizon: number; readonly cost: number }
  /** Settlement debit (no limit check): tat >= late -> tat += inc. */
  | { readonly branch: 'debit'; readonly late: number; readonly inc: number }
  /**
   * Settlement refund: tat >= floor [AND refunded <= refundedMax] -> tat -= dec, refunded += dec.
   * The floor keeps it short of full; refundedMax, when present, that no other refund moved the
   * admission's units into the past since (adjustGcra).
   */
  | { readonly branch: 'refund'; readonly floor: number; readonly dec: number; readonly refundedMax?: number };

export interface GcraDecision {
  readonly decision: Decision;
  readonly write?: GcraWrite;
  /** The state after the write, as this container predicts it. */
  readonly next: GcraState;
}

/** 2025-01-01T00:00:00Z: ticks count from here, which keeps them small. */
export const LIMITER_EPOCH_MS = 1_735_689_600_000;
const MILLI = 1000;

interface Params {
  /** Capacity in ticks. */
  readonly capacity: number;
  /** Capacity in units (what `limit` and `remaining` report). */
  readonly units: number;
  /** Ticks per unit of cost (whole). */
  readonly perUnit: number;
  /** Ticks per millisecond (at least 1000). */
  readonly perMs: number;
  readonly creditCapacity: number;
  /** Credit units earned per tick spent full. */
  readonly creditPerTick: number;
}

function params(limit: GcraLimit): Params {
  const rate = limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond;
  const credit = limit.shape === 'token_bucket' ? limit.burstCredit : undefined;
  const perUnit = ticksPerUnit(rate);
  return {
    capacity: Math.floor(limit.capacity * perUnit),
    units: limit.capacity,
    perUnit,
    perMs: (rate * perUnit) / 1000,
    creditCapacity: credit?.capacity ?? 0,
    creditPerTick: (credit?.accruePerSecond ?? 0) / (rate * perUnit),
  };
}

/** Epoch ms as whole ticks. */
const tickOf = (ms: number, p: Params): number => Math.floor((ms - LIMITER_EPOCH_MS) * p.perMs);
/** Whole ticks of `cost` units: a charge rounds a fractional cost up, a refund down. */
const chargeTicks = (cost: number, p: Params): number => Math.ceil(cost * p.perUnit);
const refundTicks = (cost: number, p: Params): number => Math.floor(cost * p.perUnit);

/**
 * Milliseconds from `fromMs` until the rounded-down present reaches tick `tick` (0 if it has):
 * the first whole millisecond at which tickOf says so, found by the same function that will
 * judge the retry, so "admitted at exactly retryAfterMs, not a millisecond before" holds.
 */
function msUntil(tick: number, fromMs: number, p: Params): number {
  if (tickOf(fromMs, p) >= tick) return 0;
  let t = Math.ceil(LIMITER_EPOCH_MS + tick / p.perMs);
  while (tickOf(t, p) < tick) t++;
  while (t - 1 > fromMs && tickOf(t - 1, p) >= tick) t--;
  return Math.max(0, t - fromMs);
}

/** Milliseconds an empty bucket takes to fill: how long a state can matter after its tat. */
export function fillMs(limit: GcraLimit): number {
  const p = params(limit);
  return p.capacity / p.perMs;
}

/** The stored tat as epoch ms (for tests and logs). */
export function tatMs(state: GcraState | undefined, limit: GcraLimit): number | undefined {
  return state?.tat === undefined ? undefined : LIMITER_EPOCH_MS + state.tat / params(limit).perMs;
}

/** A state "in use up to `ms`" (the probe's stand-in for a state this container has not read). */
export const stateAt = (ms: number, limit: GcraLimit): GcraState => ({ tat: tickOf(ms, params(limit)) });

/** Credit in units earned up to `earlyMs`: it accrues only while the main bucket is full (tat <= t). */
export function creditAt(state: GcraState | undefined, earlyMs: number, limit: GcraLimit): number {
  const p = params(limit);
  return creditAtTick(state, tickOf(earlyMs, p), p);
}

function creditAtTick(state: GcraState | undefined, early: number, p: Params): number {
  if (p.creditCapacity === 0) return 0;
  const stored = (state?.credit ?? 0) / MILLI;
  const fullSince = Math.max(state?.tat ?? early, state?.creditAt ?? early);
  const earned = Math.max(0, early - fullSince) * p.creditPerTick;
  return Math.min(p.creditCapacity, stored + earned);
}

export function describeGcra(state: GcraState | undefined, at: Moment, limit: GcraLimit): Decision {
  const p = params(limit);
  return describeAt(state, at.early, tickOf(at.early, p), p);
}

function describeAt(state: GcraState | undefined, nowMs: number, now: number, p: Params): Decision {
  const tat = Math.max(state?.tat ?? now, now);
  const main = Math.floor((now + p.capacity - tat) / p.perUnit);
  const credit = Math.floor(creditAtTick(state, now, p));
  const remaining = Math.min(p.units, Math.max(0, main) + credit);
  return { allowed: true, limit: p.units, remaining, resetMs: msUntil(tat, nowMs, p), retryAfterMs: 0 };
}

export function decideGcra(state: GcraState | undefined, at: Moment, cost: number, limit: GcraLimit): GcraDecision {
  const p = params(limit);
  const stored = state ?? {};
  const early = tickOf(at.early, p);
  const late = tickOf(at.late, p);
  const base = Math.max(stored.tat ?? early, early);
  const inc = chargeTicks(cost, p);
  const horizon = early + p.capacity;
  const lim = horizon - inc;
  const describe = (next: GcraState) => describeAt(next, at.early, early, p);

  if (base <= lim) {
    if (stored.tat !== undefined && stored.tat >= late) {
      const next = { ...stored, tat: stored.tat + inc };
      return { decision: describe(next), write: { branch: 'advance', late, lim, inc }, next };
    }
    // The bucket may be full in true time: charge from the latest time it could be.
    const tat = late + inc;
    if (p.creditCapacity > 0) {
      const credit = Math.floor(creditAtTick(stored, early, p) * MILLI);
      const next = { tat, credit, creditAt: early };
      const write: GcraWrite = {
        branch: 'restart',
        early,
        expectTat: stored.tat,
        expectCredit: stored.credit,
        tat,
        credit,
      };
      return { decision: describe(next), write, next };
    }
    const next = { tat };
    return { decision: describe(next), write: { branch: 'start', late, lim, tat }, next };
  }

  // Credit is exact in the store only while tat >= now (nothing accrued since it was written).
  const storedCredit = stored.credit ?? 0;
  const costMilli = Math.ceil(cost * MILLI);
  if (
    p.creditCapacity > 0 &&
    stored.tat !== undefined &&
    stored.tat >= late &&
    stored.tat <= horizon &&
    storedCredit >= costMilli
  ) {
    const next = { ...stored, credit: storedCredit - costMilli };
    return { decision: describe(next), write: { branch: 'credit', mainBelow: lim, horizon, cost: costMilli }, next };
  }

  const view = describe(stored);
  if (cost > p.units) {
    return { decision: denied(p.units, view.remaining, view.resetMs, view.resetMs, true), next: stored };
  }
  // Admitted once the present reaches base + inc - C.
  return {
    decision: denied(p.units, view.remaining, view.resetMs, msUntil(base + inc - p.capacity, at.early, p)),
    next: stored,
  };
}

/** What a settlement knows of the admission it adjusts (for a refund). */
export interface Spent {
  /** What the admission spent, in units (a refund gives back at most this). */
  readonly cost: number;
  /** The bucket right after the admission's write, as DynamoDB returned it (absent: not known). */
  readonly state?: GcraState;
}

/**
 * Settlement: a positive delta debits without a limit check (it may leave the bucket in debt,
 * which then denies until time repays it); a negative delta refunds.
 *
 * A refund gives back only the admission's units that still lie ahead of the present in the
 * bucket's timeline. The admission took the stretch of the timeline that ends at its `tat`; a
 * unit whose place there has passed has been refilled already, and giving it back again would let
 * capacity plus the refund through at once. So the refund is at most end - present, where end is
 * the admission's own `tat` less whatever other refunds have moved it earlier since (the item's
 * `refunded` counter bounds that; the write's condition checks it), and never less than the
 * admission's time plus its cost (its stretch ends no sooner). Nothing here depends on the
 * bucket's present state except "never past full", so a settlement needs no read.
 */
export function adjustGcra(
  state: GcraState | undefined,
  at: Moment,
  delta: number,
  limit: GcraLimit,
  admitted: Moment = at,
  spent?: Spent,
): { write?: GcraWrite; next: GcraState } {
  const p = params(limit);
  const stored = state ?? {};
  const late = tickOf(at.late, p);
  if (delta > 0) {
    const inc = chargeTicks(delta, p);
    if (stored.tat !== undefined && stored.tat >= late) {
      return { write: { branch: 'debit', late, inc }, next: { ...stored, tat: stored.tat + inc } };
    }
    return { write: { branch: 'start', late, tat: late + inc }, next: { ...stored, tat: late + inc } };
  }
  // A bucket without a tat is full: nothing to give back.
  if (stored.tat === undefined) return { next: stored };
  // Another container's stamp may lie up to twice the skew past this one's late end.
  const latest = late + (late - tickOf(at.early, p));
  const ownEnd = tickOf(admitted.late, p) + chargeTicks(spent?.cost ?? -delta, p);
  const then = spent?.state;
  const refundedThen = then?.refunded ?? 0;
  const knownEnd = then?.tat === undefined ? undefined : then.tat - Math.max(0, (stored.refunded ?? 0) - refundedThen);
  const end = Math.max(ownEnd, knownEnd ?? ownEnd);
  const dec = Math.min(refundTicks(-delta, p), end - latest, stored.tat - latest);
  if (dec <= 0) return { next: stored };
  const refundedMax =
    then?.tat !== undefined && dec > ownEnd - latest ? refundedThen + (then.tat - latest - dec) : undefined;
  const write: GcraWrite = {
    branch: 'refund',
    floor: latest + dec,
    dec,
    ...(refundedMax === undefined ? {} : { refundedMax }),
  };
  return { write, next: { ...stored, tat: stored.tat - dec, refunded: (stored.refunded ?? 0) + dec } };
}

/** Admission without spending: would `cost` fit now? The guard's condition is state-independent. */
export function guardGcra(
  state: GcraState | undefined,
  at: Moment,
  cost: number,
  limit: GcraLimit,
): { decision: Decision; guard: { branch: 'room'; lim: number; credit?: { horizon: number; cost: number } } } {
  const p = params(limit);
  const plan = decideGcra(state, at, cost, limit);
  const early = tickOf(at.early, p);
  const horizon = early + p.capacity;
  const view = describeAt(state, at.early, early, p);
  const decision = plan.decision.allowed ? view : plan.decision;
  return {
    decision,
    guard: {
      branch: 'room',
      lim: horizon - chargeTicks(cost, p),
      ...(p.creditCapacity > 0 ? { credit: { horizon, cost: Math.ceil(cost * MILLI) } } : {}),
    },
  };
}
