/**
 * The limit engine on DynamoDB Local against rate-limiter-flexible's RateLimiterDynamo (fixed
 * window, read-modify-write in two calls) under the same load, in the same process.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DynamoDB, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { RateLimiterDynamo, RateLimiterRes } from 'rate-limiter-flexible';
import { ContentionError } from '../lambda/engine/errors';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../lambda/engine/limits';
import type { Decision } from '../lambda/engine/decision';
import { ensureTable, LimitStore } from '../lambda/engine/store';
import { play, targetedSchedules, worstOverrun } from '../test/support/lease-schedules';
import { load, report } from './report';
import { size } from './smoke';

const CONCURRENCY = 16;
const DECISIONS = size(3_000, 100);

/** Counts every request the client sends: the same meter for the engine and the baseline. */
export function countCalls(client: DynamoDBClient): { calls: number } {
  const counter = { calls: 0 };
  client.middlewareStack.add(
    (next) => async (args) => {
      counter.calls++;
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return counter;
}

type ShapeName = 'token_bucket' | 'leaky_bucket' | 'sliding_window';

export async function benchEngine(endpoint: string): Promise<void> {
  const client = new DynamoDB({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const counter = countCalls(client);
  const tableName = 'bench-limits';
  await ensureTable(client, tableName);
  const run = randomUUID();
  // Sixteen writers on one key can lose every one of a decision's attempts (on a busy machine
  // more often): the store then throws ContentionError and the caller admits nothing. Counted
  // as not admitted and reported, rather than ending the run.
  let gaveUp = 0;
  const allowed = async (decision: Promise<Decision>): Promise<boolean> => {
    try {
      return (await decision).allowed;
    } catch (err) {
      if (!(err instanceof ContentionError)) throw err;
      gaveUp++;
      return false;
    }
  };

  // Warm DynamoDB Local's JVM, then calibrate: what one hot key takes at this concurrency when
  // nothing is denied, so a hot limit of half that admits about half of the offered load.
  const probeStore = new LimitStore({ client, tableName });
  await load(
    size(6_000, 100),
    CONCURRENCY,
    async (i) => (await probeStore.consume(`${run}-warm-${i}`, tokenBucket(10, 1))).allowed,
  );
  const probe = await load(DECISIONS, CONCURRENCY, () =>
    allowed(probeStore.consume(`${run}-calibrate`, tokenBucket(1e9, 1))),
  );
  const halfRate = Math.max(1, Math.round(probe.perSecond / 2));
  report('engine.calibration.offered_per_s', probe.perSecond, 'decisions/s');

  const hotLimits: Record<ShapeName, Limit> = {
    token_bucket: tokenBucket(Math.max(1, Math.round(halfRate / 10)), halfRate),
    leaky_bucket: leakyBucket(Math.max(1, Math.round(halfRate / 10)), halfRate),
    sliding_window: slidingWindow(halfRate, '1 s', 10),
  };

  // Baseline: the same hot key and offered load on RateLimiterDynamo (points per 1 s fixed window).
  const baselineTable = 'bench-baseline';
  const limiter = await new Promise<RateLimiterDynamo>((resolve, reject) => {
    const l: RateLimiterDynamo = new RateLimiterDynamo(
      { storeClient: client, tableName: baselineTable, points: halfRate, duration: 1 },
      (err?: Error) => (err ? reject(err) : resolve(l)),
    );
  });
  const baselineDecide = async (key: string): Promise<boolean> => {
    try {
      await limiter.consume(key, 1);
      return true;
    } catch (err) {
      if (err instanceof RateLimiterRes) return false;
      throw err;
    }
  };
  const measure = async (decide: (i: number) => Promise<boolean>) => {
    const before = counter.calls;
    const result = await load(DECISIONS, CONCURRENCY, decide);
    return { ...result, callsPerDecision: (counter.calls - before) / DECISIONS };
  };
  await load(size(2_000, 100), CONCURRENCY, (i) => baselineDecide(`${run}-baseline-warm-${i}`));
  const baselineHot = await measure(() => baselineDecide(`${run}-baseline-hot`));
  const baselineDistinct = await measure((i) => baselineDecide(`${run}-baseline-${i}`));
  report('baseline.rate_limiter_flexible.hot.decisions_per_s', baselineHot.perSecond, 'decisions/s');
  report('baseline.rate_limiter_flexible.hot.calls_per_decision', baselineHot.callsPerDecision, 'calls');
  report('baseline.rate_limiter_flexible.hot.admitted_ratio', baselineHot.admitted / DECISIONS, 'ratio');
  report('baseline.rate_limiter_flexible.distinct.calls_per_decision', baselineDistinct.callsPerDecision, 'calls');

  for (const shape of Object.keys(hotLimits) as ShapeName[]) {
    const store = new LimitStore({ client, tableName }); // one container
    const hotKey = `${run}-${shape}-hot`;
    const hot = await measure(() => allowed(store.consume(hotKey, hotLimits[shape])));
    const roomy =
      shape === 'sliding_window'
        ? slidingWindow(1_000_000, '1 h')
        : shape === 'token_bucket'
          ? tokenBucket(1_000_000, 1)
          : leakyBucket(1_000_000, 1);
    const distinct = await measure(async (i) => (await store.consume(`${run}-${shape}-${i}`, roomy)).allowed);
    report(`engine.${shape}.hot.decisions_per_s`, hot.perSecond, 'decisions/s', baselineHot.perSecond);
    report(`engine.${shape}.hot.calls_per_decision`, hot.callsPerDecision, 'calls', baselineHot.callsPerDecision);
    report(`engine.${shape}.hot.admitted_ratio`, hot.admitted / DECISIONS, 'ratio', baselineHot.admitted / DECISIONS);
    report(`engine.${shape}.hot.p50_ms`, hot.p50Ms, 'ms', baselineHot.p50Ms);
    report(`engine.${shape}.hot.p99_ms`, hot.p99Ms, 'ms', baselineHot.p99Ms);
    report(
      `engine.${shape}.distinct.calls_per_decision`,
      distinct.callsPerDecision,
      'calls',
      baselineDistinct.callsPerDecision,
    );
    report(`engine.${shape}.distinct.decisions_per_s`, distinct.perSecond, 'decisions/s', baselineDistinct.perSecond);
  }

  // Over-admission: a no-refill limit of 500 under the same load, for every shape.
  let over = 0;
  for (const shape of Object.keys(hotLimits) as ShapeName[]) {
    const limit =
      shape === 'sliding_window'
        ? slidingWindow(500, '1 d')
        : shape === 'token_bucket'
          ? tokenBucket(500, 500 / 86_400)
          : leakyBucket(500, 500 / 86_400);
    const store = new LimitStore({ client, tableName });
    const result = await load(DECISIONS, CONCURRENCY, () => allowed(store.consume(`${run}-${shape}-cap`, limit)));
    over += Math.max(0, result.admitted - 500);
  }
  report('engine.concurrency.over_admitted', over, 'decisions');
  report('engine.concurrency.gave_up', gaveUp, 'decisions (ContentionError after maxAttempts; hot keys and limit 500)');
  client.destroy();
  await benchLeases(endpoint);
}

/**
 * Leases where their exactness matters: the targeted two-container schedules of the lease tests
 * (a lease spent at its last moment, past its end, a lifetime past its end; each container its own
 * store and lease book, one key, one injected clock) for every shape, and the units admitted past
 * the limit in the worst stretch of time, summed (target 0). Then the engine's mutation score as
 * last measured (npm run mutation writes docs/mutation-score.json).
 */
export async function benchLeases(endpoint: string): Promise<void> {
  const client = new DynamoDB({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const tableName = 'bench-limits';
  await ensureTable(client, tableName);
  const shapes: Limit[] = [tokenBucket(800, 200), leakyBucket(800, 200), slidingWindow(600, '2 s', 4)];
  let over = 0;
  for (const limit of shapes) {
    for (const [, steps] of targetedSchedules(limit)) {
      const clock = { now: 1_800_000_000_000 };
      const containers = [0, 1].map(() => new LimitStore({ client, tableName, clock: () => clock.now, leases: true }));
      const played = await play(limit, containers, `leases-${randomUUID()}`, steps, clock);
      over += Math.max(0, worstOverrun(limit, played.admitted));
    }
  }
  report('engine.leases.over_admitted', over, 'units');
  client.destroy();
  // Reported, not gated: a Stryker run takes longer than a bench, so the figure is the last one recorded.
  const mutation = JSON.parse(readFileSync(new URL('../docs/mutation-score.json', import.meta.url), 'utf8')) as {
    score: number;
    mutate: string[];
    commit: string;
  };
  report(
    'test.mutation_score.engine',
    mutation.score,
    `percent (Stryker, ${mutation.mutate.join(', ')}, at ${mutation.commit.slice(0, 7)}: docs/testing.md)`,
  );
}
