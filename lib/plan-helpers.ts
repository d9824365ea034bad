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
import type { Period } from '../lambda/engine/calendar';
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

const deferred_tokenBucket: typeof shapes.tokenBucket = deferred('tokenBucket', shapes.tokenBucket, () => [BIG, 1_000]);
/**
 * A token bucket: bursts up to `capacity`, refills `refillPerSecond`; rejects what it cannot cover
 * (nothing is consumed). Throws InvalidLimitError for a value that is not positive and finite.
 * @param capacity - the largest burst, in the limit's unit
 * @param refillPerSecond - the sustained rate
 * @param burstCredit - optional credit above the rate, earned while usage stays below it
 * @example
 * tokens(tokenBucket(50_000, 500)) // 50,000 tokens at once, 500 a second sustained
 */
export function tokenBucket(
  capacity: number,
  refillPerSecond: number,
  burstCredit?: shapes.BurstCredit,
): shapes.TokenBucketLimit {
  return deferred_tokenBucket(capacity, refillPerSecond, burstCredit);
}
const deferred_leakyBucket: typeof shapes.leakyBucket = deferred('leakyBucket', shapes.leakyBucket, () => [BIG, 1_000]);
/**
 * A leaky bucket (a meter): admissions pour in, it drains `drainPerSecond`, and what would
 * overflow `capacity` is rejected, never queued.
 * @param capacity - what it holds before it rejects: near one request's cost for strict pacing
 * @param drainPerSecond - the sustained rate
 * @example
 * requests(leakyBucket(1, 10)) // one request per 100 ms, no bursts
 */
export function leakyBucket(capacity: number, drainPerSecond: number): shapes.LeakyBucketLimit {
  return deferred_leakyBucket(capacity, drainPerSecond);
}
const deferred_slidingWindow: typeof shapes.slidingWindow = deferred<
  Parameters<typeof shapes.slidingWindow>,
  shapes.SlidingWindowLimit
>('slidingWindow', shapes.slidingWindow, () => [BIG, 1_000]);
/**
 * A sliding window: at most `limit` in any rolling `window`.
 * @param limit - the most in any window
 * @param window - its length: milliseconds, or text such as '1 m', '1 h', '1 d'
 * @param subWindows - slots it is counted in, 1 to 60 (conservative by at most one slot)
 * @example
 * requests(slidingWindow(100, '1 m'))
 */
export function slidingWindow(limit: number, window: number | string, subWindows?: number): shapes.SlidingWindowLimit {
  return deferred_slidingWindow(limit, window, subWindows);
}

/** A per-period helper: its argument checked in its own words, any deeper problem under its own name. */
const perPeriod = (name: string, unit: string, helper: (n: number, options?: LimitOptions) => LimitSpec) =>
  deferred<[number, LimitOptions?], LimitSpec>(
    name,
    helper,
    (_n, options) => [PER_PERIOD, options],
    (n) => (Number.isFinite(n) && n > 0 ? undefined : `give a positive number of ${unit}`),
  );

const deferred_requestsPerMinute = perPeriod('requestsPerMinute', 'requests', engine.requestsPerMinute);
/**
 * At most `n` requests in any 60 seconds (a sliding window of 10 sub-windows, conservative by at most 6 seconds).
 * @param n - requests a minute, > 0
 * @param options - its name, shadow mode
 * @example
 * requestsPerMinute(60)
 */
export function requestsPerMinute(n: number, options?: LimitOptions): LimitSpec {
  return deferred_requestsPerMinute(n, options);
}
const deferred_requestsPerDay = perPeriod('requestsPerDay', 'requests', engine.requestsPerDay);
/**
 * At most `n` requests in any 24 hours (a sliding window of 24 one-hour sub-windows, conservative
 * by at most one hour).
 * @param n - requests a day, > 0
 * @param options - its name, shadow mode
 * @example
 * requestsPerDay(1_000, { shadow: true })
 */
export function requestsPerDay(n: number, options?: LimitOptions): LimitSpec {
  return deferred_requestsPerDay(n, options);
}
const deferred_tokensPerMinute = perPeriod('tokensPerMinute', 'tokens', engine.tokensPerMinute);
/**
 * `n` tokens a minute: a token bucket of capacity `n` refilling `n`/60 a second, so a full bucket
 * allows a burst of `n` at once.
 * @param n - tokens a minute, > 0
 * @param options - its name, shadow mode, output weight
 * @example
 * tokensPerMinute(20_000)
 */
export function tokensPerMinute(n: number, options?: LimitOptions): LimitSpec {
  return deferred_tokensPerMinute(n, options);
}
const deferred_tokensPerDay = perPeriod('tokensPerDay', 'tokens', engine.tokensPerDay);
/**
 * `n` tokens a day: a token bucket of capacity `n` refilling `n`/86,400 a second (a full day's
 * tokens may be spent at once, then they come back over 24 hours).
 * @param n - tokens a day, > 0
 * @param options - its name, shadow mode, output weight
 * @example
 * tokensPerDay(1_000_000)
 */
export function tokensPerDay(n: number, options?: LimitOptions): LimitSpec {
  return deferred_tokensPerDay(n, options);
}
const deferred_usdPerDay = perPeriod('usdPerDay', 'dollars', engine.usdPerDay);
/**
 * `dollars` of spend a day, priced with the endpoint's model prices: a token bucket of `dollars`
 * × 1,000,000 micro-dollars refilling over 24 hours (a day's budget may be spent at once).
 * @param dollars - USD a day, > 0 (fractions allowed: 0.5 is 50 cents)
 * @param options - its name, shadow mode
 * @example
 * usdPerDay(50)
 */
export function usdPerDay(dollars: number, options?: LimitOptions): LimitSpec {
  return deferred_usdPerDay(dollars, options);
}

const deferred_calendarBudget: typeof shapes.calendarBudget = deferred<
  Parameters<typeof shapes.calendarBudget>,
  shapes.SlidingWindowLimit
>('calendarBudget', shapes.calendarBudget, (_limit, period) => [BIG, shapes.calendarPeriodOr(period), 'UTC']);
/**
 * At most `limit` in each calendar `period` (day, ISO week from Monday, month) of `timeZone`: the
 * count starts again at each period's first moment there (local midnight). Exact like a window:
 * an admission counts in its period, and the 429 says to come back when the next one starts.
 * @param limit the most each period admits (requests, tokens, or micro-dollars under `usd`)
 * @param period 'day', 'week' (ISO, from Monday) or 'month'
 * @param timeZone an IANA time zone name
 * @example usd(calendarBudget(500_000_000, 'month', 'Europe/Paris'))
 */
export function calendarBudget(limit: number, period: Period, timeZone?: string): shapes.SlidingWindowLimit {
  return deferred_calendarBudget(limit, period, timeZone);
}

/** A calendar helper: its amount checked in its own words, its zone (or any deeper problem) under its own name. */
const perCalendar = (name: string, unit: string, helper: (n: number, options?: CalendarOptions) => LimitSpec) =>
  deferred<[number, CalendarOptions?], LimitSpec>(
    name,
    helper,
    (_n, options) => [PER_PERIOD, { ...options, timeZone: 'UTC' }],
    (n) => (Number.isFinite(n) && n > 0 ? undefined : `give a positive number of ${unit}`),
  );

const deferred_tokensPerCalendarDay = perCalendar('tokensPerCalendarDay', 'tokens', engine.tokensPerCalendarDay);
/**
 * At most `n` tokens each calendar day of `timeZone`, from local midnight (a calendar budget).
 * @param n tokens a day
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export function tokensPerCalendarDay(n: number, options?: CalendarOptions): LimitSpec {
  return deferred_tokensPerCalendarDay(n, options);
}
const deferred_tokensPerMonth = perCalendar('tokensPerMonth', 'tokens', engine.tokensPerMonth);
/**
 * At most `n` tokens each calendar month of `timeZone`, from the 1st at local midnight.
 * @param n tokens a month
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 * @example tokensPerMonth(50_000_000, { timeZone: 'America/New_York', alertAt: [80, 100] })
 */
export function tokensPerMonth(n: number, options?: CalendarOptions): LimitSpec {
  return deferred_tokensPerMonth(n, options);
}
const deferred_usdPerCalendarDay = perCalendar('usdPerCalendarDay', 'dollars', engine.usdPerCalendarDay);
/**
 * At most `dollars` each calendar day of `timeZone`, from local midnight.
 * @param dollars US dollars a day
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export function usdPerCalendarDay(dollars: number, options?: CalendarOptions): LimitSpec {
  return deferred_usdPerCalendarDay(dollars, options);
}
const deferred_usdPerWeek = perCalendar('usdPerWeek', 'dollars', engine.usdPerWeek);
/**
 * At most `dollars` each ISO week (from Monday, local midnight) of `timeZone`.
 * @param dollars US dollars a week
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export function usdPerWeek(dollars: number, options?: CalendarOptions): LimitSpec {
  return deferred_usdPerWeek(dollars, options);
}
const deferred_usdPerMonth = perCalendar('usdPerMonth', 'dollars', engine.usdPerMonth);
/**
 * At most `dollars` each calendar month of `timeZone`, from the 1st at local midnight: a
 * contract's monthly budget. A 429 says to retry when the next month starts there.
 * @param dollars US dollars a month
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 * @example usdPerMonth(500, { timeZone: 'Europe/Paris' })
 */
export function usdPerMonth(dollars: number, options?: CalendarOptions): LimitSpec {
  return deferred_usdPerMonth(dollars, options);
}
