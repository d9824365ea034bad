/**
 * Schedules of several containers with leases (lambda/engine/leases.ts) on one key, on one
 * injected clock, and the measure of what they admitted past the limit in any stretch of time.
 * The lease tests generate them; the bench plays the targeted ones (bench/engine.ts).
 */
import { periodIndex, periodStart } from '../../lambda/engine/calendar';
import { ticksPerUnit } from '../../lambda/engine/constants';
import { fillMs } from '../../lambda/engine/gcra';
import type { Limit } from '../../lambda/engine/limits';
import { slotMs } from '../../lambda/engine/sliding-window';
import type { LimitStore } from '../../lambda/engine/store';

export interface Admission {
  readonly at: number;
  readonly cost: number;
}

/** The most admitted in any stretch of time beyond what the limit allows for it (<= 0: never over). */
export function worstOverrun(limit: Limit, admitted: readonly Admission[]): number {
  let worst = Number.NEGATIVE_INFINITY;
  if (limit.shape === 'sliding_window' && limit.calendar) {
    // A calendar budget: what each period admitted, periods reckoned by Intl here, not by the engine.
    const byPeriod = new Map<string, number>();
    const day = new Intl.DateTimeFormat('en-CA', { timeZone: limit.calendar.timeZone, dateStyle: 'short' });
    for (const a of admitted) {
      const date = day.format(a.at); // YYYY-MM-DD
      const week = Math.floor((Date.parse(`${date}T00:00:00Z`) / 86_400_000 + 3) / 7);
      const period = { day: date, month: date.slice(0, 7), week: String(week) }[limit.calendar.period];
      byPeriod.set(period, (byPeriod.get(period) ?? 0) + a.cost);
    }
    for (const sum of byPeriod.values()) worst = Math.max(worst, sum - limit.limit);
    return worst;
  }
  for (let j = 0; j < admitted.length; j++) {
    let sum = 0;
    for (let i = j; i >= 0; i--) {
      const a = admitted[i]!;
      if (limit.shape === 'sliding_window') {
        if (a.at <= admitted[j]!.at - limit.windowMs) break;
        sum += a.cost;
        worst = Math.max(worst, sum - limit.limit);
      } else {
        sum += a.cost;
        const rate = limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond;
        // Time is whole ticks, the present rounded down (gcra.ts): a tick at each end.
        const allowed = limit.capacity + (rate * (admitted[j]!.at - a.at)) / 1000 + 2 / ticksPerUnit(rate);
        worst = Math.max(worst, sum - allowed);
      }
    }
  }
  return worst;
}

/**
 * One step of a schedule, by container `c`:
 * - `spend`: `gapMs` later, one decision of `cost`;
 * - `lease-end`: at the last moment of the lease `c` took with its latest write (now, if that has
 *   passed), decisions of `cost` until `c` holds no lease units for it (just one unless `all`);
 * - `past-end`: `afterMs` past that last moment, one decision of `cost`;
 * - `drain`: `gapMs` later, all the store has left (peeked), then units until nothing more fits.
 */
export type LeaseStep =
  | { readonly kind: 'spend'; readonly c: number; readonly gapMs: number; readonly cost: number }
  | { readonly kind: 'lease-end'; readonly c: number; readonly cost: number; readonly all: boolean }
  | { readonly kind: 'past-end'; readonly c: number; readonly afterMs: number; readonly cost: number }
  | { readonly kind: 'drain'; readonly c: number; readonly gapMs: number };

export interface Played {
  readonly admitted: Admission[];
  readonly decisions: number;
  readonly denials: number;
}

/** How big a limit is: a bucket's capacity, a window's limit. */
export const sizeOf = (limit: Limit): number => (limit.shape === 'sliding_window' ? limit.limit : limit.capacity);

/** How long a limit takes to give everything back: a bucket's fill time, a window plus a slot. */
export const refillMs = (limit: Limit): number =>
  limit.shape === 'sliding_window' ? limit.windowMs + limit.windowMs / limit.subWindows : fillMs(limit);

/**
 * The last moment a lease taken at `nowMs` may be spent, as docs/design.md says it (reckoned here,
 * not by the code under test): a bucket's write stamps its charge 1% of the fill time later (at
 * most 10 s), a window's lease lives until its slot ends.
 */
export function lastMoment(limit: Limit, nowMs: number): number {
  if (limit.shape !== 'sliding_window') return nowMs + Math.floor(Math.min(10_000, 0.01 * fillMs(limit)));
  // A calendar budget's lease lives 10 s at most, and never past its period.
  if (limit.calendar)
    return Math.min(nowMs + 10_000, periodStart(periodIndex(nowMs, limit.calendar) + 1, limit.calendar) - 1);
  const slot = Math.floor((nowMs * limit.subWindows) / limit.windowMs);
  return Math.ceil(((slot + 1) * limit.windowMs) / limit.subWindows) - 1;
}

/** Plays `steps` on `containers` (each a LimitStore with leases, on `clock`) against one key. */
export async function play(
  limit: Limit,
  containers: readonly LimitStore[],
  key: string,
  steps: readonly LeaseStep[],
  clock: { now: number },
): Promise<Played> {
  const admitted: Admission[] = [];
  const leaseEnds = containers.map(() => clock.now);
  let decisions = 0;
  let denials = 0;
  const decide = async (c: number, cost: number): Promise<boolean> => {
    const store = containers[c]!;
    const calls = store.stats.calls;
    const d = await store.consume(key, limit, cost);
    decisions++;
    if (!d.allowed) {
      denials++;
      return false;
    }
    admitted.push({ at: clock.now, cost });
    // A write that admitted may have taken a lease: its last moment (a target for the steps that follow).
    if (store.stats.calls > calls) leaseEnds[c] = lastMoment(limit, clock.now);
    return true;
  };
  for (const s of steps) {
    if (s.kind === 'spend') {
      clock.now += s.gapMs;
      await decide(s.c, s.cost);
    } else if (s.kind === 'lease-end') {
      clock.now = Math.max(clock.now, leaseEnds[s.c]!);
      do if (!(await decide(s.c, s.cost))) break;
      while (s.all && containers[s.c]!.leased(key) >= s.cost);
    } else if (s.kind === 'past-end') {
      clock.now = Math.max(clock.now, leaseEnds[s.c]! + s.afterMs);
      await decide(s.c, s.cost);
    } else {
      clock.now += s.gapMs;
      // All the store says there is, then what is left a unit or two at a time (from a lease, too).
      const all = (await containers[s.c]!.peek(key, limit)).remaining;
      if (all > 0) await decide(s.c, all);
      for (const cost of [2, 1]) while (await decide(s.c, cost)) {}
    }
  }
  return { admitted, decisions, denials };
}

/**
 * Two containers, by hand, where a lease's exactness matters (0 and 1 may be the same store):
 * - `spent at its last moment`: after a refill, container 0 writes twice (the second write takes a
 *   lease on a full bucket) and spends the whole lease at its last moment, when container 1 takes
 *   all the store gives. Exact only if the lease's charge was stamped at that last moment.
 * - `spent past its end`: the same lease, then a pause past its end long enough to refill all,
 *   container 0 spending its leftover and container 1 taking all the store gives. Exact only if a
 *   lease is never spent after its last moment.
 * - `spent a lifetime past its end`: the same, but the pause is one lease's life (a stamp, a slot):
 *   a lease that lived twice as long as it should would still be spent there.
 * - `spent two milliseconds past its end`: the same, but the pause is 2 ms. For a window, the drain
 *   comes at the first moment its lease's slot no longer counts while the spend is still in the
 *   window: exact only if a window's lease dies with its slot. (A millisecond past is not enough
 *   to show it: the spend then opens the next slot, whose window ends when the lease's slot leaves.)
 */
export function targetedSchedules(limit: Limit): [string, LeaseStep[]][] {
  const takeLease: LeaseStep[] = [
    { kind: 'past-end', c: 0, afterMs: 2 * refillMs(limit), cost: 1 },
    { kind: 'spend', c: 0, gapMs: 0, cost: 1 },
  ];
  const spentPast = (afterMs: number, drainGapMs = 0): LeaseStep[] => [
    ...takeLease,
    { kind: 'past-end', c: 0, afterMs, cost: 1 },
    { kind: 'lease-end', c: 0, cost: 1, all: true },
    { kind: 'drain', c: 1, gapMs: drainGapMs },
  ];
  // A calendar budget's lease spent late is shown by a drain in the period it was spent in, at once.
  const rolling = limit.shape === 'sliding_window' && !limit.calendar;
  // A window's lease spent a slot late still shares its window with its own slot: the drain that
  // shows it comes when that slot no longer counts, within a window of the spend.
  const lifetime: [number, number] = rolling
    ? [slotMs(limit), limit.windowMs - slotMs(limit) + 1]
    : [limit.shape === 'sliding_window' ? 10_000 : lastMoment(limit, 0), 0];
  return [
    [
      'spent at its last moment',
      [...takeLease, { kind: 'lease-end', c: 0, cost: 1, all: true }, { kind: 'drain', c: 1, gapMs: 0 }],
    ],
    ['spent past its end', spentPast(2 * refillMs(limit))],
    ['spent a lifetime past its end', spentPast(...lifetime)],
    ['spent two milliseconds past its end', spentPast(2, rolling ? limit.windowMs - 1 : 0)],
  ];
}
