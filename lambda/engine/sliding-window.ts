import { type Decision, denied } from './decision';
import type { SlidingWindowLimit } from './limits';
import type { Moment } from './moment';
import { periodIndex, periodStart } from './calendar';

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
 * sum of the S + 1 slots head-S..head.
 *
 * Every write commutes with concurrent counts in the newest slot: a count adds to the slot and the
 * total; moving the head to a new slot subtracts the slots leaving the total by arithmetic and
 * pins only their (old, unchanging) values in its condition.
 */
export interface WindowState {
  readonly head?: number;
  readonly total?: number;
  /** Counters by ring position (slot index % ring length). */
  readonly slots?: readonly number[];
}

/** An old slot whose value a write relies on (only refunds ever change it). */
export interface Pin {
  readonly position: number;
  readonly value: number;
}

/** The limit check shared by every write: head = h [AND total <= maxTotal] [AND pinned slots unchanged]. */
export interface WindowCheck {
  readonly head: number;
  readonly maxTotal?: number;
  readonly pins: readonly Pin[];
}

export type WindowWrite =
  /** First write: attribute_not_exists(head). */
  | { readonly branch: 'init'; readonly head: number; readonly slots: readonly number[]; readonly total: number }
  /** Count `cost` in slot `position` (the head, or an older slot for a refund). */
  | {
      readonly branch: 'add';
      readonly check: WindowCheck;
      readonly position: number;
      readonly cost: number;
      readonly inTotal: boolean;
      readonly minSlot?: number;
    }
  /** Move the head to a new slot, clear the slots it reuses, count `cost` there. */
  | {
      readonly branch: 'roll';
      readonly check: WindowCheck;
      readonly head: number;
      readonly position: number;
      readonly cost: number;
      readonly zero: readonly number[];
      readonly totalDelta?: number;
      readonly total?: number;
    };

export interface WindowDecision {
  readonly decision: Decision;
  readonly write?: WindowWrite;
  readonly next: WindowState;
}

export const EXTRA_SLOTS = 2;
/**
 * S: the slots before an admission's own that it is checked against. A calendar budget is checked
 * against its own period alone (its slots are periods, calendar.ts).
 */
export const lookback = (limit: SlidingWindowLimit): number => (limit.calendar ? 0 : limit.subWindows);
export const ringLength = (limit: SlidingWindowLimit): number => lookback(limit) + 1 + EXTRA_SLOTS;
/** A slot's length: for a calendar budget, the longest its period lasts. */
export const slotMs = (limit: SlidingWindowLimit): number =>
  limit.calendar ? limit.windowMs : limit.windowMs / limit.subWindows;
/**
 * Slot of time `t`: floor(t x S / W), computed on whole numbers. t / slotMs is not exact when W / S
 * is not a whole number, and at epoch milliseconds (~1.8e12) its rounding error (~1e-7 slots) can
 * put the first millisecond of a slot in the slot before, so a retry at the advertised time was
 * denied. t x S and W are whole numbers below 2^53, and the quotient of two such numbers is never
 * rounded across a whole number while t x S x W < 2^52 (t x S up to ~1e14, W up to days: true).
 */
export const slotIndex = (t: number, limit: SlidingWindowLimit): number =>
  limit.calendar ? periodIndex(t, limit.calendar) : Math.floor((Math.floor(t) * limit.subWindows) / limit.windowMs);
/** First whole millisecond of slot `index`: the least t with slotIndex(t) = index. */
export const slotStart = (index: number, limit: SlidingWindowLimit): number =>
  limit.calendar ? periodStart(index, limit.calendar) : Math.ceil((index * limit.windowMs) / limit.subWindows);
const positionOf = (index: number, limit: SlidingWindowLimit): number =>
  ((index % ringLength(limit)) + ringLength(limit)) % ringLength(limit);
const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

/** The count of slot `index`, if the ring still holds it. */
function countAt(state: WindowState, index: number, limit: SlidingWindowLimit): number {
  const head = state.head ?? Number.NEGATIVE_INFINITY;
  if (index > head || index <= head - ringLength(limit)) return 0;
  return state.slots?.[positionOf(index, limit)] ?? 0;
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let j = from; j <= to; j++) out.push(j);
  return out;
}

/** What an admission at `at` is checked against: slots from i-S to the newest. */
function checked(
  state: WindowState,
  at: Moment,
  limit: SlidingWindowLimit,
): { from: number; to: number; values: number[]; total: number } {
  const from = slotIndex(at.early, limit) - lookback(limit);
  const to = Math.max(state.head ?? Number.NEGATIVE_INFINITY, slotIndex(at.late, limit));
  const values = range(from, to).map((j) => countAt(state, j, limit));
  return { from, to, values, total: sum(values) };
}

/** Milliseconds (from `early`) until enough of the checked slots have expired to leave room for `need`. */
function waitFor(view: ReturnType<typeof checked>, need: number, early: number, limit: SlidingWindowLimit): number {
  let left = view.total;
  for (let k = 0; k < view.values.length; k++) {
    left -= view.values[k]!;
    if (left + need <= limit.limit) return Math.ceil(slotStart(view.from + k + lookback(limit) + 1, limit) - early);
  }
  return Math.ceil(slotStart(view.to + lookback(limit) + 1, limit) - early);
}

export function describeWindow(state: WindowState | undefined, at: Moment, limit: SlidingWindowLimit): Decision {
  const view = checked(state ?? {}, at, limit);
  const remaining = Math.max(0, Math.min(limit.limit, limit.limit - view.total));
  const resetMs = view.total > 0 ? waitFor(view, limit.limit, at.early, limit) : 0;
  return { allowed: true, limit: limit.limit, remaining, resetMs: Math.max(0, resetMs), retryAfterMs: 0 };
}

const pin = (state: WindowState, index: number, limit: SlidingWindowLimit): Pin => ({
  position: positionOf(index, limit),
  value: countAt(state, index, limit),
});

/**
 * The condition that makes "checked total + cost <= limit" hold at the moment of the write, in
 * terms of the item's `total` (slots head-S..head). Slots this container no longer counts are
 * subtracted (and pinned); older slots it still counts are added (they only ever shrink).
 */
export function windowCheck(
  state: WindowState,
  at: Moment,
  cost: number | undefined,
  limit: SlidingWindowLimit,
): WindowCheck {
  const head = state.head!;
  if (cost === undefined) return { head, pins: [] };
  const from = slotIndex(at.early, limit) - lookback(limit);
  if (from > head) return { head, pins: [] }; // nothing in the item counts any more
  if (from > head - lookback(limit)) {
    const pins = range(head - lookback(limit), from - 1).map((j) => pin(state, j, limit));
    return { head, maxTotal: limit.limit - cost + sum(pins.map((p) => p.value)), pins };
  }
  const older = sum(range(from, head - lookback(limit) - 1).map((j) => countAt(state, j, limit)));
  return { head, maxTotal: limit.limit - cost - older, pins: [] };
}

/** The write that counts `cost` at `at`; with `enforce` its condition also enforces the limit. */
export function countWrite(
  state: WindowState,
  at: Moment,
  cost: number,
  limit: SlidingWindowLimit,
  enforce: boolean,
): { write: WindowWrite; next: WindowState } {
  const length = ringLength(limit);
  const target = Math.max(state.head ?? Number.NEGATIVE_INFINITY, slotIndex(at.late, limit));
  if (state.head === undefined) {
    const slots = new Array<number>(length).fill(0);
    slots[positionOf(target, limit)] = cost;
    return { write: { branch: 'init', head: target, slots, total: cost }, next: { head: target, total: cost, slots } };
  }
  const head = state.head;
  const check = windowCheck(state, at, enforce ? cost : undefined, limit);
  const slots = range(0, length - 1).map((p) => state.slots?.[p] ?? 0);
  if (target === head) {
    const position = positionOf(head, limit);
    slots[position] = slots[position]! + cost;
    return {
      write: { branch: 'add', check, position, cost, inTotal: true },
      next: { head, total: (state.total ?? 0) + cost, slots },
    };
  }
  // Roll: reuse the positions of slots head+1..target, which held slots that left the ring.
  const reused =
    target - head >= length ? range(0, length - 1) : range(head + 1, target).map((k) => positionOf(k, limit));
  const position = positionOf(target, limit);
  for (const p of reused) slots[p] = 0;
  slots[position] = cost;
  const zero = reused.filter((p) => p !== position);
  if (target - lookback(limit) > head) {
    // The whole old window has left the total: it restarts at this cost.
    return {
      write: { branch: 'roll', check, head: target, position, cost, zero, total: cost },
      next: { head: target, total: cost, slots },
    };
  }
  const leaving = range(head - lookback(limit), target - lookback(limit) - 1).map((j) => pin(state, j, limit));
  const pins = [...check.pins, ...leaving.filter((l) => !check.pins.some((p) => p.position === l.position))];
  const totalDelta = cost - sum(leaving.map((l) => l.value));
  const write: WindowWrite = {
    branch: 'roll',
    check: { ...check, pins },
    head: target,
    position,
    cost,
    zero,
    totalDelta,
  };
  return { write, next: { head: target, total: (state.total ?? 0) + totalDelta, slots } };
}

export function decideWindow(
  state: WindowState | undefined,
  at: Moment,
  cost: number,
  limit: SlidingWindowLimit,
): WindowDecision {
  const stored = state ?? {};
  const view = checked(stored, at, limit);
  if (view.total + cost > limit.limit) {
    const d = describeWindow(stored, at, limit);
    if (cost > limit.limit)
      return { decision: denied(limit.limit, d.remaining, d.resetMs, d.resetMs, true), next: stored };
    return {
      decision: denied(limit.limit, d.remaining, d.resetMs, waitFor(view, cost, at.early, limit)),
      next: stored,
    };
  }
  const { write, next } = countWrite(stored, at, cost, limit, true);
  return { decision: describeWindow(next, at, limit), write, next };
}

/**
 * Settlement. A debit lands in the newest slot without a limit check (the window may go over
 * its limit: debt, repaid as slots expire). A refund comes off the slot of the admission's
 * earliest possible time (never a newer slot than it was counted in), if that slot is still held.
 */
export function adjustWindow(
  state: WindowState | undefined,
  at: Moment,
  delta: number,
  admittedAt: Moment,
  limit: SlidingWindowLimit,
): { write?: WindowWrite; next: WindowState } {
  const stored = state ?? {};
  if (delta > 0) return countWrite(stored, at, delta, limit, false);
  const j = slotIndex(admittedAt.early, limit);
  const head = stored.head;
  if (head === undefined || j > head || j <= head - ringLength(limit)) return { next: stored };
  const position = positionOf(j, limit);
  const inSlot = stored.slots?.[position] ?? 0;
  const refund = Math.min(-delta, inSlot);
  if (refund <= 0) return { next: stored };
  const slots = [...(stored.slots ?? [])];
  slots[position] = inSlot - refund;
  const inTotal = j >= head - lookback(limit);
  return {
    write: { branch: 'add', check: { head, pins: [] }, position, cost: -refund, inTotal, minSlot: refund },
    next: { ...stored, total: (stored.total ?? 0) - (inTotal ? refund : 0), slots },
  };
}

export type WindowGuard = { readonly branch: 'room-window'; readonly check?: WindowCheck };

/** Admission without spending: would `cost` fit now? The guard re-checks it in the store. */
export function guardWindow(
  state: WindowState | undefined,
  at: Moment,
  cost: number,
  limit: SlidingWindowLimit,
): { decision: Decision; guard: WindowGuard } {
  const stored = state ?? {};
  const plan = decideWindow(stored, at, cost, limit);
  const decision = plan.decision.allowed ? describeWindow(stored, at, limit) : plan.decision;
  if (stored.head === undefined) return { decision, guard: { branch: 'room-window' } };
  return { decision, guard: { branch: 'room-window', check: windowCheck(stored, at, cost, limit) } };
}

/** Milliseconds a window's state can matter after its newest slot began. */
export const windowMemoryMs = (limit: SlidingWindowLimit): number => ringLength(limit) * slotMs(limit);
