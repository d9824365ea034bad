import fc from 'fast-check';
import { MAX_CAPACITY_TICKS, MAX_RATE_PER_SECOND, ticksPerUnit } from '../../lambda/engine/constants';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import type { Arrival } from './simulate';

/**
 * Limits and schedules at production scale, drawn on a log scale so that every order of magnitude
 * is as likely as any other: rates from one a day to millions a second, capacities up to millions,
 * costs from one unit to more than the whole limit, idle gaps from nothing to days. Uniform
 * generators over small ranges never reach a per-day quota or a 1e6-token bucket.
 */
const DAY_MS = 86_400_000;

/** A double drawn uniformly in log space between min and max (both > 0). */
export const logDouble = (min: number, max: number): fc.Arbitrary<number> => {
  // fc.double is uniform over the doubles' bit patterns (most of them are near 0), and biased
  // towards small values besides: an unbiased integer over a million steps is uniform in log space.
  const steps = 1_000_000;
  const [lo, hi] = [Math.log(min), Math.log(max)];
  return fc
    .noBias(fc.integer({ min: 0, max: steps }))
    .map((i) => Math.min(max, Math.max(min, Math.exp(lo + ((hi - lo) * i) / steps))));
};

/** A whole number drawn in log space between min and max (both >= 1). */
export const logInteger = (min: number, max: number): fc.Arbitrary<number> =>
  logDouble(min, max + 1).map((x) => Math.min(max, Math.floor(x)));

/** Per second, from one a day to the fastest rate the engine takes. */
const rate = logDouble(1 / 86_400, MAX_RATE_PER_SECOND);
const capacity = logInteger(1, 10_000_000);

const fitsTicks = ({ capacity, rate }: { capacity: number; rate: number }) =>
  capacity * ticksPerUnit(rate) <= MAX_CAPACITY_TICKS;

export const productionTokenBucket: fc.Arbitrary<Limit> = fc
  .record({ capacity, rate })
  .filter(fitsTicks)
  .map(({ capacity, rate }) => tokenBucket(capacity, rate));

export const productionLeakyBucket: fc.Arbitrary<Limit> = fc
  .record({ capacity, rate })
  .filter(fitsTicks)
  .map(({ capacity, rate }) => leakyBucket(capacity, rate));

export const productionWindow: fc.Arbitrary<Limit> = fc
  .record({
    limit: capacity,
    windowMs: logInteger(1_000, 7 * DAY_MS),
    subWindows: fc.integer({ min: 1, max: 60 }),
  })
  .map(({ limit, windowMs, subWindows }) => slidingWindow(limit, windowMs, subWindows));

/** A token bucket with burst credit: up to a tenth of its capacity, earned at up to its own rate. */
export const productionCreditBucket: fc.Arbitrary<Limit> = fc
  .record({ capacity, rate, share: logDouble(0.001, 0.1), pace: logDouble(0.01, 1) })
  .filter(fitsTicks)
  .map(({ capacity, rate, share, pace }) =>
    tokenBucket(capacity, rate, { capacity: Math.max(1, Math.round(capacity * share)), accruePerSecond: rate * pace }),
  );

export const productionLimit: fc.Arbitrary<Limit> = fc.oneof(
  productionTokenBucket,
  productionCreditBucket,
  productionLeakyBucket,
  productionWindow,
);

/** How long the limit takes to come back whole: a full refill, or the window. */
export function periodMs(limit: Limit): number {
  if (limit.shape === 'sliding_window') return limit.windowMs;
  const perSecond = limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond;
  return (limit.capacity / perSecond) * 1000;
}

const limitSize = (limit: Limit): number => (limit.shape === 'sliding_window' ? limit.limit : limit.capacity);

/**
 * Arrivals for `limit`: costs from 1 to a little over the whole limit, gaps from 0 to three of the
 * limit's periods (or three days), both log-scaled; many arrivals back to back or close together,
 * so that limits are reached as well as recovered from.
 */
export function productionSchedule(limit: Limit, maxLength = 60): fc.Arbitrary<Arrival[]> {
  const size = limitSize(limit);
  const longest = Math.max(2, Math.min(3 * DAY_MS, 3 * periodMs(limit)));
  const arrival = fc.record({
    gapMs: fc.oneof(
      { weight: 2, arbitrary: fc.constant(0) },
      { weight: 2, arbitrary: logInteger(1, Math.max(2, Math.ceil(longest / 300))) },
      { weight: 1, arbitrary: logInteger(1, longest) },
    ),
    cost: fc.oneof(
      { weight: 2, arbitrary: logInteger(Math.ceil(size / 60), Math.ceil(size / 3)) },
      { weight: 1, arbitrary: logInteger(1, Math.ceil(size * 1.1) + 1) },
    ),
  });
  return fc.array(arrival, { minLength: 1, maxLength, size: 'max' });
}

/** A limit with a schedule made for it. */
export const productionCase = (limits: fc.Arbitrary<Limit>, maxLength?: number) =>
  limits.chain((limit) => productionSchedule(limit, maxLength).map((arrivals) => ({ limit, arrivals })));
