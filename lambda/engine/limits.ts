import { DEFAULT_SUB_WINDOWS, MAX_CAPACITY_TICKS, MAX_RATE_PER_SECOND, ticksPerUnit } from './constants';
import { type Calendar, LONGEST_PERIOD_MS, PERIODS, type Period, requireTimeZone } from './calendar';
import { InvalidLimitError } from './errors';

/** Refills `refillPerSecond` up to `capacity`; a full bucket bursts up to `capacity` at once. */
export interface TokenBucketLimit {
  readonly shape: 'token_bucket';
  readonly capacity: number;
  readonly refillPerSecond: number;
  /** A small extra allowance that accrues only while the main bucket is full (usage below the rate). */
  readonly burstCredit?: BurstCredit;
}

export interface BurstCredit {
  readonly capacity: number;
  readonly accruePerSecond: number;
}

/**
 * A meter: each admission pours its cost in, the bucket drains `drainPerSecond`, and a cost that
 * would overflow `capacity` is rejected (never queued). Keep `capacity` near one request's cost
 * for strict pacing; admissions are then spaced at least cost / drainPerSecond apart.
 */
export interface LeakyBucketLimit {
  readonly shape: 'leaky_bucket';
  readonly capacity: number;
  readonly drainPerSecond: number;
}

/**
 * At most `limit` in any rolling window of `windowMs`. Counted in `subWindows` slots; an admission
 * counts the slot it falls in plus the `subWindows` before it, so the check is conservative by at
 * most one slot (windowMs / subWindows) and never admits more than `limit` in any window.
 */
export interface SlidingWindowLimit {
  readonly shape: 'sliding_window';
  readonly limit: number;
  readonly windowMs: number;
  readonly subWindows: number;
  /**
   * A calendar budget: at most `limit` in each day, ISO week or month of a time zone, counted
   * from the period's first moment (calendarBudget). Its one slot is the period; `windowMs` is
   * the longest a period lasts.
   */
  readonly calendar?: Calendar;
}

export type Limit = TokenBucketLimit | LeakyBucketLimit | SlidingWindowLimit;
export type Shape = Limit['shape'];

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses '500 ms', '10 s', '1 m', '1 h', '1 d' (or a number of ms). */
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

export function leakyBucket(capacity: number, drainPerSecond: number): LeakyBucketLimit {
  requirePositive('leakyBucket capacity', capacity);
  requirePositive('leakyBucket drainPerSecond', drainPerSecond);
  requireRateAtMost('leakyBucket drainPerSecond', drainPerSecond);
  requireExactTicks('leakyBucket', capacity, drainPerSecond);
  return { shape: 'leaky_bucket', capacity, drainPerSecond };
}

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

/**
 * At most `limit` in each calendar `period` (day, ISO week from Monday, month) of `timeZone`: the
 * count starts again at each period's first moment there (local midnight). Exact like a window:
 * an admission counts in its period, and the 429 says to come back when the next one starts.
 */
export function calendarBudget(limit: number, period: Period, timeZone = 'UTC'): SlidingWindowLimit {
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
