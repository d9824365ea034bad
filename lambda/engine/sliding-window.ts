import { type Decision, denied } from './decision';
import type { SlidingWindowLimit } from './limits';
import type { Moment } from './moment';

/**
 * Sliding window as a ring of slot counters, slot index = floor(t / slotMs), slotMs = W / S.
 * An admission is checked against slots i-S..head (i = the slot of the earliest possible present)
 * and counted in slot max(head, slot of the latest possible present). Those S+1 slots cover every
 * window of length W that ends at the admission, so no window of length W ever holds more than
 * the limit. The price is precision: up to one slot (W / S) of older traffic is still counted, so
 * the window can deny up to W / S early.
 *
 * The ring keeps S + 3 slots: S + 1 for the window and two more so that a container whose clock
 * is behind (by up to a quarter slot) still finds the older slots it must count. `total` is the
 * sum of the S + 1 slots head-S..head; `writes` counts writes (compare-and-set on a roll).
 */
export interface WindowState {
  readonly head?: number;
  readonly total?: number;
  readonly writes?: number;
  /** Counters by ring position (slot index % ring length). */
  readonly slots?: readonly number[];
}

export type WindowWrite =
  /** First write: attribute_not_exists(head). */
  | { readonly branch: 'init'; readonly head: number; readonly slots: readonly number[]; readonly total: number }
  /** Same slot: head = h AND total <= maxTotal -> total += cost, slot += cost. Commutes under contention. */
  | { readonly branch: 'add'; readonly head: number; readonly position: number; readonly cost: number; readonly inTotal: boolean; readonly maxTotal?: number; readonly minSlot?: number }
  /** Time moved to a new slot: compare-and-set on head and the write counter, rewriting the ring. */
  | { readonly branch: 'roll'; readonly expectHead: number; readonly expectWrites: number; readonly head: number; readonly slots: readonly number[]; readonly total: number };

export interface WindowPlan {
  readonly decision: Decision;
  readonly write?: WindowWrite;
  readonly next: WindowState;
}

export const EXTRA_SLOTS = 2;
export const ringLength = (limit: SlidingWindowLimit): number => limit.subWindows + 1 + EXTRA_SLOTS;
export const slotMs = (limit: SlidingWindowLimit): number => limit.windowMs / limit.subWindows;
// The tiny bias keeps a time computed as (index x slotMs) in that slot despite float rounding.
export const slotIndex = (t: number, limit: SlidingWindowLimit): number => Math.floor(t / slotMs(limit) + 1e-9);
const positionOf = (index: number, limit: SlidingWindowLimit): number => ((index % ringLength(limit)) + ringLength(limit)) % ringLength(limit);
const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/** Slot counts by absolute index over [from, to], from what the ring still holds. */
function counts(state: WindowState, from: number, to: number, limit: SlidingWindowLimit): number[] {
  const out: number[] = [];
  const head = state.head ?? -Infinity;
  const oldest = head - ringLength(limit) + 1;
  for (let j = from; j <= to; j++) out.push(j > head || j < oldest ? 0 : (state.slots?.[positionOf(j, limit)] ?? 0));
  return out;
}

/** What an admission at `at` would be checked against: slots from i-S to the newest. */
function checked(state: WindowState, at: Moment, limit: SlidingWindowLimit): { from: number; to: number; values: number[]; total: number } {
  const from = slotIndex(at.early, limit) - limit.subWindows;
  const to = Math.max(state.head ?? -Infinity, slotIndex(at.late, limit));
  const values = counts(state, from, to, limit);
  return { from, to, values, total: sum(values) };
}

/** Milliseconds (from `early`) until enough of the checked slots have expired to leave room for `need`. */
function waitFor(view: ReturnType<typeof checked>, need: number, early: number, limit: SlidingWindowLimit): number {
  let left = view.total;
  for (let k = 0; k < view.values.length; k++) {
    left -= view.values[k]!;
    if (left + need <= limit.limit) return Math.ceil((view.from + k + limit.subWindows + 1) * slotMs(limit) - early);
  }
  return Math.ceil((view.to + limit.subWindows + 1) * slotMs(limit) - early);
}

export function describeWindow(state: WindowState | undefined, at: Moment, limit: SlidingWindowLimit): Decision {
  const view = checked(state ?? {}, at, limit);
  const remaining = Math.max(0, Math.min(limit.limit, limit.limit - view.total));
  const resetMs = view.total > 0 ? waitFor(view, limit.limit, at.early, limit) : 0;
  return { allowed: true, limit: limit.limit, remaining, resetMs: Math.max(0, resetMs), retryAfterMs: 0 };
}

/** The write that counts `cost` at `at`; with `checkAgainst` its condition enforces the limit. */
export function countWrite(state: WindowState, at: Moment, cost: number, limit: SlidingWindowLimit, checkAgainst?: number): { write: WindowWrite; next: WindowState } {
  const target = Math.max(state.head ?? -Infinity, slotIndex(at.late, limit));
  const length = ringLength(limit);
  if (state.head === undefined || target > state.head) {
    const slots = new Array<number>(length).fill(0);
    for (let j = target - length + 1; j <= target; j++) slots[positionOf(j, limit)] = counts(state, j, j, limit)[0]!;
    slots[positionOf(target, limit)] = slots[positionOf(target, limit)]! + cost;
    const total = sum(counts({ head: target, slots }, target - limit.subWindows, target, limit));
    const writes = (state.writes ?? 0) + 1;
    const write: WindowWrite =
      state.head === undefined ? { branch: 'init', head: target, slots, total } : { branch: 'roll', expectHead: state.head, expectWrites: state.writes ?? 0, head: target, slots, total };
    return { write, next: { head: target, total, writes, slots } };
  }
  const position = positionOf(target, limit);
  const slots = [...(state.slots ?? [])];
  slots[position] = (slots[position] ?? 0) + cost;
  // Slots older than head-S that this container must still count are not in `total`: they only
  // ever shrink (refunds), so subtracting what was seen keeps the condition conservative.
  const older = sum(counts(state, slotIndex(at.early, limit) - limit.subWindows, target - limit.subWindows - 1, limit));
  const maxTotal = checkAgainst === undefined ? undefined : checkAgainst - cost - older;
  const write: WindowWrite = { branch: 'add', head: target, position, cost, inTotal: true, ...(maxTotal === undefined ? {} : { maxTotal }) };
  return { write, next: { ...state, total: (state.total ?? 0) + cost, writes: (state.writes ?? 0) + 1, slots } };
}

export function decideWindow(state: WindowState | undefined, at: Moment, cost: number, limit: SlidingWindowLimit): WindowPlan {
  const stored = state ?? {};
  const view = checked(stored, at, limit);
  if (view.total + cost > limit.limit) {
    const d = describeWindow(stored, at, limit);
    if (cost > limit.limit) return { decision: denied(limit.limit, d.remaining, d.resetMs, d.resetMs, true), next: stored };
    return { decision: denied(limit.limit, d.remaining, d.resetMs, waitFor(view, cost, at.early, limit)), next: stored };
  }
  const { write, next } = countWrite(stored, at, cost, limit, limit.limit);
  return { decision: describeWindow(next, at, limit), write, next };
}

/**
 * Settlement. A debit lands in the newest slot without a limit check (the window may go over
 * its limit: debt, repaid as slots expire). A refund comes off the slot of the admission's
 * earliest possible time (never a newer slot than it was counted in), if that slot is still held.
 */
export function adjustWindow(state: WindowState | undefined, at: Moment, delta: number, admittedAt: Moment, limit: SlidingWindowLimit): { write?: WindowWrite; next: WindowState } {
  const stored = state ?? {};
  if (delta > 0) return countWrite(stored, at, delta, limit);
  const j = slotIndex(admittedAt.early, limit);
  const head = stored.head;
  if (head === undefined || j > head || j <= head - ringLength(limit)) return { next: stored };
  const position = positionOf(j, limit);
  const inSlot = stored.slots?.[position] ?? 0;
  const refund = Math.min(-delta, inSlot);
  if (refund <= 0) return { next: stored };
  const slots = [...(stored.slots ?? [])];
  slots[position] = inSlot - refund;
  const inTotal = j >= head - limit.subWindows;
  return {
    write: { branch: 'add', head, position, cost: -refund, inTotal, minSlot: refund },
    next: { ...stored, total: (stored.total ?? 0) - (inTotal ? refund : 0), writes: (stored.writes ?? 0) + 1, slots },
  };
}

export type WindowGuard = { readonly branch: 'room-window'; readonly head?: number; readonly maxTotal?: number; readonly firstLive?: number; readonly writes?: number };

/** Admission without spending: would `cost` fit now? The guard re-checks it in the store. */
export function guardWindow(state: WindowState | undefined, at: Moment, cost: number, limit: SlidingWindowLimit): { decision: Decision; guard: WindowGuard } {
  const stored = state ?? {};
  const plan = decideWindow(stored, at, cost, limit);
  const decision = plan.decision.allowed ? describeWindow(stored, at, limit) : plan.decision;
  const firstLive = slotIndex(at.early, limit) - limit.subWindows;
  if (stored.head === undefined) return { decision, guard: { branch: 'room-window' } };
  if (stored.head < firstLive) return { decision, guard: { branch: 'room-window', head: stored.head, firstLive } };
  if (stored.head >= slotIndex(at.late, limit)) {
    const older = sum(counts(stored, firstLive, stored.head - limit.subWindows - 1, limit));
    return { decision, guard: { branch: 'room-window', head: stored.head, maxTotal: limit.limit - cost - older } };
  }
  return { decision, guard: { branch: 'room-window', head: stored.head, writes: stored.writes ?? 0 } };
}

/** Milliseconds a window's state can matter after its newest slot began. */
export const windowMemoryMs = (limit: SlidingWindowLimit): number => ringLength(limit) * slotMs(limit);
