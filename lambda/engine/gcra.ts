import { TIME_EPSILON_MS } from './constants';
import { type Decision, denied } from './decision';
import type { LeakyBucketLimit, TokenBucketLimit } from './limits';
import type { Moment } from './moment';

/**
 * Token and leaky buckets as GCRA: the state is the "theoretical arrival time" `tat` at which the
 * bucket would be full again. Cost k is admitted iff max(tat, now) + k*T <= now + C*T, where T is
 * the time one unit takes to refill (drain). Debt is simply tat beyond now + C*T.
 */
export type GcraLimit = TokenBucketLimit | LeakyBucketLimit;

export interface GcraState {
  readonly tat?: number;
  readonly credit?: number;
  readonly creditAt?: number;
}

/** The conditional write that makes a plan true in the store. */
export type GcraWrite =
  /** tat BETWEEN late AND lim -> tat += inc. Commutes under contention (the hot path). */
  | { readonly branch: 'advance'; readonly late: number; readonly lim: number; readonly inc: number }
  /** attribute_not_exists(tat) OR (tat < late [AND tat <= lim]) -> tat = late + inc (the bucket was full; lim absent for a debit). */
  | { readonly branch: 'start'; readonly late: number; readonly lim?: number; readonly tat: number }
  /** Burst credit: compare-and-set on the old state, materialising the credit earned while full. */
  | { readonly branch: 'restart'; readonly early: number; readonly expectTat?: number; readonly expectCredit?: number; readonly tat: number; readonly credit: number }
  /** Main bucket cannot cover the cost but is not in debt: spend credit. cr >= cost -> cr -= cost. */
  | { readonly branch: 'credit'; readonly mainBelow: number; readonly horizon: number; readonly cost: number }
  /** Settlement debit (no limit check): tat >= late -> tat += inc. */
  | { readonly branch: 'debit'; readonly late: number; readonly inc: number }
  /** Settlement refund: tat >= floor -> tat -= dec (never above full). */
  | { readonly branch: 'refund'; readonly floor: number; readonly dec: number }
  /** Refund larger than what is owed: tat = expectTat -> tat = late. */
  | { readonly branch: 'refill'; readonly expectTat: number; readonly late: number };

export interface GcraPlan {
  readonly decision: Decision;
  readonly write?: GcraWrite;
  /** The state after the write, as this container predicts it. */
  readonly next: GcraState;
}

interface Params {
  readonly capacity: number;
  readonly intervalMs: number;
  readonly creditCapacity: number;
  readonly creditAccruePerMs: number;
}

function params(limit: GcraLimit): Params {
  const rate = limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond;
  const credit = limit.shape === 'token_bucket' ? limit.burstCredit : undefined;
  return {
    capacity: limit.capacity,
    intervalMs: 1000 / rate,
    creditCapacity: credit?.capacity ?? 0,
    creditAccruePerMs: (credit?.accruePerSecond ?? 0) / 1000,
  };
}

/** Milliseconds an empty bucket takes to fill: how long a state can matter after its tat. */
export function fillMs(limit: GcraLimit): number {
  const p = params(limit);
  return p.capacity * p.intervalMs;
}

/** Credit earned up to `early`: it accrues only while the main bucket is full (tat <= t). */
export function creditAt(state: GcraState | undefined, early: number, limit: GcraLimit): number {
  const p = params(limit);
  if (p.creditCapacity === 0) return 0;
  const stored = state?.credit ?? 0;
  const fullSince = Math.max(state?.tat ?? early, state?.creditAt ?? early);
  const earned = Math.max(0, early - fullSince) * p.creditAccruePerMs;
  return Math.min(p.creditCapacity, stored + earned);
}

export function describeGcra(state: GcraState | undefined, at: Moment, limit: GcraLimit): Decision {
  const p = params(limit);
  const now = at.early;
  const tat = Math.max(state?.tat ?? now, now);
  const main = Math.floor((now + p.capacity * p.intervalMs - tat) / p.intervalMs + TIME_EPSILON_MS);
  const credit = Math.floor(creditAt(state, now, limit) + 1e-9);
  const remaining = Math.min(p.capacity, Math.max(0, main) + credit);
  return { allowed: true, limit: p.capacity, remaining, resetMs: tat - now, retryAfterMs: 0 };
}

export function decideGcra(state: GcraState | undefined, at: Moment, cost: number, limit: GcraLimit): GcraPlan {
  const p = params(limit);
  const stored = state ?? {};
  const { early, late } = at;
  const base = Math.max(stored.tat ?? early, early);
  const inc = cost * p.intervalMs;
  const horizon = early + p.capacity * p.intervalMs;
  const lim = horizon - inc + TIME_EPSILON_MS;

  if (base <= lim) {
    if (stored.tat !== undefined && stored.tat >= late) {
      const next = { ...stored, tat: stored.tat + inc };
      return { decision: describeGcra(next, at, limit), write: { branch: 'advance', late, lim, inc }, next };
    }
    // The bucket may be full in true time: charge from the latest time it could be.
    const tat = late + inc;
    if (p.creditCapacity > 0) {
      const credit = creditAt(stored, early, limit);
      const next = { tat, credit, creditAt: early };
      const write: GcraWrite = { branch: 'restart', early, expectTat: stored.tat, expectCredit: stored.credit, tat, credit };
      return { decision: describeGcra(next, at, limit), write, next };
    }
    const next = { tat };
    return { decision: describeGcra(next, at, limit), write: { branch: 'start', late, lim, tat }, next };
  }

  // Credit is exact in the store only while tat >= now (nothing accrued since it was written).
  const storedCredit = stored.credit ?? 0;
  if (p.creditCapacity > 0 && stored.tat !== undefined && stored.tat >= late && stored.tat <= horizon && storedCredit >= cost) {
    const next = { ...stored, credit: storedCredit - cost };
    return { decision: describeGcra(next, at, limit), write: { branch: 'credit', mainBelow: lim, horizon, cost }, next };
  }

  const view = describeGcra(stored, at, limit);
  if (cost > p.capacity) {
    return { decision: denied(p.capacity, view.remaining, view.resetMs, view.resetMs, true), next: stored };
  }
  return { decision: denied(p.capacity, view.remaining, view.resetMs, base + inc - horizon), next: stored };
}

/**
 * Settlement: a positive delta debits without a limit check (it may leave the bucket in debt,
 * which then denies until time repays it); a negative delta refunds, never past full.
 */
export function adjustGcra(state: GcraState | undefined, at: Moment, delta: number, limit: GcraLimit): { write?: GcraWrite; next: GcraState } {
  const p = params(limit);
  const stored = state ?? {};
  const { late } = at;
  if (delta > 0) {
    const inc = delta * p.intervalMs;
    if (stored.tat !== undefined && stored.tat >= late) {
      return { write: { branch: 'debit', late, inc }, next: { ...stored, tat: stored.tat + inc } };
    }
    return { write: { branch: 'start', late, tat: late + inc }, next: { ...stored, tat: late + inc } };
  }
  const dec = -delta * p.intervalMs;
  if (dec === 0 || stored.tat === undefined || stored.tat <= late) return { next: stored };
  if (stored.tat - dec >= late) {
    return { write: { branch: 'refund', floor: late + dec, dec }, next: { ...stored, tat: stored.tat - dec } };
  }
  return { write: { branch: 'refill', expectTat: stored.tat, late }, next: { ...stored, tat: late } };
}

/** Admission without spending: would `cost` fit now? The guard's condition is state-independent. */
export function guardGcra(state: GcraState | undefined, at: Moment, cost: number, limit: GcraLimit): { decision: Decision; guard: { branch: 'room'; lim: number; credit?: { horizon: number; cost: number } } } {
  const p = params(limit);
  const plan = decideGcra(state, at, cost, limit);
  const horizon = at.early + p.capacity * p.intervalMs;
  const lim = horizon - cost * p.intervalMs + TIME_EPSILON_MS;
  const view = describeGcra(state, at, limit);
  const decision = plan.decision.allowed ? view : plan.decision;
  return { decision, guard: { branch: 'room', lim, ...(p.creditCapacity > 0 ? { credit: { horizon, cost } } : {}) } };
}
