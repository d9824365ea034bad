/**
 * Weighted fair shares of an oversold global limit (config.global.fairShare, lambda/engine/share.ts):
 * generated loads against DynamoDB Local on a simulated clock, several tenants with weights, one
 * sending 10x its share, the others at, below and above theirs, with demand that changes.
 */
import { describe, expect, it } from 'vitest';
import { slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { GLOBAL_SHARE_CODE, Limiter, type TenantRecord, type Verdict } from '../../lambda/engine/limiter';
import {
  applyOverrides,
  type LimiterConfig,
  parseConfig,
  requests,
  requestsPerMinute,
  tokens,
  tokensPerMinute,
} from '../../lambda/engine/plans';
import { App, Stack } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { validateProps } from '../../lib/props';
import { lineOf, SHARE, ShareMeter } from '../../lambda/engine/share';
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import {
  admittedPerSecond,
  type LoadResult,
  type LoadTenant,
  overAdmitted,
  runShareLoad,
  sumOf,
} from '../support/share-load';

const CHAT = '/v1/chat/completions';
/** The global: 20 requests a second, 100 of burst, over 2 shards. */
const RATE = 20;
const CAPACITY = 100;

/**
 * A configuration of these plans and global limits, through JSON as the functions read it. The
 * penalty box is off: hammering clients stay in the load (the box would take them out of it).
 */
function configWith(plans: Record<string, unknown>, global: Record<string, unknown> | undefined) {
  const endpoints = { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } };
  const penalty = { threshold: 1e9 };
  return parseConfig(JSON.parse(JSON.stringify({ plans, endpoints, penalty, ...(global ? { global } : {}) })));
}

/** The global of most loads: 20 requests a second, 100 of burst, over 2 shards. */
const pool = (fairShare: boolean) => ({
  limits: [requests(tokenBucket(CAPACITY, RATE), { name: 'pool' })],
  shards: 2,
  fairShare,
});

/** A generated load (share-load.ts) on four containers against DynamoDB Local. */
const loadOn = (config: LimiterConfig, tenants: LoadTenant[], seconds: number) =>
  runShareLoad({
    client: localClient(dynamoEndpoint()),
    tableName: tableName(),
    namespace: uniqueKey('ns'),
    config,
    route: CHAT,
    tenants,
    seconds,
  });

const load = (fairShare: boolean, weights: Record<string, number>, tenants: LoadTenant[], seconds: number) =>
  loadOn(
    configWith(
      Object.fromEntries(
        Object.entries(weights).map(([plan, w]) => [plan, fairShare && w !== 1 ? { globalWeight: w } : {}]),
      ),
      pool(fairShare),
    ),
    tenants,
    seconds,
  );

/** Over every run of whole seconds, the admitted never pass what the bucket allows: its burst and its refill. */
const expectGlobalNeverExceeded = (r: LoadResult) => expect(overAdmitted(r, CAPACITY, RATE)).toBe(0);
const perSecond = admittedPerSecond;

describe('a shared global limit under generated load', () => {
  // Weights 1, 1, 2, 1: weighted shares of 20/s are 4, 4, 8 and 4.
  const weights = { one: 1, two: 2 };
  const tenants: LoadTenant[] = [
    { tenant: { id: 'heavy', plan: 'one' }, demand: () => 40 },
    { tenant: { id: 'below', plan: 'one' }, demand: () => 2 },
    { tenant: { id: 'at', plan: 'two' }, demand: () => 8 },
    { tenant: { id: 'above', plan: 'one' }, demand: () => 6 },
  ];
  const share = { heavy: 4, below: 4, at: 8, above: 4 };

  it('gives each tenant at least min(its demand, its weighted share) while one sends 10x its share; none of the global idles', async () => {
    const r = await load(true, weights, tenants, 40);
    expectGlobalNeverExceeded(r);
    // After the meters have filled (10 s), over the 30 s that follow.
    for (const t of tenants) {
      const id = t.tenant.id as keyof typeof share;
      expect(perSecond(r, id, 10, 40), id).toBeGreaterThanOrEqual(0.95 * Math.min(t.demand(0), share[id]));
    }
    // Work-conserving: what 'below' leaves goes to the others; the global is used in full.
    expect(
      perSecond(r, 'heavy', 10, 40) +
        perSecond(r, 'below', 10, 40) +
        perSecond(r, 'at', 10, 40) +
        perSecond(r, 'above', 10, 40),
    ).toBeGreaterThanOrEqual(0.95 * RATE);
    // The two tenants over their share (weight 1 each) split what is left near evenly (max-min: 5 each).
    expect(perSecond(r, 'above', 10, 40) / perSecond(r, 'heavy', 10, 40)).toBeGreaterThanOrEqual(0.8);
    // Every 429 the heavy tenant met says it is past its share.
    expect([...r.codes.get('heavy')!.keys()]).toEqual([GLOBAL_SHARE_CODE]);
    expect(r.codes.get('below')!.size).toBe(0);
  }, 120_000);

  it('first come, first served without fairShare: the same load starves the light tenants (what the shares fix)', async () => {
    const r = await load(false, weights, tenants, 20);
    expectGlobalNeverExceeded(r);
    expect(perSecond(r, 'at', 5, 20)).toBeLessThan(0.6 * share.at);
    expect(perSecond(r, 'below', 5, 20)).toBeLessThan(0.6 * 2);
  }, 120_000);

  it('lends a share while its tenant is idle and gives it back within seconds when it returns', async () => {
    // heavy: 10x its share for 20 s, silent for 20 s, back at 10x for 20 s; light: at its share, then 3x it from 20 s on.
    const phased: LoadTenant[] = [
      { tenant: { id: 'heavy', plan: 'one' }, demand: (t) => (t >= 20 && t < 40 ? 0 : 100) },
      { tenant: { id: 'light', plan: 'one' }, demand: (t) => (t < 20 ? 10 : 30) },
    ];
    const r = await load(true, { one: 1 }, phased, 60);
    expectGlobalNeverExceeded(r);
    expect(perSecond(r, 'light', 8, 20)).toBeGreaterThanOrEqual(0.95 * 10);
    // Alone, light is lent the whole global (idle share used), within 5 s of heavy stopping.
    expect(perSecond(r, 'light', 25, 40)).toBeGreaterThanOrEqual(0.95 * RATE);
    // heavy back: within 5 s light is held to its share (10 of 20), and keeps it; heavy gets the rest.
    expect(perSecond(r, 'light', 45, 60)).toBeGreaterThanOrEqual(0.95 * 10);
    expect(perSecond(r, 'heavy', 45, 60)).toBeGreaterThanOrEqual(0.95 * 10);
  }, 120_000);
});

/** One shard of 600,000 tokens refilling 10,000 a second, shared. */
const tokenShare = configWith(
  { one: {} },
  { limits: [tokens(tokenBucket(600_000, 10_000), { name: 'pool' })], shards: 1, fairShare: true },
);

/** A limiter (one container) on a simulated clock that starts on a whole second, and the clock. */
function clocked(config: LimiterConfig) {
  const clock = { now: Math.ceil(Date.now() / 1000) * 1000 };
  const limiter = new Limiter({
    store: testStore({ clock: () => clock.now }),
    config,
    namespace: uniqueKey('ns'),
    log: () => {},
  });
  return { limiter, clock };
}

/** Tenant a uses 10,000 tokens a second for 10 s (its line near the top); its last admission. */
async function heavyOnTokens(limiter: Limiter, tick: () => void): Promise<Verdict> {
  let last: Verdict | undefined;
  for (let i = 0; i < 100; i++) {
    const v = await limiter.reserve(
      { tenant: 'a', user: 'u' },
      { id: 'a', plan: 'one' },
      CHAT,
      { tokens: 1_000, microUsd: 0 },
      0,
    );
    if (v.allowed) last = v;
    tick();
  }
  return last!;
}

describe('a tenant past its share', () => {
  const config = configWith({ one: {} }, pool(true));
  const a: TenantRecord = { id: 'a', plan: 'one' };
  const b: TenantRecord = { id: 'b', plan: 'one' };

  it('gets 429 global_share with a Retry-After until its line has refilled, while a light tenant still gets through', async () => {
    let now = Math.ceil(Date.now() / 1000) * 1000;
    const store = testStore({ clock: () => now });
    const ns = uniqueKey('ns');
    const limiter = new Limiter({ store, config, namespace: ns, log: () => {}, random: () => 0 });
    // a uses 15 a second for 5 s (on shard 0, which holds half: 50 of burst, 10 a second).
    for (let s = 0; s < 5; s++) {
      for (let i = 0; i < 15; i++) {
        now += 1000 / 15;
        await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT);
      }
    }
    let denied: Verdict | undefined;
    for (let i = 0; i < 60 && !denied; i++) {
      const v = await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT);
      if (!v.allowed) denied = v;
    }
    expect(denied).toMatchObject({ allowed: false, code: GLOBAL_SHARE_CODE });
    // Its line (a share of the bucket, not all of it) is what it waits for: well under the 5 s the whole bucket takes.
    expect(denied!.retryAfterMs).toBeGreaterThan(0);
    expect(denied!.retryAfterMs!).toBeLessThan(1_000);
    now += denied!.retryAfterMs!;
    expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).allowed).toBe(true);
    expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).code).toBe(GLOBAL_SHARE_CODE);
    // b, which used nothing, finds the part of the bucket under a's line.
    for (let i = 0; i < 3; i++) expect((await limiter.admit({ tenant: 'b', user: 'u' }, b, CHAT)).allowed).toBe(true);
  });

  it('is answered although its meter write never is (a hung DynamoDB call holds no request)', async () => {
    const store = testStore();
    store.addToMeter = () => new Promise(() => {});
    const limiter = new Limiter({ store, config, namespace: uniqueKey('ns'), log: () => {} });
    for (let i = 0; i < 3; i++) expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).allowed).toBe(true);
  });

  it('is still decided when its meter cannot be written (DynamoDB refuses it): the counts go with the next write that lands', async () => {
    const ns = uniqueKey('ns');
    const logs: Record<string, unknown>[] = [];
    let now = Math.ceil(Date.now() / 1000) * 1000;
    const store = new LimitStore({ client: localClient(dynamoEndpoint()), tableName: tableName(), clock: () => now });
    const write = store.addToMeter.bind(store);
    let refuse = true;
    store.addToMeter = (...args) =>
      refuse ? Promise.reject(Object.assign(new Error('refused'), { name: 'StoreUnavailableError' })) : write(...args);
    const limiter = new Limiter({ store, config, namespace: ns, log: (e) => logs.push(e) });
    // 12 requests over 1.2 s: the meter is due every 500 ms, and refused each time.
    for (let i = 0; i < 12; i++) {
      expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).allowed).toBe(true);
      now += 100;
    }
    expect(logs.filter((e) => e.message === 'fair-share meter not written: kept for the next').length).toBe(3);
    refuse = false;
    now += 500;
    expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).allowed).toBe(true);
    // The write that lands holds the 12 before it (the 13th's own count goes with the next).
    const meter = await store.addToMeter(`${ns}a`, {}, [], now);
    const counted = Object.entries(meter)
      .filter(([k]) => /^r_pool@\d+$/.test(k))
      .reduce((sum, [, n]) => sum + (n as number), 0);
    expect(counted).toBe(12);
  });

  it("is refused with the whole limit's code when the whole bucket is empty (no share would let it through)", async () => {
    const { limiter, clock } = clocked(tokenShare);
    const v = await heavyOnTokens(limiter, () => (clock.now += 100));
    // A settlement of far more than was reserved leaves the bucket in debt.
    await limiter.settle(
      uniqueKey('req'),
      {
        identity: { tenant: 'a', user: 'u' },
        tenant: a,
        route: CHAT,
        shard: 0,
        reserved: { tokens: 1_000, microUsd: 0 },
        failedOpen: [],
        admittedAt: v.admittedAt!,
        ...(v.spending ? { spending: v.spending } : {}),
      },
      { tokens: 2_000_000, microUsd: 0 },
    );
    const refused = await limiter.reserve({ tenant: 'a', user: 'u' }, a, CHAT, { tokens: 1_000, microUsd: 0 }, 0);
    expect(refused.code).toBe('global_tokens_pool');
    // The whole bucket's wait (over a million tokens of debt at 10,000 a second), not that plus the
    // refill to a's line (48 s more): the wait b, with no line, is told.
    const whole = await limiter.reserve({ tenant: 'b', user: 'u' }, b, CHAT, { tokens: 1_000, microUsd: 0 }, 0);
    expect(whole.code).toBe('global_tokens_pool');
    expect(refused.retryAfterMs!).toBeGreaterThan(100_000);
    expect(Math.abs(refused.retryAfterMs! - whole.retryAfterMs!)).toBeLessThan(1_000);
  });

  it('waits seconds, not what the bucket takes to refill, on a long bucket: its line falls while it is refused', async () => {
    // 10M tokens a day (116 a second), one shard: a asks 100,000 tokens every 100 ms, far past the whole limit.
    const daily = configWith(
      { one: {} },
      { limits: [tokens(tokenBucket(10_000_000, 10_000_000 / 86_400), { name: 'day' })], shards: 1, fairShare: true },
    );
    const { limiter, clock } = clocked(daily);
    const ask = () => limiter.reserve({ tenant: 'a', user: 'u' }, a, CHAT, { tokens: 100_000, microUsd: 0 }, 0);
    let refused: Verdict | undefined;
    for (let i = 0; i < 200 && !refused; i++) {
      const v = await ask();
      if (!v.allowed) refused = v;
      clock.now += 100;
    }
    expect(refused?.code).toBe(GLOBAL_SHARE_CODE);
    // Refilling past its line would take 100,000 / 116 = 864 s at worst; its use, far past the
    // whole limit, decays under it in about 25 s, and its line then comes down to the bucket.
    expect(refused!.retryAfterMs!).toBeLessThan(40_000);
    clock.now += refused!.retryAfterMs! + 50;
    expect((await ask()).allowed).toBe(true);
  });

  it('is never told a request is too large for a limit when only its share stops it (a 400 is for the whole limit)', async () => {
    const { limiter, clock } = clocked(tokenShare);
    await heavyOnTokens(limiter, () => (clock.now += 100));
    // 150,000 tokens: more than the 20% over the top line, less than the bucket.
    const big = await limiter.reserve({ tenant: 'a', user: 'u' }, a, CHAT, { tokens: 150_000, microUsd: 0 }, 0);
    expect(big.denied?.decision.exceedsLimit ?? false).toBe(false);
    // A third of the bucket: 1 - 1/3 is not exact in binary, and the line must still leave it room.
    const third = await limiter.reserve({ tenant: 'a', user: 'u' }, a, CHAT, { tokens: 200_000, microUsd: 0 }, 0);
    expect(third.denied?.decision.exceedsLimit ?? false).toBe(false);
    // More than the whole bucket is the limit's to refuse as too large.
    const huge = await limiter.reserve({ tenant: 'a', user: 'u' }, a, CHAT, { tokens: 700_000, microUsd: 0 }, 0);
    expect(huge).toMatchObject({ allowed: false, code: 'global_tokens_pool' });
    expect(huge.denied?.decision.exceedsLimit).toBe(true);
  });
});

describe('sliding windows, and priority tiers on top of shares', () => {
  it('leaves a window in a shared global whole (first come: a line on a window would cap its rate): a tenant alone gets all of it', async () => {
    // 20 a second over any 10 s, on 2 shards, beside a shared bucket with room to spare.
    const window = requests(slidingWindow(200, '10 s'), { name: 'window' });
    const mixed = configWith(
      { one: {} },
      { limits: [window, requests(tokenBucket(1_000, 100), { name: 'pool' })], shards: 2, fairShare: true },
    );
    const r = await loadOn(mixed, [{ tenant: { id: 'alone', plan: 'one' }, demand: () => 30 }], 30);
    for (let from = 0; from + 10 <= 30; from++)
      expect(sumOf(r.admitted.get('alone')!, from, from + 10)).toBeLessThanOrEqual(200);
    expect(perSecond(r, 'alone', 10, 30)).toBeGreaterThanOrEqual(0.95 * RATE);
    expect([...r.codes.get('alone')!.keys()]).toEqual(['global_requests_window']);
  }, 120_000);

  it('is refused at synth where no global limit is a bucket (nothing it could share)', () => {
    expect(() => configWith({ one: {} }, { limits: [requestsPerMinute(600)], fairShare: true })).toThrow(
      'config.global.fairShare: shares apply to token and leaky buckets, and no global limit is one',
    );
  });

  it("keeps a tier's priority: a batch plan gets only what the interactive plan leaves, and that in full", async () => {
    const tiers = configWith({ batch: { globalReserve: 30 }, interactive: {} }, pool(true));
    // Both hammer for 20 s; then interactive asks 5 a second.
    const tenants: LoadTenant[] = [
      { tenant: { id: 'batch', plan: 'batch' }, demand: () => 40 },
      { tenant: { id: 'interactive', plan: 'interactive' }, demand: (t) => (t < 20 ? 40 : 5) },
    ];
    const r = await loadOn(tiers, tenants, 40);
    expect(perSecond(r, 'interactive', 8, 20)).toBeGreaterThanOrEqual(0.95 * RATE);
    expect(perSecond(r, 'interactive', 25, 40)).toBeGreaterThanOrEqual(0.95 * 5);
    // Once the bucket has refilled to batch's new line (at most the top line's part of its burst: 4 s here).
    expect(perSecond(r, 'batch', 30, 40)).toBeGreaterThanOrEqual(0.95 * (RATE - 5));
    expect(perSecond(r, 'batch', 8, 20)).toBeLessThanOrEqual(0.05 * RATE);
  }, 120_000);
});

describe('ShareMeter', () => {
  it("keeps no more than its window of a light tenant's slots (one that is never written)", () => {
    const spec = requests(tokenBucket(1_000_000, 100_000), { name: 'pool' });
    const meter = new ShareMeter(testStore(), [spec], 1);
    const start = 1_800_000_000_000;
    for (let s = 0; s < 1_000; s++) {
      meter.record('light', 'r_pool', 1, start + s * 1000);
      // 1 a second of 100,000: far under `least`, so nothing is due.
      expect(meter.flush('light', 1, start + s * 1000)).toBeUndefined();
    }
    const pending = (meter as unknown as { pending: Map<string, Map<string, number>> }).pending;
    expect(pending.get('light')!.size).toBeLessThanOrEqual(4 * (SHARE.windowMs / 1000) + 1);
    expect(meter.usePerSecond('light', 'r_pool', start + 999_500)).toBeGreaterThan(0.5);
  });
});

describe('a meter item in DynamoDB', () => {
  it('starts each new slot at 0 (ADD), and loses the slots that left its window (REMOVE) with a later write', async () => {
    const store = testStore();
    const spec = requests(tokenBucket(100, 10), { name: 'pool' });
    const meter = new ShareMeter(store, [spec], 1, uniqueKey('ns'));
    const start = Math.ceil(Date.now() / 1000) * 1000;
    meter.record('t', 'r_pool', 5, start);
    await meter.flush('t', 1, start);
    // 15 s later: the first slot is past the 10 s window.
    meter.record('t', 'r_pool', 3, start + 15_000);
    await meter.flush('t', 1, start + 15_000);
    meter.record('t', 'r_pool', 1, start + 16_000);
    await meter.flush('t', 1, start + 16_000);
    const second = (ms: number) => `r_pool@${Math.floor(ms / 1000)}`;
    const item = await store.addToMeter(`${(meter as unknown as { namespace: string }).namespace}t`, {}, [], start);
    expect(item[second(start)]).toBeUndefined();
    expect(item[second(start + 15_000)]).toBe(3);
    expect(item[second(start + 16_000)]).toBe(1);
  });
});

describe('lineOf', () => {
  /** The line of a tenant using `perSecond` of a limit of `rate`, at `weight` of the top weight `top`. */
  const shareLine = (perSecond: number, rate: number, weight: number, top: number) =>
    lineOf((perSecond / rate) * (top / weight));

  it('is 0 below the least metered use and rises with its logarithm to the top line', () => {
    expect(shareLine(0.01, 100, 1, 1)).toBe(0);
    expect(shareLine(SHARE.least * 100, 100, 1, 1)).toBe(0);
    expect(shareLine(100, 100, 1, 1)).toBeCloseTo(SHARE.topLine);
    expect(shareLine(1_000, 100, 1, 1)).toBeCloseTo(SHARE.topLine);
    // Per unit of weight: twice the weight, the line of half the use.
    expect(shareLine(20, 100, 2, 2)).toBeCloseTo(shareLine(10, 100, 1, 2));
    expect(shareLine(20, 100, 1, 1)).toBeGreaterThan(shareLine(10, 100, 1, 1));
  });
});

describe('weights and shared globals in the configuration', () => {
  const config = (plan: Record<string, unknown>, global: Record<string, unknown> | undefined) => () =>
    configWith({ team: plan }, global);
  const shared = { limits: [tokensPerMinute(60_000)], fairShare: true };

  it('takes a weight from 0.01 to 10,000, and refuses others naming the plan', () => {
    for (const w of [0.01, 1, 2.5, 10_000])
      expect(config({ globalWeight: w }, shared)().plans.team!.globalWeight).toBe(w);
    for (const bad of [0, -1, 0.001, 10_001, '2', null, Number.NaN])
      expect(config({ globalWeight: bad }, shared)).toThrow(
        /config\.plans\.team\.globalWeight: expected a weight from 0\.01 to 10000/,
      );
  });

  it('refuses a weight where no global is shared (it would do nothing), and a fairShare that is not a boolean', () => {
    expect(config({ globalWeight: 2 }, { limits: [tokensPerMinute(60_000)] })).toThrow(
      'config.plans.team.globalWeight: a weight counts only in a shared global limit: set globalFairShare: true (with globalLimits), or remove it',
    );
    expect(config({ globalWeight: 2 }, undefined)).toThrow(/a weight counts only in a shared global limit/);
    expect(config({}, { ...shared, fairShare: 'yes' })).toThrow(
      'config.global.fairShare: expected true or false, got "yes"',
    );
  });

  it("lets a tenant's overrides change its weight", () => {
    expect(applyOverrides({ globalWeight: 2 }, { globalWeight: 5 }).globalWeight).toBe(5);
    expect(applyOverrides({ globalWeight: 2 }, {}).globalWeight).toBe(2);
  });

  it("reaches the functions from the props: globalFairShare and each plan's globalWeight", () => {
    const stack = new Stack(new App(), 'Shares');
    const validated = validateProps({
      upstreamBaseUrl: 'https://api.openai.com/v1',
      upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'openai-key'),
      endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      plans: { free: {}, enterprise: { globalWeight: 4 } },
      globalLimits: [tokensPerMinute(2_000_000), requestsPerMinute(600)],
      globalFairShare: true,
    });
    expect(validated.global).toMatchObject({ fairShare: true, shards: 8 });
    expect(validated.plans.enterprise!.globalWeight).toBe(4);
  });
});
