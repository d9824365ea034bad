import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { adjust, type BucketState, decide } from '../../lambda/engine/bucket';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { testStore, uniqueKey } from '../support/dynamo';

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

describe.each(limits)('%s: store and pure model agree', (_name, limit) => {
  it('on every decision of random schedules with settlements', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), async (ops: Op[]) => {
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
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 100) >= 1000 ? 200 : 12 },
    );
  });
});
