import type { Decision } from './decision';
import { InvalidCostError } from './errors';
import { adjustGcra, decideGcra, describeGcra, type GcraState, type GcraWrite } from './gcra';
import type { Limit } from './limits';
import { adjustWindow, decideWindow, describeWindow, slotIndex, type WindowState, type WindowWrite } from './sliding-window';

/** One bucket's state, whatever its shape. Pure data: what the store keeps in one item. */
export type BucketState = GcraState & WindowState;
export type BucketWrite = GcraWrite | WindowWrite;

export interface Plan {
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

/** Decide whether `cost` fits at `now`. */
export function decide(limit: Limit, state: BucketState | undefined, now: number, cost: number): Plan {
  return limit.shape === 'sliding_window' ? decideWindow(state, now, cost, limit) : decideGcra(state, now, cost, limit);
}

/** The limit's numbers at `now` without spending anything. */
export function describe(limit: Limit, state: BucketState | undefined, now: number): Decision {
  return limit.shape === 'sliding_window' ? describeWindow(state, now, limit) : describeGcra(state, now, limit);
}

/**
 * Settlement: `delta` > 0 debits without a limit check (may leave debt); `delta` < 0 refunds.
 * `admittedAt` says which sliding-window slot a refund comes off.
 */
export function adjust(limit: Limit, state: BucketState | undefined, now: number, delta: number, admittedAt: number): { write?: BucketWrite; next: BucketState } {
  return limit.shape === 'sliding_window' ? adjustWindow(state, now, delta, admittedAt, limit) : adjustGcra(state, now, delta, limit);
}

/**
 * The write to try when this container's view of the bucket is stale and says "deny": the
 * write's own condition enforces the limit, so it either admits (the view was stale) or fails and
 * hands back the real state, which then decides. Either way one call and no read. Undefined when
 * no such write is safe (the store then reads the item).
 */
export function probe(limit: Limit, state: BucketState | undefined, now: number, cost: number): BucketWrite | undefined {
  if (limit.shape === 'sliding_window') {
    if (state?.head === undefined || state.head < slotIndex(now, limit) || cost > limit.limit) return undefined;
    const position = state.head % (limit.subWindows + 1);
    return { branch: 'add', head: state.head, position, cost, maxTotal: limit.limit - cost };
  }
  if (state?.tat === undefined || cost > limit.capacity) return undefined;
  const write = decideGcra({ tat: now }, now, cost, limit).write;
  return write?.branch === 'advance' ? write : undefined;
}
