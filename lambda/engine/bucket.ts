import type { Decision } from './decision';
import { InvalidCostError } from './errors';
import {
  adjustGcra,
  decideGcra,
  describeGcra,
  fillMs,
  type GcraState,
  type Spent,
  type GcraWrite,
  guardGcra,
  stateAt,
} from './gcra';
import type { Limit } from './limits';
import { type Moment, moment } from './moment';
import type { BucketGuard } from './expressions';
import {
  adjustWindow,
  countWrite,
  decideWindow,
  describeWindow,
  guardWindow,
  type WindowState,
  type WindowWrite,
  windowMemoryMs,
} from './sliding-window';

/** One bucket's state, whatever its shape. Pure data: what the store keeps in one item. */
export type BucketState = GcraState & WindowState;
export type BucketWrite = GcraWrite | WindowWrite;

/** One bucket's decision and the conditional write that makes it true (a tenant's plan is `Plan` in plans.ts). */
export interface BucketDecision {
  readonly decision: Decision;
  /** Absent when the decision is a denial: a rejected request writes nothing. */
  readonly write?: BucketWrite;
  readonly next: BucketState;
}

export function requireCost(cost: number, what = 'cost'): void {
  if (!Number.isFinite(cost) || cost <= 0) {
    throw new InvalidCostError(`${what} must be a positive finite number, got ${cost}`);
  }
}

const asMoment = (at: number | Moment): Moment => (typeof at === 'number' ? moment(at) : at);

/** Decide whether `cost` fits at `at` (epoch ms, or a Moment when clocks may be skewed). */
export function decide(
  limit: Limit,
  state: BucketState | undefined,
  at: number | Moment,
  cost: number,
): BucketDecision {
  const m = asMoment(at);
  return limit.shape === 'sliding_window' ? decideWindow(state, m, cost, limit) : decideGcra(state, m, cost, limit);
}

/** The limit's numbers at `at` without spending anything. */
export function numbersOf(limit: Limit, state: BucketState | undefined, at: number | Moment): Decision {
  const m = asMoment(at);
  return limit.shape === 'sliding_window' ? describeWindow(state, m, limit) : describeGcra(state, m, limit);
}

/**
 * Settlement: `delta` > 0 debits without a limit check (may leave debt); `delta` < 0 refunds.
 * `admittedAt` says when the refunded cost was admitted (a sliding window refunds that slot; a
 * bucket gives back only what it has not refilled since); `spent`, what that admission spent and
 * left, lets a bucket give back more of it exactly.
 */
export function adjust(
  limit: Limit,
  state: BucketState | undefined,
  at: number | Moment,
  delta: number,
  admittedAt: number | Moment,
  spent?: Spent,
): { write?: BucketWrite; next: BucketState } {
  const m = asMoment(at);
  return limit.shape === 'sliding_window'
    ? adjustWindow(state, m, delta, asMoment(admittedAt), limit)
    : adjustGcra(state, m, delta, limit, asMoment(admittedAt), spent);
}

/**
 * The write to try when this container's view of the bucket is stale and says "deny": the
 * write's own condition enforces the limit, so it either admits (the view was stale) or fails and
 * hands back the real state, which then decides. Either way one call and no read. Undefined when
 * no such write is safe (the store then reads the item).
 */
export function probe(limit: Limit, state: BucketState | undefined, at: Moment, cost: number): BucketWrite | undefined {
  if (limit.shape === 'sliding_window') {
    if (state?.head === undefined || cost > limit.limit) return undefined;
    // The write's condition on `total` holds the line whatever this container last saw.
    return countWrite(state, at, cost, limit, true).write;
  }
  if (state?.tat === undefined || cost > limit.capacity) return undefined;
  const write = decideGcra(stateAt(at.late, limit), at, cost, limit).write;
  return write?.branch === 'advance' ? write : undefined;
}

/**
 * Admission only: would `cost` fit, without spending it? The guard is a condition the store adds
 * to the item's write so the answer holds at the moment of the write.
 */
export function admission(
  limit: Limit,
  state: BucketState | undefined,
  at: number | Moment,
  cost: number,
): { decision: Decision; guard: BucketGuard } {
  const m = asMoment(at);
  return limit.shape === 'sliding_window' ? guardWindow(state, m, cost, limit) : guardGcra(state, m, cost, limit);
}

/** How long after the present a bucket's state can still matter (debt aside): sets the item's TTL. */
export function memoryMs(limit: Limit): number {
  return limit.shape === 'sliding_window' ? windowMemoryMs(limit) : fillMs(limit);
}
