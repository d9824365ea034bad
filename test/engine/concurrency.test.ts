import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { testStore, uniqueKey } from '../support/dynamo';
import { runWorker } from '../support/workers';

const worker = fileURLToPath(new URL('../support/consume-worker.ts', import.meta.url));
const WORKERS = 4;
const PER_WORKER = 50;

/**
 * 4 processes x 50 concurrent decisions on one key, all told to fire at one moment (tsx takes a
 * second or more to start each); returns what the clients were told and when each process was busy.
 */
async function storm(key: string, limit: Limit, costs: (worker: number, i: number) => number) {
  const startAt = Date.now() + 4_000;
  const results = await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      const workerCosts = Array.from({ length: PER_WORKER }, (_, i) => costs(w, i));
      return runWorker<{ admitted: number; admittedCost: number; busyFrom: number; busyUntil: number }>(
        worker,
        key,
        JSON.stringify(limit),
        JSON.stringify(workerCosts),
        String(startAt),
      );
    }),
  );
  // The processes really raced: every one was still busy when the last one began.
  const lastStart = Math.max(...results.map((r) => r.busyFrom));
  for (const r of results) expect(r.busyUntil).toBeGreaterThanOrEqual(lastStart);
  return {
    admitted: results.reduce((a, r) => a + r.admitted, 0),
    admittedCost: results.reduce((a, r) => a + r.admittedCost, 0),
  };
}

// Refill so slow that none happens inside the test: 50 per day, or a one-day window.
const shapes: [string, (limit: number) => Limit][] = [
  ['token bucket', (n) => tokenBucket(n, n / 86_400)],
  ['leaky bucket', (n) => leakyBucket(n, n / 86_400)],
  ['sliding window', (n) => slidingWindow(n, '1 d')],
];

describe.each(shapes)('%s under 4 processes x 50 concurrent decisions, fired together', (_name, make) => {
  it('admits exactly the limit of 30 with unit costs, fewer than one process asks for', async () => {
    const key = uniqueKey();
    const { admitted } = await storm(key, make(30), () => 1);
    expect(admitted).toBe(30);
    expect((await testStore().peek(key, make(30))).remaining).toBe(0);
  });

  it('admits weighted costs up to the limit and no further, and the bucket holds exactly what was admitted', async () => {
    const key = uniqueKey();
    const limit = make(100);
    const { admittedCost } = await storm(key, limit, (w, i) => 1 + ((w * 7 + i * 3) % 4));
    // Costs are 1..4 and far more is offered than fits: what is left is less than the largest cost.
    expect(admittedCost).toBeLessThanOrEqual(100);
    expect(admittedCost).toBeGreaterThan(100 - 4);
    expect((await testStore().peek(key, limit)).remaining).toBe(100 - admittedCost);
  });
});
