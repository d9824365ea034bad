import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjust, type BucketState, decide } from '../../lambda/engine/bucket';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { testStore, uniqueKey } from '../support/dynamo';
import { periodMs, productionLimit, productionSchedule } from './generators';

/**
 * Differential test: the DynamoDB store (its conditional expressions, arithmetic in the item, ALL_NEW
 * and ALL_OLD round trips) must decide exactly what the pure functions decide, op by op.
 */
type Op =
  | { gapMs: number; kind: 'consume'; cost: number }
  | { gapMs: number; kind: 'adjust'; delta: number; ageMs: number };

const op = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      gapMs: fc.integer({ min: 0, max: 700 }),
      kind: fc.constant('consume' as const),
      cost: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      gapMs: fc.integer({ min: 0, max: 700 }),
      kind: fc.constant('adjust' as const),
      delta: fc.integer({ min: -4, max: 4 }).filter((d) => d !== 0),
      ageMs: fc.integer({ min: 0, max: 3_000 }),
    }),
  },
);

const limits: [string, Limit][] = [
  ['token bucket', tokenBucket(6, 2)],
  ['token bucket with burst credit', tokenBucket(4, 2, { capacity: 3, accruePerSecond: 1 })],
  ['leaky bucket', leakyBucket(3, 4)],
  ['sliding window', slidingWindow(7, '2 s', 4)],
];

/** Runs `ops` through a fresh item and the pure model side by side; every decision must agree. */
async function agree(limit: Limit, ops: readonly Op[]): Promise<void> {
  let now = 1_800_000_000_000;
  const store = testStore({ clock: () => now });
  const key = uniqueKey();
  let model: BucketState | undefined;
  for (const o of ops) {
    now += o.gapMs;
    if (o.kind === 'consume') {
      const plan = decide(limit, model, now, o.cost);
      if (plan.write) model = plan.next;
      const actual = await store.consume(key, limit, o.cost);
      expect({
        allowed: actual.allowed,
        remaining: actual.remaining,
        retryAfterMs: Math.round(actual.retryAfterMs),
      }).toEqual({
        allowed: plan.decision.allowed,
        remaining: plan.decision.remaining,
        retryAfterMs: Math.round(plan.decision.retryAfterMs),
      });
    } else {
      const admittedAt = now - o.ageMs;
      const plan = adjust(limit, model, now, o.delta, admittedAt);
      if (plan.write) model = plan.next;
      await store.adjust(key, limit, o.delta, admittedAt);
    }
  }
}

describe.each(limits)('%s: store and pure model agree', (_name, limit) => {
  it('on every decision of random schedules with settlements', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), (ops: Op[]) => agree(limit, ops)),
      { numRuns: Number(process.env.FC_RUNS ?? 100) >= 1000 ? 200 : 12 },
    );
  });
});

/** Production-scale limits, each with a schedule of its own and settlements (debits, refunds) sized to it. */
const generated = productionLimit.chain((limit) =>
  productionSchedule(limit, 16).chain((arrivals) =>
    fc
      .array(
        fc.record({
          settle: fc.boolean(),
          sign: fc.constantFrom(-1, 1),
          ageShare: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        { minLength: arrivals.length, maxLength: arrivals.length },
      )
      .map((extras) => ({
        limit,
        ops: arrivals.flatMap((a, i): Op[] => {
          const e = extras[i]!;
          const consume: Op = { gapMs: a.gapMs, kind: 'consume', cost: a.cost };
          if (!e.settle) return [consume];
          const ageMs = Math.floor(e.ageShare * Math.min(periodMs(limit), 86_400_000));
          return [consume, { gapMs: 0, kind: 'adjust', delta: e.sign * a.cost, ageMs }];
        }),
      })),
  ),
);

describe('generated limits at production scale: store and pure model agree', () => {
  it('on every decision, for at least 100 limits of every shape', async () => {
    await fc.assert(
      fc.asyncProperty(generated, ({ limit, ops }) => agree(limit, ops)),
      { numRuns: Math.max(100, Number(process.env.FC_RUNS ?? 100) >= 1000 ? 300 : 100) },
    );
  });
});
