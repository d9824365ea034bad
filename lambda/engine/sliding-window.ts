import { type Decision, denied } from './decision';
import type { SlidingWindowLimit } from './limits';

/**
 * Sliding window as a ring of `subWindows + 1` slot counters. `head` is the index of the newest
 * slot (floor(t / slotMs)); `total` is the sum of the live slots head-S..head. An admission at slot
 * index i counts slots i-S..i, which cover every window of length W that ends at the admission, so
 * no window of length W ever holds more than the limit. The price is precision: up to one slot
 * (W / S) of older traffic is still counted, so the window can deny slightly early.
 */
export interface WindowState {
  readonly head?: number;
  readonly total?: number;
  readonly writes?: number;
  /** Counters by ring position (index % ring length). */
  readonly slots?: readonly number[];
}

export type WindowWrite =
  /** First write: attribute_not_exists(head). */
  | { readonly branch: 'init'; readonly head: number; readonly slots: readonly number[]; readonly total: number }
  /** Same slot: head = h AND total <= maxTotal -> total += cost, slot += cost. Commutes under contention. */
  | { readonly branch: 'add'; readonly head: number; readonly position: number; readonly cost: number; readonly maxTotal?: number; readonly minSlot?: number }
  /** Time moved to a new slot: compare-and-set on head and the write counter, rewriting the ring. */
  | { readonly branch: 'roll'; readonly expectHead: number; readonly expectWrites: number; readonly head: number; readonly slots: readonly number[]; readonly total: number };

export interface WindowPlan {
  readonly decision: Decision;
  readonly write?: WindowWrite;
  readonly next: WindowState;
}

const ringLength = (limit: SlidingWindowLimit): number => limit.subWindows + 1;
const slotMs = (limit: SlidingWindowLimit): number => limit.windowMs / limit.subWindows;
export const slotIndex = (now: number, limit: SlidingWindowLimit): number => Math.floor(now / slotMs(limit));

/** The ring as seen from slot index `at` (>= head): slots that left the window are zeroed. */
function liveSlots(state: WindowState, at: number, limit: SlidingWindowLimit): number[] {
  const length = ringLength(limit);
  const slots = new Array<number>(length).fill(0);
  if (state.head === undefined) return slots;
  for (let j = Math.max(state.head - limit.subWindows, at - limit.subWindows); j <= state.head; j++) {
    const position = j % length;
    slots[position] = state.slots?.[position] ?? 0;
  }
  return slots;
}

function view(state: WindowState, now: number, limit: SlidingWindowLimit): { at: number; slots: number[]; total: number } {
  const at = Math.max(state.head ?? -Infinity, slotIndex(now, limit));
  const slots = liveSlots(state, at, limit);
  return { at, slots, total: slots.reduce((sum, n) => sum + n, 0) };
}

/** Milliseconds until the live total, less the slots that expire by then, leaves room for `need`. */
function waitFor(slots: number[], at: number, total: number, need: number, now: number, limit: SlidingWindowLimit): number {
  const length = ringLength(limit);
  let left = total;
  for (let j = at - limit.subWindows; j <= at; j++) {
    left -= slots[((j % length) + length) % length] ?? 0;
    if (left + need <= limit.limit) return (j + limit.subWindows + 1) * slotMs(limit) - now;
  }
  return (at + limit.subWindows + 1) * slotMs(limit) - now;
}

export function describeWindow(state: WindowState | undefined, now: number, limit: SlidingWindowLimit): Decision {
  const v = view(state ?? {}, now, limit);
  const remaining = Math.max(0, Math.min(limit.limit, limit.limit - v.total));
  const resetMs = v.total > 0 ? waitFor(v.slots, v.at, v.total, limit.limit, now, limit) : 0;
  return { allowed: true, limit: limit.limit, remaining, resetMs: Math.max(0, resetMs), retryAfterMs: 0 };
}

function planWrite(state: WindowState, now: number, cost: number, limit: SlidingWindowLimit, maxTotal?: number): { write: WindowWrite; next: WindowState } {
  const i = slotIndex(now, limit);
  const length = ringLength(limit);
  if (state.head === undefined) {
    const slots = new Array<number>(length).fill(0);
    slots[i % length] = cost;
    return { write: { branch: 'init', head: i, slots, total: cost }, next: { head: i, total: cost, writes: 1, slots } };
  }
  if (state.head >= i) {
    const position = state.head % length;
    const slots = [...(state.slots ?? new Array<number>(length).fill(0))];
    slots[position] = (slots[position] ?? 0) + cost;
    const write: WindowWrite = { branch: 'add', head: state.head, position, cost, ...(maxTotal === undefined ? {} : { maxTotal }) };
    return { write, next: { ...state, total: (state.total ?? 0) + cost, writes: (state.writes ?? 0) + 1, slots } };
  }
  const slots = liveSlots(state, i, limit);
  slots[i % length] = (slots[i % length] ?? 0) + cost;
  const total = slots.reduce((sum, n) => sum + n, 0);
  const write: WindowWrite = { branch: 'roll', expectHead: state.head, expectWrites: state.writes ?? 0, head: i, slots, total };
  return { write, next: { head: i, total, writes: (state.writes ?? 0) + 1, slots } };
}

export function decideWindow(state: WindowState | undefined, now: number, cost: number, limit: SlidingWindowLimit): WindowPlan {
  const stored = state ?? {};
  const v = view(stored, now, limit);
  if (v.total + cost > limit.limit) {
    const d = describeWindow(stored, now, limit);
    if (cost > limit.limit) return { decision: denied(limit.limit, d.remaining, d.resetMs, d.resetMs, true), next: stored };
    return { decision: denied(limit.limit, d.remaining, d.resetMs, waitFor(v.slots, v.at, v.total, cost, now, limit)), next: stored };
  }
  const { write, next } = planWrite(stored, now, cost, limit, limit.limit - cost);
  return { decision: describeWindow(next, now, limit), write, next };
}

/**
 * Settlement. A debit lands in the current slot without a limit check (the window may go over
 * its limit: debt, repaid as slots expire). A refund comes off the slot the admission was counted
 * in, if that slot is still live; once it has left the window there is nothing left to refund.
 */
export function adjustWindow(state: WindowState | undefined, now: number, delta: number, admittedAt: number, limit: SlidingWindowLimit): { write?: WindowWrite; next: WindowState } {
  const stored = state ?? {};
  if (delta > 0) return planWrite(stored, now, delta, limit);
  const amount = -delta;
  const j = slotIndex(admittedAt, limit);
  if (amount === 0 || stored.head === undefined || j > stored.head || j < stored.head - limit.subWindows) return { next: stored };
  const position = j % ringLength(limit);
  const inSlot = stored.slots?.[position] ?? 0;
  const refund = Math.min(amount, inSlot);
  if (refund <= 0) return { next: stored };
  const slots = [...(stored.slots ?? [])];
  slots[position] = inSlot - refund;
  return {
    write: { branch: 'add', head: stored.head, position, cost: -refund, minSlot: refund },
    next: { ...stored, total: (stored.total ?? 0) - refund, writes: (stored.writes ?? 0) + 1, slots },
  };
}
