/**
 * Weighted fair shares of an oversold global limit (config.global.fairShare, lambda/engine/share.ts):
 * generated loads against DynamoDB Local on a simulated clock, several tenants with weights, one
 * sending 10x its share, the others at, below and above theirs, with demand that changes.
 */
import { describe, expect, it } from 'vitest';
import { tokenBucket } from '../../lambda/engine/limits';
import { GLOBAL_SHARE_CODE, Limiter, type TenantRecord, type Verdict } from '../../lambda/engine/limiter';
import { applyOverrides, parseConfig, requests, requestsPerMinute } from '../../lambda/engine/plans';
import { App, Stack } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { validateProps } from '../../lib/props';
import { SHARE, shareLine } from '../../lambda/engine/share';
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { admittedPerSecond, type LoadResult, type LoadTenant, overAdmitted, runShareLoad } from '../support/share-load';

const CHAT = '/v1/chat/completions';
/** The global: 20 requests a second, 100 of burst, over 2 shards. */
const RATE = 20;
const CAPACITY = 100;

function configOf(fairShare: boolean, weights: Record<string, number>) {
  return parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: Object.fromEntries(
          Object.entries(weights).map(([plan, w]) => [plan, fairShare && w !== 1 ? { globalWeight: w } : {}]),
        ),
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
        global: { limits: [requests(tokenBucket(CAPACITY, RATE), { name: 'pool' })], shards: 2, fairShare },
        // Hammering clients stay in the load (the penalty box would take them out of it).
        penalty: { threshold: 1e9 },
      }),
    ),
  );
}

const load = (fairShare: boolean, weights: Record<string, number>, tenants: LoadTenant[], seconds: number) =>
  runShareLoad({
    client: localClient(dynamoEndpoint()),
    tableName: tableName(),
    namespace: uniqueKey('ns'),
    config: configOf(fairShare, weights),
    route: CHAT,
    tenants,
    seconds,
  });

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

  it('gives each tenant at least min(its demand, its weighted share) while one sends 10x its share; none of the global idles or is exceeded', async () => {
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

describe('a tenant past its share', () => {
  const config = configOf(true, { one: 1 });
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

  it('is still decided when its meter cannot be written (DynamoDB refuses it): the counts wait for the next write', async () => {
    const ns = uniqueKey('ns');
    const logs: Record<string, unknown>[] = [];
    const failing = new LimitStore({ client: localClient(dynamoEndpoint()), tableName: tableName() });
    failing.addToMeter = () => Promise.reject(Object.assign(new Error('refused'), { name: 'StoreUnavailableError' }));
    const limiter = new Limiter({ store: failing, config, namespace: ns, log: (e) => logs.push(e) });
    for (let i = 0; i < 5; i++) expect((await limiter.admit({ tenant: 'a', user: 'u' }, a, CHAT)).allowed).toBe(true);
    expect(logs.some((e) => e.message === 'fair-share meter not written: kept for the next')).toBe(true);
  });
});

describe('shareLine', () => {
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
    parseConfig(
      JSON.parse(
        JSON.stringify({
          plans: { team: plan },
          endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
          ...(global ? { global } : {}),
        }),
      ),
    );
  const shared = { limits: [requestsPerMinute(600)], fairShare: true };

  it('takes a weight from 0.01 to 10,000, and refuses others naming the plan', () => {
    for (const w of [0.01, 1, 2.5, 10_000])
      expect(config({ globalWeight: w }, shared)().plans.team!.globalWeight).toBe(w);
    for (const bad of [0, -1, 0.001, 10_001, '2', null, Number.NaN])
      expect(config({ globalWeight: bad }, shared)).toThrow(
        /config\.plans\.team\.globalWeight: expected a weight from 0\.01 to 10000/,
      );
  });

  it('refuses a weight where no global is shared (it would do nothing), and a fairShare that is not a boolean', () => {
    expect(config({ globalWeight: 2 }, { limits: [requestsPerMinute(600)] })).toThrow(
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
      globalLimits: [requestsPerMinute(600)],
      globalFairShare: true,
    });
    expect(validated.global).toMatchObject({ fairShare: true, shards: 8 });
    expect(validated.plans.enterprise!.globalWeight).toBe(4);
  });
});
