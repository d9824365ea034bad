/**
 * Generated load on a shared global limit (lambda/engine/share.ts), against DynamoDB Local, on a
 * simulated clock: tenants ask at rates that may change over time, from several containers (one
 * Limiter and store each), in ticks whose requests go out at once. What each tenant was admitted,
 * per simulated second, is what the fairness tests and the bench judge.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Limiter, type TenantRecord } from '../../lambda/engine/limiter';
import type { LimiterConfig } from '../../lambda/engine/plans';
import { LimitStore } from '../../lambda/engine/store';

export interface LoadTenant {
  readonly tenant: TenantRecord;
  /** Requests a second it sends at simulated second `t` (from 0). */
  readonly demand: (t: number) => number;
}

export interface LoadResult {
  /** By tenant id: requests admitted in each simulated second. */
  readonly admitted: ReadonlyMap<string, number[]>;
  /** By tenant id, the codes of its 429s. */
  readonly codes: ReadonlyMap<string, Map<string, number>>;
  /** DynamoDB calls of every container. */
  readonly calls: number;
  /** Decisions made (requests sent). */
  readonly decisions: number;
}

/** A small seeded generator (mulberry32): the same load on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function runShareLoad(options: {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly namespace: string;
  readonly config: LimiterConfig;
  readonly route: string;
  readonly tenants: readonly LoadTenant[];
  readonly seconds: number;
  readonly containers?: number;
  readonly tickMs?: number;
  readonly seed?: number;
  /** Leases on, as the deployed functions have them. @default false */
  readonly leases?: boolean;
}): Promise<LoadResult> {
  const tickMs = options.tickMs ?? 100;
  const random = seeded(options.seed ?? 1);
  // The simulated clock starts on a whole second, far from any real item's time.
  let now = Math.ceil(Date.now() / 1000) * 1000;
  const start = now;
  const clock = () => now;
  const stores = Array.from(
    { length: options.containers ?? 4 },
    () =>
      new LimitStore({ client: options.client, tableName: options.tableName, clock, leases: options.leases ?? false }),
  );
  const limiters = stores.map(
    (store) => new Limiter({ store, config: options.config, namespace: options.namespace, random, log: () => {} }),
  );
  const seconds = options.seconds;
  const admitted = new Map(options.tenants.map((t) => [t.tenant.id, new Array<number>(seconds).fill(0)]));
  let decisions = 0;
  const codes = new Map(options.tenants.map((t) => [t.tenant.id, new Map<string, number>()]));
  const owed = new Map(options.tenants.map((t) => [t.tenant.id, random()]));
  for (let tick = 0; tick < (seconds * 1000) / tickMs; tick++) {
    now = start + tick * tickMs;
    const second = Math.floor((tick * tickMs) / 1000);
    const arrivals: LoadTenant[] = [];
    for (const t of options.tenants) {
      // Whole requests per tick, what a fraction leaves over carried to the next.
      const due = owed.get(t.tenant.id)! + (t.demand(second) * tickMs) / 1000;
      const n = Math.floor(due);
      owed.set(t.tenant.id, due - n);
      for (let i = 0; i < n; i++) arrivals.push(t);
    }
    // In a random order, each from a random container, all at once.
    for (let i = arrivals.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [arrivals[i], arrivals[j]] = [arrivals[j]!, arrivals[i]!];
    }
    await Promise.all(
      arrivals.map(async (t, i) => {
        const limiter = limiters[Math.floor(random() * limiters.length)]!;
        const id = t.tenant.id;
        decisions++;
        const verdict = await limiter.admit({ tenant: id, user: `u${i % 3}` }, t.tenant, options.route);
        if (verdict.allowed) admitted.get(id)![second]!++;
        else codes.get(id)!.set(verdict.code ?? '?', (codes.get(id)!.get(verdict.code ?? '?') ?? 0) + 1);
      }),
    );
  }
  return { admitted, codes, calls: stores.reduce((a, s) => a + s.stats.calls, 0), decisions };
}

/** The sum of a series' entries from `from` (inclusive) to `to` (exclusive). */
export const sumOf = (series: readonly number[], from = 0, to = series.length): number =>
  series.slice(from, to).reduce((a, b) => a + b, 0);

/** A tenant's admitted requests per second over simulated seconds `from` to `to` (exclusive). */
export const admittedPerSecond = (r: LoadResult, id: string, from: number, to: number): number =>
  sumOf(r.admitted.get(id)!, from, to) / (to - from);

/**
 * The most requests admitted past what a token bucket of `capacity` refilling `rate` a second
 * allows (its burst and its refill) over any run of whole simulated seconds: 0 when never exceeded.
 */
export function overAdmitted(r: LoadResult, capacity: number, rate: number): number {
  const total = [...r.admitted.values()].reduce((acc, s) => acc.map((n, i) => n + s[i]!));
  let worst = 0;
  for (let from = 0; from < total.length; from++)
    for (let to = from + 1; to <= total.length; to++)
      worst = Math.max(worst, sumOf(total, from, to) - (capacity + rate * (to - from)));
  return worst;
}
