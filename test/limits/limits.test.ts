import { describe, expect, it } from 'vitest';
import { putTenant } from '../../lambda/runtime/directory';
import { Directory } from '../../lambda/runtime/directory';
import { Limiter } from '../../lambda/engine/limiter';
import { parseConfig, requestsPerMinute, tokensPerDay, usdPerDay } from '../../lambda/engine/plans';
import { Brake } from '../../lambda/runtime/brake';
import { usageOf } from '../../lambda/limits/usage';
import { createLimitsHandler } from '../../lambda/limits/handler';
import { prefersHtml, usagePage } from '../../lambda/limits/page';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { localClient } from '../../local/dynamodb-local';
import { lambdaContext, proxyEvent } from '../support/events';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        team: {
          tenant: [tokensPerDay(1000)],
          user: [requestsPerMinute(5)],
          endpoints: { [CHAT]: [requestsPerMinute(50)] },
        },
      },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
    }),
  ),
);

/** A tenant on plan 'team', and a limiter whose bucket time stands still (every figure is exact). */
async function setup(limiterConfig: typeof config) {
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  const ns = uniqueKey('ns');
  const frozen = Date.now();
  const store = testStore({ clock: () => frozen });
  const limiter = new Limiter({ store, config: limiterConfig, log: () => {}, namespace: ns });
  return { client, tenant, ns, frozen, store, limiter };
}

describe('GET /v1/limits', () => {
  it("answers the caller's plan and every limit with limit, remaining and reset, spending nothing", async () => {
    const { client, tenant, ns, store, limiter } = await setup(config);
    await limiter.admit({ tenant, user: 'ann' }, { id: tenant, plan: 'team' }, CHAT);
    const handler = createLimitsHandler({
      config,
      store,
      limiter,
      directory: new Directory({ client, tableName: tableName() }),
      namespace: ns,
      log: () => {},
    });
    const event = proxyEvent({ route: '/v1/limits', authorizer: { tenant, user: 'ann' } });
    const first = await handler({ ...event, httpMethod: 'GET', body: null }, lambdaContext('limits'));
    const second = await handler({ ...event, httpMethod: 'GET', body: null }, lambdaContext('limits'));
    expect(first.statusCode).toBe(200);
    expect(first.body).toBe(second.body);
    const body = JSON.parse(first.body);
    expect(body).toMatchObject({ tenant, user: 'ann', plan: 'team' });
    expect(body.limits).toEqual([
      expect.objectContaining({
        layer: 'tenant',
        code: 'tenant_tokens_per_day',
        counts: 'tokens',
        limit: 1000,
        remaining: 1000,
        windowSeconds: 86_400,
      }),
      expect.objectContaining({ layer: 'user', code: 'user_requests_per_minute', limit: 5, remaining: 4 }),
      expect.objectContaining({
        layer: 'endpoint',
        code: 'endpoint_requests_per_minute',
        route: CHAT,
        limit: 50,
        remaining: 49,
      }),
    ]);
    expect(body.limits[1].resetSeconds).toBeGreaterThan(0);
    // The user's 4 of 5 is the smallest share left.
    expect(body.closest).toBe('user_requests_per_minute');
  });

  it('shows a tenant the global limits as their state only, never what other tenants spent; operators see the sums', async () => {
    const withGlobal = parseConfig(
      JSON.parse(
        JSON.stringify({
          plans: { team: { tenant: [tokensPerDay(1000)] } },
          endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
          global: { limits: [usdPerDay(50)], shards: 4 },
        }),
      ),
    );
    const { client, tenant, ns, frozen, store, limiter } = await setup(withGlobal);
    // Another tenant spent $11.50 through each of the 4 shards: the system has $4 of $50 left.
    for (let shard = 0; shard < 4; shard++) {
      await limiter.settle(
        `${ns}-r${shard}`,
        {
          identity: { tenant: 'other', user: 'bob' },
          tenant: { id: 'other', plan: 'team' },
          route: CHAT,
          shard,
          reserved: { tokens: 0, microUsd: 0 },
          failedOpen: [],
          admittedAt: frozen,
        },
        { tokens: 0, microUsd: 11_500_000 },
      );
    }
    const handler = createLimitsHandler({
      config: withGlobal,
      store,
      limiter,
      directory: new Directory({ client, tableName: tableName() }),
      namespace: ns,
      log: () => {},
    });
    const body = JSON.parse(
      (
        await handler(
          {
            ...proxyEvent({ route: '/v1/limits', authorizer: { tenant, user: 'ann' } }),
            httpMethod: 'GET',
            body: null,
          },
          lambdaContext('limits'),
        )
      ).body,
    );
    const global = body.limits.find((l: { layer: string }) => l.layer === 'global');
    expect(global).toMatchObject({ code: 'global_usd_per_day', unit: 'usd', limit: 50, shared: true, state: 'near' });
    expect(global).not.toHaveProperty('remaining');
    expect(global.resetSeconds).toBe(0);
    expect(body.closest).toBe('tenant_tokens_per_day');
    // The operators' view (the CLI's usage) has every figure.
    const operator = await usageOf(store, limiter, withGlobal, { id: tenant, plan: 'team' }, 'ann', ns, 'operator');
    expect(operator.limits).toContainEqual(
      expect.objectContaining({ layer: 'global', code: 'global_usd_per_day', unit: 'usd', limit: 50, remaining: 4 }),
    );
    expect(operator.closest).toBe('global_usd_per_day');
  });

  // A key whose tenant is missing is the operators' configuration problem: 500 with a code, not a 4xx.
  it('answers 401 without an identity and 500 tenant_unknown for a tenant that does not exist', async () => {
    const client = localClient(dynamoEndpoint());
    const store = testStore();
    const handler = createLimitsHandler({
      config,
      store,
      limiter: new Limiter({ store, config, log: () => {} }),
      directory: new Directory({ client, tableName: tableName() }),
      log: () => {},
    });
    expect(
      (await handler({ ...proxyEvent({ route: '/v1/limits' }), httpMethod: 'GET' }, lambdaContext('limits')))
        .statusCode,
    ).toBe(401);
    const missing = await handler(
      { ...proxyEvent({ route: '/v1/limits', authorizer: { tenant: uniqueKey('t'), user: 'x' } }), httpMethod: 'GET' },
      lambdaContext('limits'),
    );
    expect(missing.statusCode).toBe(500);
    expect(JSON.parse(missing.body).error).toMatchObject({ type: 'api_error', code: 'tenant_unknown' });
  });
});

describe('the usage page and the brake, without a browser', () => {
  it('reports the brake as people should see it: engaged, why and until when, or released', async () => {
    const { client, tenant, ns, store, limiter } = await setup(config);
    const until = new Date(Date.now() + 3_600_000).toISOString();
    let value = JSON.stringify({ enabled: true, reason: 'provider outage', until });
    const brake = new Brake({ parameterName: '/brake', reader: async () => ({ value, source: 'mirror' }), cacheMs: 0 });
    const handler = createLimitsHandler({
      config,
      store,
      limiter,
      directory: new Directory({ client, tableName: tableName() }),
      brake,
      namespace: ns,
      log: () => {},
    });
    const read = async () =>
      JSON.parse(
        (
          await handler(
            {
              ...proxyEvent({ route: '/v1/limits', authorizer: { tenant, user: 'ann' } }),
              httpMethod: 'GET',
              body: null,
            },
            lambdaContext('limits'),
          )
        ).body,
      );
    expect((await read()).brake).toEqual({ engaged: true, reason: 'provider outage', until });
    value = 'off';
    expect((await read()).brake).toEqual({ engaged: false });
  });

  it('serves GET /v1/usage without an identity or any data, and GET /v1/limits as the page only to clients that prefer HTML', async () => {
    const { client, tenant, ns, store, limiter } = await setup(config);
    const handler = createLimitsHandler({
      config,
      store,
      limiter,
      directory: new Directory({ client, tableName: tableName() }),
      namespace: ns,
      log: () => {},
    });
    const page = await handler(
      { ...proxyEvent({ route: '/v1/usage' }), httpMethod: 'GET', body: null },
      lambdaContext('limits'),
    );
    expect(page.statusCode).toBe(200);
    expect(page.headers).toMatchObject({ 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    expect(page.body).toContain('<script type="application/json" id="usage-data"></script>');
    // No asset from anywhere: every src/href in the page is absent.
    expect(page.body).not.toMatch(/\s(src|href)=/);
    const asBrowser = await handler(
      {
        ...proxyEvent({
          route: '/v1/limits',
          authorizer: { tenant, user: 'ann' },
          headers: { Accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
        }),
        httpMethod: 'GET',
        body: null,
      },
      lambdaContext('limits'),
    );
    expect(asBrowser.headers?.['content-type']).toBe('text/html; charset=utf-8');
    expect(asBrowser.body).toContain(`"tenant":"${tenant}"`);
  });

  it('embeds usage so that no value can end the script element it sits in', () => {
    const html = usagePage({ tenant: '</script><script>alert(1)</script>\u2028' });
    expect(html).not.toContain('</script><script>alert(1)');
    expect(html).toContain('\\u003c/script>\\u003cscript>alert(1)\\u003c/script>\\u2028');
  });

  it.each([
    ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', true],
    ['text/html', true],
    ['application/json', false],
    ['*/*', false],
    [undefined, false],
    ['application/json, text/html;q=0.5', false],
    ['text/html;q=0, application/json', false],
  ])('Accept %s prefers the page: %s', (accept, expected) => {
    expect(prefersHtml(accept)).toBe(expected);
  });
});

describe('an unexpected failure', () => {
  it('answers 500 internal_error with the request id only, and logs the class, not the message', async () => {
    const { store, limiter } = await setup(config);
    const logs: Record<string, unknown>[] = [];
    // A dependency failing in a way nobody planned for (not a limiter error): the message must not reach the client.
    const directory = {
      tenant: async () => {
        throw new TypeError('secret detail sk-should-not-leak');
      },
    } as unknown as Directory;
    const handler = createLimitsHandler({ config, store, limiter, directory, log: (e) => logs.push(e) });
    const res = await handler(
      { ...proxyEvent({ route: '/v1/limits', authorizer: { tenant: 't', user: 'u' } }), httpMethod: 'GET', body: null },
      lambdaContext('limits', 'req-123'),
    );
    expect(res.statusCode).toBe(500);
    expect(JSON.parse(res.body)).toEqual({
      error: { message: 'Internal error (request req-123).', type: 'api_error', param: null, code: 'internal_error' },
    });
    expect(logs).toContainEqual({ level: 'error', requestId: 'req-123', message: 'limits failed', error: 'TypeError' });
    expect(JSON.stringify(logs)).not.toContain('sk-should-not-leak');
  });
});
