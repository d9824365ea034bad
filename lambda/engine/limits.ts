import { DEFAULT_SUB_WINDOWS, MAX_CAPACITY_TICKS, MAX_RATE_PER_SECOND, ticksPerUnit } from './constants';
import { type Calendar, LONGEST_PERIOD_MS, PERIODS, type Period, requireTimeZone } from './calendar';
import { InvalidLimitError } from './errors';

/**
 * Refills `refillPerSecond` up to `capacity`; a full bucket bursts up to `capacity` at once.
 * Made by {@link tokenBucket}.
 * @example
 * ```json
 * { "shape": "token_bucket", "capacity": 50000, "refillPerSecond": 500 }
 * ```
 */
export interface TokenBucketLimit {
  /** Names the shape in JSON. */
  readonly shape: 'token_bucket';
  /** The most the bucket holds: the largest burst, in the limit's unit (requests, tokens or micro-dollars). */
  readonly capacity: number;
  /** How much comes back each second, up to `capacity`. */
  readonly refillPerSecond: number;
  /**
   * A small extra allowance that accrues only while the main bucket is full (usage below the rate),
   * spent only after the main bucket is empty.
   * @default - no burst credit
   */
  readonly burstCredit?: BurstCredit;
}

/**
 * Credit above a token bucket's rate, earned while usage stays below it.
 * @example
 * tokenBucket(10_000, 100, { capacity: 2_000, accruePerSecond: 10 })
 */
export interface BurstCredit {
  /** The most credit the bucket keeps. */
  readonly capacity: number;
  /** Credit earned each second while the main bucket is full. */
  readonly accruePerSecond: number;
}

/**
 * A meter: each admission pours its cost in, the bucket drains `drainPerSecond`, and a cost that
 * would overflow `capacity` is rejected (never queued). Keep `capacity` near one request's cost
 * for strict pacing; admissions are then spaced at least cost / drainPerSecond apart.
 */
export interface LeakyBucketLimit {
  /** Names the shape in JSON. */
  readonly shape: 'leaky_bucket';
  /** What the bucket holds before it rejects, in the limit's unit. */
  readonly capacity: number;
  /** How much drains out each second: the sustained rate. */
  readonly drainPerSecond: number;
}

/**
 * At most `limit` in any rolling window of `windowMs`. Counted in `subWindows` slots; an admission
 * counts the slot it falls in plus the `subWindows` before it, so the check is conservative by at
 * most one slot (windowMs / subWindows) and never admits more than `limit` in any window.
 */
export interface SlidingWindowLimit {
  /** Names the shape in JSON. */
  readonly shape: 'sliding_window';
  /** The most admitted in any window, in the limit's unit. */
  readonly limit: number;
  /** The window's length in milliseconds (in JSON also `window: "1m"`, `"2h30m"`). */
  readonly windowMs: number;
  /** Slots the window is counted in, 1 to 60: more is more precise and a larger item. */
  readonly subWindows: number;
  /**
   * A calendar budget: at most `limit` in each day, ISO week or month of a time zone, counted
   * from the period's first moment (calendarBudget). Its one slot is the period; `windowMs` is
   * the longest a period lasts.
   * @default none: a rolling window
   */
  readonly calendar?: Calendar;
}

/** A bucket shape: what a limit's `limit` is (README, "Bucket shapes"). */
export type Limit = TokenBucketLimit | LeakyBucketLimit | SlidingWindowLimit;
/** The name of a bucket shape: `token_bucket`, `leaky_bucket` or `sliding_window`. */
export type Shape = Limit['shape'];

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Milliseconds in a duration written as text: '500 ms', '10 s', '1 m', '1 h', '1 d', or several
 * summed ('2h30m', '1d 12h'); a number is taken as milliseconds.
 * @param duration - the text, or a number of milliseconds
 * @example
 * durationMs('2h30m') // 9_000_000
 */
export function durationMs(duration: number | string): number {
  if (typeof duration === 'number') return duration;
  // One or more amounts with units, summed: '10 s', '1 m', '2h30m', '1d 12h'.
  const text = duration.trim();
  const part = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/gy;
  let total = 0;
  let at = 0;
  for (let match = part.exec(text); match; match = part.exec(text)) {
    total += Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
    at = part.lastIndex;
  }
  if (!text || at !== text.length) {
    throw new InvalidLimitError(
      `duration '${duration}' is not understood: use a number of ms or e.g. '10 s', '1 m', '2h30m', '1 d'`,
    );
  }
  return total;
}

/** Buckets keep time in whole units of refill (lambda/engine/gcra.ts): a faster rate would outgrow exact numbers. */
function requireRateAtMost(what: string, rate: number): void {
  if (rate > MAX_RATE_PER_SECOND)
    throw new InvalidLimitError(
      `${what} must be at most ${MAX_RATE_PER_SECOND} per second, got ${rate}: count a coarser unit, or split the limit over more shards`,
    );
}

/** A bucket that takes decades to fill would outgrow exact numbers in whole ticks. */
function requireExactTicks(what: string, capacity: number, rate: number): void {
  if (capacity * ticksPerUnit(rate) > MAX_CAPACITY_TICKS)
    throw new InvalidLimitError(
      `${what}(${capacity}, ${rate}) takes ${Math.round(capacity / rate / 86_400 / 365)} years to fill: use a faster rate or a smaller capacity`,
    );
}

function requirePositive(what: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new InvalidLimitError(`${what} must be a positive finite number, got ${value}`);
  }
}

/**
 * A token bucket: bursts up to `capacity`, refills `refillPerSecond`; rejects what it cannot cover
 * (nothing is consumed). Throws InvalidLimitError for a value that is not positive and finite.
 * @param capacity - the largest burst, in the limit's unit
 * @param refillPerSecond - the sustained rate
 * @param burstCredit - optional credit above the rate, earned while usage stays below it
 * @example
 * tokens(tokenBucket(50_000, 500)) // 50,000 tokens at once, 500 a second sustained
 */
export function tokenBucket(capacity: number, refillPerSecond: number, burstCredit?: BurstCredit): TokenBucketLimit {
  requirePositive('tokenBucket capacity', capacity);
  requirePositive('tokenBucket refillPerSecond', refillPerSecond);
  requireRateAtMost('tokenBucket refillPerSecond', refillPerSecond);
  requireExactTicks('tokenBucket', capacity, refillPerSecond);
  if (burstCredit) {
    requirePositive('tokenBucket burstCredit.capacity', burstCredit.capacity);
    requirePositive('tokenBucket burstCredit.accruePerSecond', burstCredit.accruePerSecond);
    return { shape: 'token_bucket', capacity, refillPerSecond, burstCredit };
  }
  return { shape: 'token_bucket', capacity, refillPerSecond };
}

/**
 * A leaky bucket (a meter): admissions pour in, it drains `drainPerSecond`, and what would
 * overflow `capacity` is rejected, never queued.
 * @param capacity - what it holds before it rejects: near one request's cost for strict pacing
 * @param drainPerSecond - the sustained rate
 * @example
 * requests(leakyBucket(1, 10)) // one request per 100 ms, no bursts
 */
export function leakyBucket(capacity: number, drainPerSecond: number): LeakyBucketLimit {
  requirePositive('leakyBucket capacity', capacity);
  requirePositive('leakyBucket drainPerSecond', drainPerSecond);
  requireRateAtMost('leakyBucket drainPerSecond', drainPerSecond);
  requireExactTicks('leakyBucket', capacity, drainPerSecond);
  return { shape: 'leaky_bucket', capacity, drainPerSecond };
}

/**
 * A sliding window: at most `limit` in any rolling `window`.
 * @param limit - the most in any window
 * @param window - its length: milliseconds, or text such as '1 m', '1 h', '1 d'
 * @param subWindows - slots it is counted in, 1 to 60 (conservative by at most one slot)
 * @example
 * requests(slidingWindow(100, '1 m'))
 */
export function slidingWindow(
  limit: number,
  window: number | string,
  subWindows: number = DEFAULT_SUB_WINDOWS,
): SlidingWindowLimit {
  const windowMs = durationMs(window);
  requirePositive('slidingWindow limit', limit);
  requirePositive('slidingWindow window', windowMs);
  if (!Number.isInteger(windowMs))
    throw new InvalidLimitError(`slidingWindow window must be a whole number of milliseconds, got ${windowMs}`);
  if (!Number.isInteger(subWindows) || subWindows < 1 || subWindows > 60) {
    throw new InvalidLimitError(`slidingWindow subWindows must be an integer from 1 to 60, got ${subWindows}`);
  }
  return { shape: 'sliding_window', limit, windowMs, subWindows };
}

/** `period` when it is one, else 'day' (a placeholder for a helper that reports the problem later). */
export const calendarPeriodOr = (period: unknown): Period =>
  PERIODS.includes(period as Period) ? (period as Period) : 'day';

/**
 * At most `limit` in each calendar `period` (day, ISO week from Monday, month) of `timeZone`: the
 * count starts again at each period's first moment there (local midnight). Exact like a window:
 * an admission counts in its period, and the 429 says to come back when the next one starts.
 * @param limit the most each period admits (requests, tokens, or micro-dollars under `usd`)
 * @param period 'day', 'week' (ISO, from Monday) or 'month'
 * @param timeZone an IANA time zone name
 * @example usd(calendarBudget(500_000_000, 'month', 'Europe/Paris'))
 */
export function calendarBudget(limit: number, period: Period, timeZone: string = 'UTC'): SlidingWindowLimit {
  requirePositive('calendarBudget limit', limit);
  if (!PERIODS.includes(period))
    throw new InvalidLimitError(
      `calendarBudget period must be one of ${PERIODS.join(', ')}, got ${JSON.stringify(period)}`,
    );
  const zone = requireTimeZone(timeZone, 'calendarBudget');
  return {
    shape: 'sliding_window',
    limit,
    windowMs: LONGEST_PERIOD_MS[period],
    subWindows: 1,
    calendar: { period, timeZone: zone },
  };
}
