import { describe, expect, it } from 'vitest';
import { LayerUnavailableError, UnknownPlanError } from '../../lambda/engine/errors';
import { type Identity, Limiter, type Strategy, type TenantRecord, layerKey } from '../../lambda/engine/limiter';
import { slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import {
  bucketName,
  type LimiterConfig,
  parseConfig,
  requests,
  requestsPerMinute,
  tokens,
  tokensPerDay,
} from '../../lambda/engine/plans';
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { KEY_PREFIX } from '../../lambda/engine/constants';

const T0 = 1_800_000_000_000;
const CHAT = '/v1/chat/completions';

function config(overrides: Partial<LimiterConfig> = {}): LimiterConfig {
  return parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: {
          team: {
            tenant: [requests(slidingWindow(5, '1 m')), tokensPerDay(1_000)],
            user: [requestsPerMinute(3)],
            endpoints: { [CHAT]: [requests(slidingWindow(4, '1 m'))] },
          },
        },
        endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
        global: { limits: [requests(slidingWindow(100, '1 m'))], shards: 2 },
        penalty: { threshold: 2, windowMs: 60_000, baseMs: 4_000, maxMs: 16_000 },
        ...overrides,
      }),
    ),
  );
}

function setup(strategy: Strategy, cfg = config(), clock = { now: T0 }) {
  const store = testStore({ clock: () => clock.now });
  const ns = uniqueKey('ns');
  const limiter = new Limiter({ store, config: cfg, strategy, random: () => 0, log: () => {}, namespace: ns });
  const tenantId = uniqueKey('tenant');
  const tenant: TenantRecord = { id: tenantId, plan: 'team' };
  const user = (name: string): Identity => ({ tenant: tenantId, user: name });
  return { store, limiter, tenant, user, clock, ns };
}

describe.each<Strategy>(['parallel', 'transaction'])('layered limits (%s)', (strategy) => {
  it('each layer trips alone with its own code', async () => {
    // user: 3/min trips first for one user
    const a = setup(strategy);
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await a.limiter.admit(a.user('u1'), a.tenant, CHAT)).code ?? 'ok');
    expect(codes).toEqual(['ok', 'ok', 'ok', 'user_requests_per_minute']);

    // endpoint: 4/min per tenant trips across two users before the tenant's 5
    const b = setup(strategy);
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push((await b.limiter.admit(b.user(`u${i % 2}`), b.tenant, CHAT)).code ?? 'ok');
    expect(seen).toEqual(['ok', 'ok', 'ok', 'ok', 'endpoint_requests_per_minute']);

    // tenant: 5/min over other routes (no endpoint limits on /v1/other)
    const cfg = config();
    const c = setup(strategy, {
      ...cfg,
      endpoints: {
        ...cfg.endpoints,
        '/v1/embeddings': { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
      },
    });
    const mixed = [];
    for (let i = 0; i < 6; i++)
      mixed.push((await c.limiter.admit(c.user(`u${i}`), c.tenant, '/v1/embeddings')).code ?? 'ok');
    expect(mixed).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'tenant_requests_per_minute']);
  });

  it('first hit wins: when tenant and user would both deny, the tenant is reported', async () => {
    const s = setup(strategy);
    await s.store.adjustItem(layerKey.tenant(s.user('u1'), s.ns), [
      { name: bucketName(tokensPerDay(1_000)), limit: tokensPerDay(1_000).limit, delta: 1_500 },
    ]);
    for (let i = 0; i < 3; i++)
      await s.store.decideItem(layerKey.user(s.user('u1'), s.ns), [
        { name: bucketName(requestsPerMinute(3)), limit: requestsPerMinute(3).limit, cost: 1 },
      ]);
    const verdict = await s.limiter.admit(s.user('u1'), s.tenant, CHAT);
    expect(verdict.code).toBe('tenant_tokens_per_day');
    expect(verdict.denied?.decision.retryAfterMs).toBe(43_200_000 + 86_400);
  });

  it('token limits admit without spending; request limits spend one', async () => {
    const s = setup(strategy);
    const verdict = await s.limiter.admit(s.user('u1'), s.tenant, CHAT);
    const byCode = Object.fromEntries(verdict.limits.map((l) => [l.code, l.decision.remaining]));
    expect(byCode).toMatchObject({
      tenant_requests_per_minute: 4,
      tenant_tokens_per_day: 1_000,
      user_requests_per_minute: 2,
      endpoint_requests_per_minute: 3,
      global_requests_per_minute: 49,
    });
  });

  it('leaves a layer with only token limits to the reservation, which holds it as the hard limit', async () => {
    const cfg = config();
    const plans = { team: { ...cfg.plans.team!, endpoints: { [CHAT]: [tokensPerDay(100)] } } };
    const s = setup(strategy, { ...cfg, plans });
    const endpointKey = layerKey.endpoint(s.user('u1'), CHAT, 'tenant', s.ns);
    const calls = s.store.stats.calls;
    const verdict = await s.limiter.admit(s.user('u1'), s.tenant, CHAT);
    // Tenant, user and global (request limits) are decided; the endpoint's token-only item is not written.
    expect(verdict.allowed).toBe(true);
    expect(verdict.limits.map((l) => l.layer)).toEqual(['tenant', 'tenant', 'user', 'global']);
    expect(s.store.stats.calls - calls).toBe(strategy === 'parallel' ? 3 : 1);
    const stored = await localClient(dynamoEndpoint()).send(
      new GetItemCommand({
        TableName: tableName(),
        Key: { pk: { S: KEY_PREFIX.bucket + endpointKey } },
        ConsistentRead: true,
      }),
    );
    expect(stored.Item).toBeUndefined();
    // The reservation is where the endpoint's 100 tokens are held: 80 fit, then 30 more do not, with the endpoint's code.
    expect(
      (await s.limiter.reserve(s.user('u1'), s.tenant, CHAT, { tokens: 80, microUsd: 0 }, verdict.shard)).allowed,
    ).toBe(true);
    const second = await s.limiter.admit(s.user('u1'), s.tenant, CHAT);
    expect(second.allowed).toBe(true);
    const denied = await s.limiter.reserve(s.user('u1'), s.tenant, CHAT, { tokens: 30, microUsd: 0 }, second.shard);
    expect(denied).toMatchObject({ allowed: false, code: 'endpoint_tokens_per_day' });
  });

  it('a denial spends nothing on any layer (refunds in parallel mode, nothing written in a transaction)', async () => {
    const s = setup(strategy);
    for (let i = 0; i < 3; i++) await s.limiter.admit(s.user('u1'), s.tenant, CHAT);
    expect((await s.limiter.admit(s.user('u1'), s.tenant, CHAT)).allowed).toBe(false);
    const tenant = await s.store.peekItem(layerKey.tenant(s.user('u1'), s.ns), [
      { name: 'r_per_minute', limit: slidingWindow(5, '1 m'), cost: 1 },
    ]);
    expect(tenant.decisions[0]!.remaining).toBe(2);
  });

  it("keeps tenants apart: tenant A's traffic never moves tenant B's buckets", async () => {
    // One limiter, one namespace, two tenants on one plan, users of the same name: only the tenant id tells their items apart.
    const s = setup(strategy);
    const other: TenantRecord = { id: uniqueKey('tenant'), plan: 'team' };
    for (let i = 0; i < 8; i++) await s.limiter.admit(s.user('same-user'), s.tenant, CHAT);
    expect((await s.limiter.admit(s.user('same-user'), s.tenant, CHAT)).allowed).toBe(false);
    const verdict = await s.limiter.admit({ tenant: other.id, user: 'same-user' }, other, CHAT);
    expect(verdict.allowed).toBe(true);
    const remaining = Object.fromEntries(verdict.limits.map((l) => [l.code, l.decision.remaining]));
    expect(remaining).toMatchObject({
      tenant_requests_per_minute: 4,
      user_requests_per_minute: 2,
      endpoint_requests_per_minute: 3,
    });
  });

  it('escalates Retry-After for an identity that keeps getting denied, and lets it decay', async () => {
    const s = setup(strategy);
    const u = s.user('hammer');
    for (let i = 0; i < 3; i++) await s.limiter.admit(u, s.tenant, CHAT);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const v = await s.limiter.admit(u, s.tenant, CHAT);
      expect(v.allowed).toBe(false);
      waits.push(v.retryAfterMs!);
      s.clock.now += 1_000;
    }
    // natural wait first (threshold 2), then 4 s, then the box answers with what is left of it
    expect(waits[0]).toBeGreaterThan(50_000); // the user's window frees a slot in about a minute
    expect(waits[2]).toBeGreaterThanOrEqual(waits[1]! - 1_000);

    // In the box: denied without touching any bucket: one write, to the penalty state only
    const bucketsBefore = await s.store.peekItem(layerKey.tenant(u, s.ns), [
      { name: 'r_per_minute', limit: slidingWindow(5, '1 m'), cost: 1 },
    ]);
    const calls = s.store.stats.calls;
    const boxed = await s.limiter.admit(u, s.tenant, CHAT);
    expect(boxed).toMatchObject({ allowed: false, penalized: true, code: 'user_requests_per_minute' });
    expect(s.store.stats.calls).toBe(calls + 1);
    expect(boxed.retryAfterMs).toBeGreaterThanOrEqual(waits.at(-1)! - 1_000); // never shorter than what is left of the box
    const bucketsAfter = await s.store.peekItem(layerKey.tenant(u, s.ns), [
      { name: 'r_per_minute', limit: slidingWindow(5, '1 m'), cost: 1 },
    ]);
    expect(bucketsAfter.decisions[0]!.remaining).toBe(bucketsBefore.decisions[0]!.remaining);

    // After a quiet window the count starts again: exhaust the limit anew, and the first denial
    // carries only the natural wait (not the doubled one it had grown to).
    s.clock.now += 61_000 + 16_000;
    for (let i = 0; i < 3; i++) expect((await s.limiter.admit(u, s.tenant, CHAT)).allowed).toBe(true);
    const after = await s.limiter.admit(u, s.tenant, CHAT);
    expect(after).toMatchObject({ allowed: false, code: 'user_requests_per_minute' });
    expect(after.penalized ?? false).toBe(false);
    expect(after.retryAfterMs).toBe(after.denied!.decision.retryAfterMs);
  });

  it('grows Retry-After by doubling up to the cap while the limit itself would allow sooner', async () => {
    const s = setup(strategy, config({ plans: { team: { user: [requests(tokenBucket(1, 10))] } } }));
    const u = s.user('loop');
    const waits: number[] = [];
    for (let i = 0; i < 14; i++) {
      const v = await s.limiter.admit(u, s.tenant, CHAT);
      if (!v.allowed) waits.push(v.retryAfterMs!);
      // come back exactly when told, like a well-behaved client
      s.clock.now += v.allowed ? 0 : v.retryAfterMs!;
    }
    expect(waits.slice(0, 6)).toEqual([100, 100, 4_000, 8_000, 16_000, 16_000]);
  });
});

/** A reservation of 400 tokens on CHAT, shard 0, every layer reserved. */
const reservationOf = (identity: Identity, tenant: TenantRecord, admittedAt: number) => ({
  identity,
  tenant,
  route: CHAT,
  shard: 0,
  reserved: { tokens: 400, microUsd: 0 },
  failedOpen: [] as const,
  admittedAt,
});

describe('settlement', () => {
  it('refunds correctly from a container that never saw the reservation, and only once', async () => {
    const cfg = config();
    const ns = uniqueKey('ns');
    const frozen = T0;
    const tenant: TenantRecord = { id: uniqueKey('tenant'), plan: 'team' };
    const identity = { tenant: tenant.id, user: 'u' };
    const reserving = new Limiter({
      store: testStore({ clock: () => frozen }),
      config: cfg,
      log: () => {},
      namespace: ns,
    });
    expect((await reserving.reserve(identity, tenant, CHAT, { tokens: 400, microUsd: 0 }, 0)).allowed).toBe(true);
    const other = new Limiter({ store: testStore({ clock: () => frozen }), config: cfg, log: () => {}, namespace: ns });
    const reservation = reservationOf(identity, tenant, frozen);
    expect(await other.settle('req-1', reservation, { tokens: 150, microUsd: 0 })).toBe('settled');
    expect(await other.settle('req-1', reservation, { tokens: 150, microUsd: 0 })).toBe('already-settled');
    const peek = await testStore({ clock: () => frozen }).peekItem(layerKey.tenant(identity, ns), [
      { name: bucketName(tokensPerDay(1_000)), limit: tokensPerDay(1_000).limit, cost: 1 },
    ]);
    expect(peek.decisions[0]!.remaining).toBe(850);
  });
});

describe('a token limit that weighs output (a quota with an output burndown)', () => {
  it('reserves and settles input + weight x output on that limit alone, the others on input + output', async () => {
    const weighed = tokens(slidingWindow(10_000, '1 m'), { name: 'quota', outputWeight: 5 });
    const cfg = config({ global: { limits: [weighed], shards: 1 } });
    const ns = uniqueKey('ns');
    const tenant: TenantRecord = { id: uniqueKey('tenant'), plan: 'team' };
    const identity = { tenant: tenant.id, user: 'u' };
    const store = testStore({ clock: () => T0 });
    const limiter = new Limiter({ store, config: cfg, log: () => {}, namespace: ns });
    // 100 input + a cap of 200 output: the quota holds 100 + 5 x 200, the tenant's day 300.
    const reserved = { tokens: 300, outputTokens: 200, microUsd: 0 };
    expect((await limiter.reserve(identity, tenant, CHAT, reserved, 0)).allowed).toBe(true);
    const remaining = async () => {
      const quota = await store.peekItem(layerKey.global(0, ns), [
        { name: bucketName(weighed), limit: weighed.limit, cost: 1 },
      ]);
      const day = await store.peekItem(layerKey.tenant(identity, ns), [
        { name: bucketName(tokensPerDay(1_000)), limit: tokensPerDay(1_000).limit, cost: 1 },
      ]);
      return [quota.decisions[0]!.remaining, day.decisions[0]!.remaining];
    };
    expect(await remaining()).toEqual([10_000 - 1_100, 1_000 - 300]);
    // The model wrote 40: the quota keeps 100 + 5 x 40, the day 140.
    const reservation = { ...reservationOf(identity, tenant, T0), reserved };
    await limiter.settle('weighed-1', reservation, { tokens: 140, outputTokens: 40, microUsd: 0 });
    expect(await remaining()).toEqual([10_000 - 300, 1_000 - 140]);
  });

  it('is refused on a limit that does not count tokens, and outside 1 to 100', () => {
    const limit = { shape: 'sliding_window', limit: 10, windowMs: 60_000 };
    expect(() => config({ global: { limits: [{ counts: 'requests', limit, outputWeight: 5 } as never] } })).toThrow(
      /global.*outputWeight: only a token limit weighs output/,
    );
    expect(() => config({ global: { limits: [{ counts: 'tokens', limit, outputWeight: 0.5 } as never] } })).toThrow(
      /outputWeight: expected a number from 1 to 100, got 0.5/,
    );
  });
});

describe('settlement of a layer that failed open', () => {
  it('debits what was used in full: that layer reserved nothing', async () => {
    const cfg = config();
    const ns = uniqueKey('ns');
    const tenant: TenantRecord = { id: uniqueKey('tenant'), plan: 'team' };
    const identity = { tenant: tenant.id, user: 'u' };
    const limiter = new Limiter({ store: testStore({ clock: () => T0 }), config: cfg, log: () => {}, namespace: ns });
    const reservation = { ...reservationOf(identity, tenant, T0), failedOpen: ['tenant' as const] };
    expect(await limiter.settle(uniqueKey('req'), reservation, { tokens: 150, microUsd: 0 })).toBe('settled');
    const peek = await testStore({ clock: () => T0 }).peekItem(layerKey.tenant(identity, ns), [
      { name: bucketName(tokensPerDay(1_000)), limit: tokensPerDay(1_000).limit, cost: 1 },
    ]);
    // Not 1,000 - 150 + 250: the 250 left of a reservation the tenant layer never took is not refunded.
    expect(peek.decisions[0]!.remaining).toBe(850);
  });
});

describe('endpoint scope', () => {
  it.each([
    ['tenant', ['ok', 'ok', 'ok', 'ok', 'ok']],
    ['global', ['ok', 'ok', 'ok', 'ok', 'endpoint_requests_per_minute']],
  ] as const)('%s: the endpoint limit (4/min) over two tenants', async (scope, expected) => {
    const base = config();
    const cfg = { ...base, endpoints: { [CHAT]: { ...base.endpoints[CHAT]!, scope } } };
    const clock = { now: T0 };
    const a = setup('parallel', cfg, clock);
    const other: TenantRecord = { id: uniqueKey('tenant'), plan: 'team' };
    const seen = [];
    // Two of tenant A's users, then three of tenant B's: no tenant or user limit is reached.
    for (const [tenant, user] of [
      [a.tenant, 'u1'],
      [a.tenant, 'u2'],
      [other, 'u1'],
      [other, 'u2'],
      [other, 'u3'],
    ] as const)
      seen.push((await a.limiter.admit({ tenant: tenant.id, user }, tenant, CHAT)).code ?? 'ok');
    expect(seen).toEqual(expected);
  });
});

describe('shadow limits at reservation', () => {
  it('are reported as they would decide, spend only what fits, and never deny', async () => {
    const trial = tokens(tokenBucket(100, 1), { shadow: true, name: 'trial' });
    const cfg = config({ plans: { team: { user: [trial] } } } as Partial<LimiterConfig>);
    const s = setup('parallel', parseConfig(JSON.parse(JSON.stringify(cfg))));
    const big = await s.limiter.reserve(s.user('u'), s.tenant, CHAT, { tokens: 150, microUsd: 0 }, 0);
    expect(big.allowed).toBe(true);
    const shadow = big.limits.find((l) => l.code === 'user_tokens_trial');
    expect(shadow?.decision).toMatchObject({ allowed: false, limit: 100, remaining: 100 });
    const small = await s.limiter.reserve(s.user('u'), s.tenant, CHAT, { tokens: 60, microUsd: 0 }, 0);
    expect(small.allowed).toBe(true);
    expect(small.limits.find((l) => l.code === 'user_tokens_trial')?.decision).toMatchObject({
      allowed: true,
      remaining: 40,
    });
  });
});

describe('global cap', () => {
  it('shards together never admit more than the cap', async () => {
    const cfg = config({ global: { limits: [requests(slidingWindow(20, '1 d', 24))], shards: 4 } });
    const store = testStore({ clock: () => T0 });
    let n = 0;
    const limiter = new Limiter({
      store,
      config: cfg,
      random: () => (n++ % 4) / 4,
      log: () => {},
      namespace: uniqueKey('ns'),
    });
    let admitted = 0;
    for (let i = 0; i < 40; i++) {
      const tenant: TenantRecord = { id: uniqueKey('t'), plan: 'team' };
      if ((await limiter.admit({ tenant: tenant.id, user: 'u' }, tenant, CHAT)).allowed) admitted++;
    }
    expect(admitted).toBe(20);
  });
});

describe('failures', () => {
  it('a tenant whose plan is unknown is refused', async () => {
    const s = setup('parallel');
    await expect(s.limiter.admit(s.user('u'), { id: s.tenant.id, plan: 'gold' }, CHAT)).rejects.toBeInstanceOf(
      UnknownPlanError,
    );
  });

  it('fails closed by default and open where configured, saying which', async () => {
    const broken = new LimitStore({ client: localClient('http://127.0.0.1:9', 1), tableName: tableName() });
    const closed = new Limiter({ store: broken, config: config(), log: () => {} });
    const tenant: TenantRecord = { id: uniqueKey('t'), plan: 'team' };
    await expect(closed.admit({ tenant: tenant.id, user: 'u' }, tenant, CHAT)).rejects.toBeInstanceOf(
      LayerUnavailableError,
    );
    const open = new Limiter({
      store: broken,
      config: config({ failureModes: { tenant: 'open', user: 'open', endpoint: 'open', global: 'open' } }),
      log: () => {},
    });
    const verdict = await open.admit({ tenant: tenant.id, user: 'u' }, tenant, CHAT);
    expect(verdict).toMatchObject({ allowed: true, failedOpen: ['tenant', 'user', 'endpoint', 'global'] });
  });
});
