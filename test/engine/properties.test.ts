import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjust, type BucketState, decide } from '../../lambda/engine/bucket';
import { MAX_CAPACITY_TICKS, ticksPerUnit } from '../../lambda/engine/constants';
import { creditAt, tatMs } from '../../lambda/engine/gcra';
import { durationMs, type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { productionCase, productionLeakyBucket, productionTokenBucket, productionWindow } from './generators';
import { type Arrival, admittedSpans, simulate } from './simulate';

const arrival = (maxGapMs: number, maxCost: number) =>
  fc.record({ gapMs: fc.integer({ min: 0, max: maxGapMs }), cost: fc.integer({ min: 1, max: maxCost }) });
const schedule = (maxGapMs: number, maxCost: number) =>
  fc.array(arrival(maxGapMs, maxCost), { minLength: 1, maxLength: 120 });

const tokenLimit = fc
  .record({ capacity: fc.integer({ min: 1, max: 50 }), rate: fc.double({ min: 0.1, max: 50, noNaN: true }) })
  .map(({ capacity, rate }) => tokenBucket(capacity, rate));
const leakyLimit = fc
  .record({ capacity: fc.integer({ min: 1, max: 50 }), rate: fc.double({ min: 0.1, max: 50, noNaN: true }) })
  .map(({ capacity, rate }) => leakyBucket(capacity, rate));
const windowLimit = fc
  .record({
    limit: fc.integer({ min: 1, max: 50 }),
    windowMs: fc.integer({ min: 100, max: 20_000 }),
    subWindows: fc.integer({ min: 1, max: 20 }),
  })
  .map(({ limit, windowMs, subWindows }) => slidingWindow(limit, windowMs, subWindows));

const rateOf = (limit: Limit): number =>
  limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.shape === 'leaky_bucket' ? limit.drainPerSecond : 0;

describe.each([
  ['token bucket', tokenLimit],
  ['leaky bucket', leakyLimit],
])('%s properties', (_name, limits) => {
  it('never admits more than capacity + rate x elapsed between any two admissions', () => {
    fc.assert(
      fc.property(limits, schedule(400, 5), (limit, arrivals) => {
        const capacity = limit.capacity;
        for (const span of admittedSpans(simulate(limit, arrivals))) {
          expect(span.cost).toBeLessThanOrEqual(capacity + (rateOf(limit) * span.spanMs) / 1000 + 1e-6);
        }
      }),
    );
  });

  // Settlements give back part of what admissions spent, at any later time. What the bucket keeps
  // charged (cost less what it gave back) must never exceed capacity + rate x elapsed between any
  // two admissions: a refund of units already refilled would let capacity plus the refund through.
  it('never admits more than capacity + rate x elapsed, counting what refunds gave back', () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('reserve' as const),
        gap: fc.integer({ min: 0, max: 1_100 }),
        size: fc.integer({ min: 0, max: 999 }),
      }),
      fc.record({
        kind: fc.constant('refund' as const),
        gap: fc.integer({ min: 0, max: 1_100 }),
        pick: fc.nat(),
        share: fc.integer({ min: 0, max: 1_000 }),
      }),
    );
    fc.assert(
      fc.property(limits, fc.array(step, { minLength: 1, maxLength: 80 }), (limit, steps) => {
        const perUnit = ticksPerUnit(rateOf(limit));
        let state: BucketState | undefined;
        let now = 1_800_000_000_000;
        const admitted: { at: number; cost: number; charged: number; after: BucketState; open: boolean }[] = [];
        // Gaps are shares of the time the bucket takes to fill (mostly short), costs of its capacity
        // (integers: fast-check's doubles pile up at the ends).
        const fillMs = (limit.capacity / rateOf(limit)) * 1000;
        for (const s of steps) {
          now += Math.round((s.gap / 1_000) ** 3 * fillMs);
          if (s.kind === 'reserve') {
            const cost = 1 + Math.floor((s.size / 1_000) * limit.capacity);
            const plan = decide(limit, state, now, cost);
            if (!plan.decision.allowed) continue;
            state = plan.next;
            admitted.push({ at: now, cost, charged: cost, after: plan.next, open: true });
            continue;
          }
          const open = admitted.filter((a) => a.open);
          if (!open.length) continue;
          const a = open[s.pick % open.length]!;
          a.open = false;
          const refund = Math.floor((s.share / 1_000) * a.cost);
          if (refund === 0) continue;
          const { write, next } = adjust(limit, state, now, -refund, a.at, { cost: a.cost, state: a.after });
          if (write?.branch !== 'refund') continue;
          state = next;
          a.charged -= write.dec / perUnit;
        }
        for (let i = 0; i < admitted.length; i++) {
          let charged = 0;
          for (let j = i; j < admitted.length; j++) {
            charged += admitted[j]!.charged;
            const spanMs = admitted[j]!.at - admitted[i]!.at;
            // Time is whole ticks, the present rounded down (gcra.ts): a tick at each end of the span.
            const ticks = 2 / perUnit;
            expect(charged).toBeLessThanOrEqual(limit.capacity + (rateOf(limit) * spanMs) / 1000 + ticks + 1e-9);
          }
        }
      }),
      // The pattern that breaks a wrong refund (refilled, reserved again, then refunded) needs many schedules.
      { numRuns: Math.max(2_000, Number(process.env.FC_RUNS ?? 0)) },
    );
  });

  it('reports remaining as an integer within 0..limit', () => {
    fc.assert(
      fc.property(limits, schedule(400, 5), (limit, arrivals) => {
        for (const o of simulate(limit, arrivals)) {
          expect(Number.isInteger(o.decision.remaining)).toBe(true);
          expect(o.decision.remaining).toBeGreaterThanOrEqual(0);
          expect(o.decision.remaining).toBeLessThanOrEqual(o.decision.limit);
        }
      }),
    );
  });

  it('admits after exactly retryAfterMs, not before', () => {
    fc.assert(
      fc.property(limits, schedule(200, 5), (limit, arrivals) => {
        for (const o of simulate(limit, arrivals)) {
          if (o.decision.allowed || o.decision.exceedsLimit) continue;
          expect(decide(limit, o.before, o.at + o.decision.retryAfterMs, o.cost).decision.allowed).toBe(true);
          if (o.decision.retryAfterMs > 1)
            expect(decide(limit, o.before, o.at + o.decision.retryAfterMs - 1, o.cost).decision.allowed).toBe(false);
        }
      }),
    );
  });
});

describe('sliding window properties', () => {
  // 15,107 ms in 9 slots: slots of 1,678.55... ms. At epoch milliseconds, t / slotMs rounded the
  // first millisecond of a slot into the one before, so the retry the 429 advertised was denied.
  it('admits at the advertised retry time when slots are not whole milliseconds', () => {
    const limit = slidingWindow(1, 15_107, 9);
    const [, denied] = simulate(limit, [
      { gapMs: 63, cost: 1 },
      { gapMs: 0, cost: 1 },
    ]);
    expect(denied!.decision.allowed).toBe(false);
    expect(decide(limit, denied!.before, denied!.at + denied!.decision.retryAfterMs, 1).decision.allowed).toBe(true);
    expect(decide(limit, denied!.before, denied!.at + denied!.decision.retryAfterMs - 1, 1).decision.allowed).toBe(
      false,
    );
  });

  it('refuses a window that is not a whole number of milliseconds', () => {
    expect(() => slidingWindow(10, 1500.5)).toThrow(/whole number of milliseconds/);
  });

  it('never admits more than the limit in any window of its length', () => {
    fc.assert(
      fc.property(windowLimit, schedule(1_000, 5), (limit, arrivals) => {
        for (const span of admittedSpans(simulate(limit, arrivals))) {
          if (span.spanMs < limit.windowMs) expect(span.cost).toBeLessThanOrEqual(limit.limit);
        }
      }),
    );
  });

  it('reports remaining within 0..limit and admits after retryAfterMs', () => {
    fc.assert(
      fc.property(windowLimit, schedule(1_000, 5), (limit, arrivals) => {
        for (const o of simulate(limit, arrivals)) {
          expect(o.decision.remaining).toBeGreaterThanOrEqual(0);
          expect(o.decision.remaining).toBeLessThanOrEqual(limit.limit);
          if (!o.decision.allowed && !o.decision.exceedsLimit) {
            expect(decide(limit, o.before, o.at + o.decision.retryAfterMs, o.cost).decision.allowed).toBe(true);
          }
        }
      }),
    );
  });
});

describe.each([
  ['token bucket', tokenLimit],
  ['leaky bucket', leakyLimit],
  ['sliding window', windowLimit],
] as const)('%s: rejected requests cost nothing', (_name, limits) => {
  it('denials write nothing, and removing them from the schedule changes no other decision', () => {
    fc.assert(
      fc.property(limits as fc.Arbitrary<Limit>, schedule(300, 6), (limit, arrivals) => {
        const full = simulate(limit, arrivals);
        for (const o of full) if (!o.decision.allowed) expect(o.after).toBe(o.before);
        // Replay with the denied arrivals removed (their gaps folded into the next arrival).
        const kept: Arrival[] = [];
        let carry = 0;
        full.forEach((o, i) => {
          carry += arrivals[i]!.gapMs;
          if (o.decision.allowed) {
            kept.push({ gapMs: carry, cost: o.cost });
            carry = 0;
          }
        });
        const replay = simulate(limit, kept);
        expect(replay.every((o) => o.decision.allowed)).toBe(true);
        expect(replay.map((o) => o.after)).toEqual(full.filter((o) => o.decision.allowed).map((o) => o.after));
      }),
    );
  });
});

describe('leaky bucket spacing', () => {
  it('with a capacity of one unit, unit admissions are at least 1 / drain apart', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.1, max: 100, noNaN: true }), schedule(300, 1), (rate, arrivals) => {
        const admitted = simulate(leakyBucket(1, rate), arrivals).filter((o) => o.decision.allowed);
        for (let i = 1; i < admitted.length; i++) {
          expect(admitted[i]!.at - admitted[i - 1]!.at).toBeGreaterThanOrEqual(1000 / rate - 0.01);
        }
      }),
    );
  });
});

describe('burst credit', () => {
  const creditLimit = fc
    .record({
      capacity: fc.integer({ min: 1, max: 20 }),
      rate: fc.double({ min: 0.5, max: 20, noNaN: true }),
      credit: fc.integer({ min: 1, max: 10 }),
      accrue: fc.double({ min: 0.1, max: 5, noNaN: true }),
    })
    .map(({ capacity, rate, credit, accrue }) =>
      tokenBucket(capacity, rate, { capacity: credit, accruePerSecond: accrue }),
    );

  it('accrues only while the main bucket is full, i.e. while usage stays below the sustained rate', () => {
    fc.assert(
      fc.property(creditLimit, schedule(2_000, 5), (limit, arrivals) => {
        const outcomes = simulate(limit, arrivals);
        let fullMs = 0;
        let spent = 0;
        let previous = outcomes[0]!.at;
        for (const o of outcomes) {
          // Time the main bucket spent full (tat <= t) since the previous arrival.
          const tat = tatMs(o.before, limit) ?? -Infinity;
          fullMs += Math.max(0, o.at - Math.max(tat, previous));
          previous = o.at;
          const earned = creditAt(o.before, o.at, limit) + spent;
          expect(earned).toBeLessThanOrEqual((fullMs * limit.burstCredit!.accruePerSecond) / 1000 + 1e-6);
          // Stored credit is in thousandths of a unit.
          if (
            o.decision.allowed &&
            o.before?.credit !== undefined &&
            o.after?.credit !== undefined &&
            o.after.credit < o.before.credit
          )
            spent += (o.before.credit - o.after.credit) / 1000;
        }
      }),
    );
  });

  it('is spent only once the main bucket cannot cover the cost, and never beyond its cap', () => {
    fc.assert(
      fc.property(creditLimit, schedule(2_000, 5), (limit, arrivals) => {
        for (const o of simulate(limit, arrivals)) {
          const usedCredit = (o.after?.credit ?? 0) < (o.before?.credit ?? 0) && o.after?.tat === o.before?.tat;
          if (usedCredit)
            expect(decide({ ...limit, burstCredit: undefined } as Limit, o.before, o.at, o.cost).decision.allowed).toBe(
              false,
            );
          expect(creditAt(o.after, o.at, limit)).toBeLessThanOrEqual(limit.burstCredit!.capacity);
        }
      }),
    );
  });

  it('never grows at a sustained rate: a client spending exactly the refill rate earns no credit', () => {
    const limit = tokenBucket(10, 10, { capacity: 5, accruePerSecond: 1 });
    const arrivals = Array.from({ length: 600 }, () => ({ gapMs: 100, cost: 1 }));
    const outcomes = simulate(limit, arrivals);
    expect(outcomes.every((o) => o.decision.allowed)).toBe(true);
    expect(creditAt(outcomes.at(-1)!.after, outcomes.at(-1)!.at, limit)).toBe(0);
  });
});

describe('clock skew: containers whose clocks are off by up to clockSkewMs never over-admit in true time', () => {
  const skewMs = 300;
  const skewed = (maxGapMs: number) =>
    fc.array(
      fc.record({
        gapMs: fc.integer({ min: 0, max: maxGapMs }),
        cost: fc.integer({ min: 1, max: 4 }),
        clockErrorMs: fc.integer({ min: -skewMs, max: skewMs }),
      }),
      { minLength: 1, maxLength: 120 },
    );

  it.each([
    ['token bucket', tokenLimit],
    ['leaky bucket', leakyLimit],
  ] as const)('%s', (_name, limits) => {
    fc.assert(
      fc.property(limits, skewed(300), (limit, arrivals) => {
        for (const span of admittedSpans(simulate(limit, arrivals, skewMs))) {
          expect(span.cost).toBeLessThanOrEqual(limit.capacity + (rateOf(limit) * span.spanMs) / 1000 + 1e-6);
        }
      }),
    );
  });

  it('sliding window', () => {
    const windows = fc
      .record({
        limit: fc.integer({ min: 1, max: 30 }),
        subWindows: fc.integer({ min: 1, max: 10 }),
        slotMs: fc.integer({ min: 4 * skewMs, max: 4_000 }),
      })
      .map(({ limit, subWindows, slotMs }) => slidingWindow(limit, slotMs * subWindows, subWindows));
    fc.assert(
      fc.property(windows, skewed(1_500), (limit, arrivals) => {
        for (const span of admittedSpans(simulate(limit, arrivals, skewMs))) {
          if (span.spanMs < limit.windowMs) expect(span.cost).toBeLessThanOrEqual(limit.limit);
        }
      }),
    );
  });
});

// DynamoDB keeps a number exactly, JavaScript as the nearest double: only whole numbers below 2^53
// are the same in both, so a compare-and-set on a value read back can match (lambda/engine/gcra.ts).
describe('numbers written to the store', () => {
  const awkwardRate = fc.oneof(
    fc.double({ min: 1e-4, max: 1e7, noNaN: true }),
    fc.constantFrom(1e6 / 86_400, 1 / 3, 0.7, 86.39999999999999, 1e7),
  );
  const anyGcra = fc
    .record({
      capacity: fc.integer({ min: 1, max: 1_000_000 }),
      rate: awkwardRate,
      leaky: fc.boolean(),
      credit: fc.option(fc.integer({ min: 1, max: 100 })),
    })
    // Buckets that take decades to fill are refused (their own test below).
    .filter(({ capacity, rate }) => capacity * ticksPerUnit(rate) <= MAX_CAPACITY_TICKS)
    .map(({ capacity, rate, leaky, credit }) =>
      leaky
        ? leakyBucket(capacity, rate)
        : tokenBucket(capacity, rate, credit ? { capacity: credit, accruePerSecond: rate / 10 } : undefined),
    );
  const whole = (state: object | undefined) => {
    for (const [field, value] of Object.entries(state ?? {})) {
      if (typeof value === 'string') continue; // a write's branch name
      for (const n of ([] as number[]).concat(value as number | number[])) {
        expect(Number.isSafeInteger(n), `${field} = ${n}`).toBe(true);
      }
    }
  };

  it('are whole and safe for any rate, through admissions, debits and refunds', () => {
    fc.assert(
      fc.property(
        anyGcra,
        schedule(5_000, 50),
        fc.array(fc.integer({ min: -500, max: 500 }), { maxLength: 20 }),
        (limit, arrivals, deltas) => {
          const outcomes = simulate(limit, arrivals, 0, Date.UTC(2049, 0, 1));
          let state = outcomes.at(-1)?.after;
          let at = outcomes.at(-1)!.at;
          for (const o of outcomes) whole(o.after);
          for (const delta of deltas) {
            at += 7;
            const { write, next } = adjust(limit, state, at, delta, at);
            whole(next);
            if (write) whole(write);
            state = next;
          }
        },
      ),
    );
  });

  it('refuses a rate too fast, or a bucket too slow to fill, to keep in whole numbers', () => {
    expect(() => tokenBucket(10, 2e7)).toThrow(/refillPerSecond must be at most 10000000 per second, got 20000000/);
    expect(() => leakyBucket(1e9, 0.001)).toThrow(/leakyBucket\(1000000000, 0.001\) takes 31710 years to fill/);
  });
});

describe('durations', () => {
  it('reads one amount or several, summed, and refuses anything else', () => {
    expect(durationMs('10 s')).toBe(10_000);
    expect(durationMs('2h30m')).toBe(9_000_000);
    expect(durationMs('1d 12h')).toBe(129_600_000);
    expect(durationMs('90s')).toBe(90_000);
    expect(durationMs('250ms')).toBe(250);
    for (const bad of ['', '2x', 'h', '2h30', '30m later'])
      expect(() => durationMs(bad)).toThrow(
        /is not understood: use a number of ms or e.g. '10 s', '1 m', '2h30m', '1 d'/,
      );
  });
});

describe('at production scale (log-scale limits, costs and gaps: per-day quotas, 1e6-unit buckets, idle days)', () => {
  /** The over-admission bound in units, with the double arithmetic's own rounding as the only slack. */
  const bound = (limit: Limit, spanMs: number) => {
    const exact = (limit as { capacity: number }).capacity + (rateOf(limit) * spanMs) / 1000;
    return exact * (1 + 1e-12) + 1e-6;
  };

  it.each([
    ['token bucket', productionTokenBucket],
    ['leaky bucket', productionLeakyBucket],
  ] as const)('%s: never admits more than capacity + rate x elapsed', (_name, limits) => {
    fc.assert(
      fc.property(productionCase(limits), ({ limit, arrivals }) => {
        for (const span of admittedSpans(simulate(limit, arrivals)))
          expect(span.cost).toBeLessThanOrEqual(bound(limit, span.spanMs));
      }),
    );
  });

  it('sliding window: never admits more than the limit in any window of its length', () => {
    fc.assert(
      fc.property(productionCase(productionWindow), ({ limit, arrivals }) => {
        if (limit.shape !== 'sliding_window') throw new Error('a window was expected');
        for (const span of admittedSpans(simulate(limit, arrivals)))
          if (span.spanMs < limit.windowMs) expect(span.cost).toBeLessThanOrEqual(limit.limit);
      }),
    );
  });

  it.each([
    ['token bucket', productionTokenBucket],
    ['leaky bucket', productionLeakyBucket],
    ['sliding window', productionWindow],
  ] as const)('%s: a denial admits at exactly retryAfterMs and still denies 1 ms before', (_name, limits) => {
    fc.assert(
      fc.property(productionCase(limits), ({ limit, arrivals }) => {
        for (const o of simulate(limit, arrivals)) {
          expect(o.decision.remaining).toBeGreaterThanOrEqual(0);
          expect(o.decision.remaining).toBeLessThanOrEqual(o.decision.limit);
          if (o.decision.allowed || o.decision.exceedsLimit) continue;
          expect(decide(limit, o.before, o.at + o.decision.retryAfterMs, o.cost).decision.allowed).toBe(true);
          if (o.decision.retryAfterMs >= 1)
            expect(decide(limit, o.before, o.at + o.decision.retryAfterMs - 1, o.cost).decision.allowed).toBe(false);
        }
      }),
    );
  });
});
