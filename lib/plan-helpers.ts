/**
 * The plan helpers as the construct's users call them: they never throw. A helper given a value it
 * cannot take still returns a limit, and remembers the call and its problem; the construct reports
 * it with every other problem, after its path and where it sits in the props:
 * `Llm/Limiter: plans.team.user[0]: requestsPerMinute(0): give a positive number of requests`.
 * The engine's helpers (the `llm-rate-limiter/engine` subpath, for code outside the construct)
 * throw at once: there is no construct to report to.
 */
import { InvalidLimitError } from '../lambda/engine/errors';
import * as shapes from '../lambda/engine/limits';
import * as engine from '../lambda/engine/plans';
import type { CalendarOptions, LimitOptions, LimitSpec } from '../lambda/engine/plans';

const problems = new WeakMap<object, string>();

/** The problem a helper recorded for this limit or spec (`requestsPerMinute(0): ...`), if any. */
export function helperProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  return problems.get(value) ?? helperProblem((value as { limit?: unknown }).limit);
}

/** `requestsPerMinute(0)`, `slidingWindow(5, '1 minute')`, `bedrockQuota({ tokensPerMinute: 0 })`: the call as written. */
export function callOf(name: string, args: readonly unknown[]): string {
  const show = (v: unknown): string => {
    if (typeof v === 'string') return `'${v}'`;
    if (typeof v !== 'object' || v === null) return String(v);
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${k}: ${show(x)}`)
      .join(', ')} }`;
  };
  while (args.length && args.at(-1) === undefined) args = args.slice(0, -1);
  return `${name}(${args.map(show).join(', ')})`;
}

/** Records `problem` (if any) against `value` under the call that made it; returns `value`. */
export function remember<T extends object>(value: T, call: string, problem: string | undefined): T {
  if (problem) problems.set(value, `${call}: ${problem}`);
  return value;
}

/**
 * The engine's helper, deferred: on an InvalidLimitError it returns what the same helper makes of
 * `placeholder` arguments instead (valid, so nothing else is reported about it) and remembers the
 * problem, worded without the helper's internal names. The construct refuses the props anyway.
 */
function deferred<A extends unknown[], T extends object>(
  name: string,
  helper: (...args: A) => T,
  placeholder: (...args: A) => A,
  check: (...args: A) => string | undefined = () => undefined,
): (...args: A) => T {
  return (...args: A) => {
    const problem = check(...args);
    try {
      if (!problem) return helper(...args);
    } catch (err) {
      if (!(err instanceof InvalidLimitError)) throw err;
      return remember(helper(...placeholder(...args)), callOf(name, args), err.message.replace(`${name} `, ''));
    }
    return remember(helper(...placeholder(...args)), callOf(name, args), problem);
  };
}

// Placeholders: valid, large enough for the global limits' shards, with periods no helper names.
const BIG = 1_000_000;
const PER_PERIOD = 1_000;

/** A token bucket: capacity, refill per second, optional burst credit (see the README's "Bucket shapes"). */
export const tokenBucket: typeof shapes.tokenBucket = deferred('tokenBucket', shapes.tokenBucket, () => [BIG, 1_000]);
/** A leaky bucket: capacity and drain per second, a meter that rejects what would overflow. */
export const leakyBucket: typeof shapes.leakyBucket = deferred('leakyBucket', shapes.leakyBucket, () => [BIG, 1_000]);
/** A sliding window: at most `limit` in any window of that length (`'1 m'`, `'2h30m'` or milliseconds). */
export const slidingWindow: typeof shapes.slidingWindow = deferred<
  Parameters<typeof shapes.slidingWindow>,
  shapes.SlidingWindowLimit
>('slidingWindow', shapes.slidingWindow, () => [BIG, 1_000]);

/** A per-period helper: its argument checked in its own words, any deeper problem under its own name. */
const perPeriod = (name: string, unit: string, helper: (n: number, options?: LimitOptions) => LimitSpec) =>
  deferred<[number, LimitOptions?], LimitSpec>(
    name,
    helper,
    (_n, options) => [PER_PERIOD, options],
    (n) => (Number.isFinite(n) && n > 0 ? undefined : `give a positive number of ${unit}`),
  );

/** At most `n` requests in any minute (a sliding window). */
export const requestsPerMinute = perPeriod('requestsPerMinute', 'requests', engine.requestsPerMinute);
/** At most `n` requests in any day (a sliding window of 24 hours). */
export const requestsPerDay = perPeriod('requestsPerDay', 'requests', engine.requestsPerDay);
/** `n` tokens a minute, bursting up to `n` (a token bucket). */
export const tokensPerMinute = perPeriod('tokensPerMinute', 'tokens', engine.tokensPerMinute);
/** `n` tokens a day, bursting up to `n` (a token bucket). */
export const tokensPerDay = perPeriod('tokensPerDay', 'tokens', engine.tokensPerDay);
/** A spend limit of `dollars` USD a day, counted in micro-dollars (a token bucket). */
export const usdPerDay = perPeriod('usdPerDay', 'dollars', engine.usdPerDay);

/** A calendar budget: at most `limit` each day, ISO week or month of a time zone (`timeZone`, default UTC). */
export const calendarBudget: typeof shapes.calendarBudget = deferred<
  Parameters<typeof shapes.calendarBudget>,
  shapes.SlidingWindowLimit
>('calendarBudget', shapes.calendarBudget, (_limit, period) => [BIG, shapes.calendarPeriodOr(period), 'UTC']);

/** A calendar helper: its amount checked in its own words, its zone (or any deeper problem) under its own name. */
const perCalendar = (name: string, unit: string, helper: (n: number, options?: CalendarOptions) => LimitSpec) =>
  deferred<[number, CalendarOptions?], LimitSpec>(
    name,
    helper,
    (_n, options) => [PER_PERIOD, { ...options, timeZone: 'UTC' }],
    (n) => (Number.isFinite(n) && n > 0 ? undefined : `give a positive number of ${unit}`),
  );

/** At most `n` tokens each calendar day of `timeZone`, from local midnight. */
export const tokensPerCalendarDay = perCalendar('tokensPerCalendarDay', 'tokens', engine.tokensPerCalendarDay);
/** At most `n` tokens each calendar month of `timeZone`. */
export const tokensPerMonth = perCalendar('tokensPerMonth', 'tokens', engine.tokensPerMonth);
/** At most `dollars` each calendar day of `timeZone`. */
export const usdPerCalendarDay = perCalendar('usdPerCalendarDay', 'dollars', engine.usdPerCalendarDay);
/** At most `dollars` each ISO week of `timeZone`. */
export const usdPerWeek = perCalendar('usdPerWeek', 'dollars', engine.usdPerWeek);
/** At most `dollars` each calendar month of `timeZone`. */
export const usdPerMonth = perCalendar('usdPerMonth', 'dollars', engine.usdPerMonth);
