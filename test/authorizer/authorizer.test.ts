import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Brake, parseBrake } from '../../lambda/runtime/brake';
import { Directory, putApiKey, putTenant } from '../../lambda/runtime/directory';
import { createHandler } from '../../lambda/authorizer/handler';
import { KEY_PREFIX, TABLE } from '../../lambda/engine/constants';
import { Limiter, layerKey } from '../../lambda/engine/limiter';
import { slidingWindow } from '../../lambda/engine/limits';
import { parseConfig, requests, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { LimitStore } from '../../lambda/engine/store';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { localClient } from '../../local/dynamodb-local';
import { authorizerEvent, lambdaContext } from '../support/events';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import type { MetricEvent } from '../../lambda/runtime/metrics';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        team: {
          tenant: [requestsPerMinute(100), tokensPerDay(100_000)],
          user: [requestsPerMinute(3), requests(slidingWindow(2, '1 m'), { name: 'strict', shadow: true })],
        },
        tight: { user: [requestsPerMinute(1)] },
      },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
      limitsRequestsPerMinute: 3,
    }),
  ),
);

let ssm: SsmLocal;
beforeAll(async () => {
  ssm = await startSsmLocal();
});
afterAll(() => ssm.stop());

async function setup(options: { plan?: string; coldStart?: 'released' | 'braked'; store?: LimitStore } = {}) {
  const clock = { now: Date.now() };
  const client = localClient(dynamoEndpoint());
  const ns = uniqueKey('ns');
  const tenant = uniqueKey('tenant');
  const apiKey = `sk-test-${uniqueKey('key')}`;
  await putTenant(client, tableName(), { id: tenant, plan: options.plan ?? 'team' });
  await putApiKey(client, tableName(), apiKey, { tenant, user: 'alice', status: 'active' });
  const brakeName = `/test/${uniqueKey('brake')}`;
  const logs: Record<string, unknown>[] = [];
  const log = (entry: Record<string, unknown>) => logs.push(entry);
  const metrics: MetricEvent[] = [];
  const store = options.store ?? testStore();
  const directory = new Directory({ client, tableName: tableName(), cacheMs: 30_000, clock: () => clock.now });
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      maxAttempts: 1,
    }),
    parameterName: brakeName,
    clock: () => clock.now,
    log,
    ...(options.coldStart ? { coldStart: options.coldStart } : {}),
  });
  const handler = createHandler({
    config,
    limiter: new Limiter({ store, config, log, namespace: ns }),
    directory,
    brake,
    clock: () => clock.now,
    log,
    metrics: (m) => metrics.push(m),
  });
  const call = (event = authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } })) =>
    handler(event, lambdaContext());
  const bucketItem = async (key: string) =>
    (
      await client.send(
        new GetItemCommand({ TableName: tableName(), Key: { [TABLE.partitionKey]: { S: KEY_PREFIX.bucket + key } } }),
      )
    ).Item;
  const tenantItem = () => bucketItem(layerKey.tenant({ tenant, user: 'alice' }, ns));
  const setBrake = (value: string) => ssm.parameters.set(brakeName, { value, version: 1, modified: Date.now() });
  const unavailable = () => metrics.filter((m) => 'LimiterUnavailable' in m.metrics).length;
  return { call, apiKey, tenant, logs, metrics, unavailable, clock, tenantItem, setBrake, client, brakeName };
}

describe('a plan change', () => {
  it('reaches the authorizer within 5 s (the tenant cache), while the key stays cached for keyCacheTtl', async () => {
    const s = await setup();
    expect((await s.call()).context).toMatchObject({ plan: 'team', limit: '3' });
    await putTenant(s.client, tableName(), { id: s.tenant, plan: 'tight' });
    s.clock.now += 4_900;
    expect((await s.call()).context).toMatchObject({ plan: 'team' });
    s.clock.now += 200;
    const after = await s.call();
    expect(after.context).toMatchObject({ plan: 'tight', limit: '1' });
  });
});

describe('identity', () => {
  it('allows a known key from Authorization: Bearer or x-api-key, with the caller in the context', async () => {
    const s = await setup();
    const viaBearer = await s.call();
    expect(viaBearer.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow', Action: 'execute-api:Invoke' });
    expect(viaBearer.context).toMatchObject({
      tenant: s.tenant,
      user: 'alice',
      plan: 'team',
      endpoint: CHAT,
      limit: '3',
      remaining: '2',
    });
    const viaHeader = await s.call(authorizerEvent({ headers: { 'x-api-key': s.apiKey } }));
    expect(viaHeader.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
    const both = await s.call(
      authorizerEvent({ headers: { authorization: `bearer ${s.apiKey}`, 'X-API-Key': s.apiKey } }),
    );
    expect(both.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
  });

  it.each([
    ['no credential header', {}],
    ['an empty Authorization', { Authorization: '' }],
    ['Bearer with nothing after it', { Authorization: 'Bearer ' }],
    ['a 10 kB header', { Authorization: `Bearer ${'a'.repeat(10_240)}` }],
    ['non-ASCII', { Authorization: 'Bearer sk-ключ-ключ-ключ-ключ-ключ' }],
    ['Basic instead of Bearer', { Authorization: 'Basic dXNlcjpwYXNz' }],
    ['an unknown key', { Authorization: 'Bearer sk-this-key-was-never-issued-000' }],
  ])('answers 401 for %s and touches no bucket', async (_name, headers) => {
    const s = await setup();
    await expect(s.call(authorizerEvent({ headers }))).rejects.toThrow(/^Unauthorized$/);
    expect(await s.tenantItem()).toBeUndefined();
  });

  it('answers 401 for two different keys, or the same header twice', async () => {
    const s = await setup();
    await expect(
      s.call(
        authorizerEvent({
          headers: { Authorization: `Bearer ${s.apiKey}`, 'x-api-key': 'sk-another-key-entirely-0000' },
        }),
      ),
    ).rejects.toThrow(/^Unauthorized$/);
    await expect(
      s.call(
        authorizerEvent({
          headers: { Authorization: `Bearer ${s.apiKey}` },
          multiValueHeaders: { Authorization: [`Bearer ${s.apiKey}`, 'Bearer sk-another-key-entirely-0000'] },
        }),
      ),
    ).rejects.toThrow(/^Unauthorized$/);
    expect(await s.tenantItem()).toBeUndefined();
  });

  it('honours revocation once the key cache expires (the documented delay)', async () => {
    const s = await setup();
    expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow');
    await putApiKey(s.client, tableName(), s.apiKey, { tenant: s.tenant, user: 'alice', status: 'revoked' });
    expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow'); // cached
    s.clock.now += 30_000;
    await expect(s.call()).rejects.toThrow(/^Unauthorized$/);
  });

  it('never writes the key into a log line', async () => {
    const s = await setup();
    await s.call();
    await s
      .call(authorizerEvent({ headers: { Authorization: `Bearer ${s.apiKey}`, 'x-api-key': `${s.apiKey}x` } }))
      .catch(() => {});
    expect(s.logs.length).toBeGreaterThan(1);
    expect(JSON.stringify(s.logs)).not.toContain(s.apiKey);
  });
});

describe('limits', () => {
  it('denies past the user limit with the 429 contract in the context', async () => {
    const s = await setup();
    for (let i = 0; i < 3; i++) expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow');
    const denied = await s.call();
    expect(denied.policyDocument.Statement[0]!.Effect).toBe('Deny');
    expect(denied.context).toMatchObject({
      code: 'user_requests_per_minute',
      type: 'rate_limit_exceeded',
      limit: '3',
      remaining: '0',
    });
    expect(denied.context!.retryAfter).toBeGreaterThanOrEqual(1);
    expect(String(denied.context!.message)).toContain('user_requests_per_minute');
    expect(String(denied.context!.policy)).toContain('"user_requests_per_minute";q=3;w=60');
    expect(String(denied.context!.rateLimit)).toMatch(/^"user_requests_per_minute";r=0;t=\d+$/);
    for (const value of Object.values(denied.context!)) expect(['string', 'number', 'boolean']).toContain(typeof value);
  });

  it('reports a shadow limit that would deny, and admits', async () => {
    const s = await setup();
    await s.call();
    await s.call();
    const third = await s.call();
    expect(third.policyDocument.Statement[0]!.Effect).toBe('Allow');
    expect(third.context!.shadow).toBe('user_requests_strict');
    expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'shadow_denied', code: 'user_requests_strict' }));
  });

  // Not a 429 (which invites retries forever): the function answers 500 with the code and calls nothing upstream.
  it.each([
    ['whose plan is unknown', 'plan_unknown', "plan 'platinum'"],
    // Written past the CLI's validation (by hand, or by an older version): a capacity below zero.
    ['whose overrides do not parse', 'tenant_config_invalid', 'capacity must be a positive finite number'],
  ] as const)('passes a tenant %s on as %s, logged and counted, spending nothing', async (_what, code, why) => {
    const s = await setup(code === 'plan_unknown' ? { plan: 'platinum' } : {});
    if (code === 'tenant_config_invalid')
      await putTenant(s.client, tableName(), {
        id: s.tenant,
        plan: 'team',
        overrides: {
          user: [{ counts: 'requests', limit: { shape: 'token_bucket', capacity: -1, refillPerSecond: 1 } }],
        } as never,
      });
    const result = await s.call();
    expect(result.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
    expect(result.context).toMatchObject({ configError: code, tenant: s.tenant });
    expect(s.logs).toContainEqual(
      expect.objectContaining({ level: 'error', code, message: expect.stringContaining(why) }),
    );
    expect(s.metrics).toContainEqual(
      expect.objectContaining({ metrics: { TenantMisconfigured: { value: 1, unit: 'Count' } } }),
    );
    expect(await s.tenantItem()).toBeUndefined();
  });

  it('answers 503 (not 401) when DynamoDB is down and the layer fails closed, without the key in the log', async () => {
    const broken = new LimitStore({ client: localClient('http://127.0.0.1:9', 1), tableName: tableName() });
    const s = await setup({ store: broken });
    const failure = await s.call().catch((err: Error) => err);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toBe('Rate limiter unavailable');
    expect(JSON.stringify(s.logs)).not.toContain(s.apiKey);
    // What the outage alarm counts (lib/observability.ts LimiterUnavailableAlarm).
    expect(s.unavailable()).toBe(1);
  });

  it('counts no outage for a burst of bad keys and scanners, although each is a Lambda error', async () => {
    const s = await setup();
    for (let i = 0; i < 50; i++) {
      const headers: Record<string, string> = i % 2 ? { Authorization: `Bearer sk-wrong-${i}` } : {};
      await expect(s.call(authorizerEvent({ headers }))).rejects.toThrow('Unauthorized');
    }
    expect(s.unavailable()).toBe(0);
  });

  it('lets GET /v1/limits through while braked, without touching the plan’s buckets', async () => {
    const s = await setup();
    s.setBrake('on');
    const result = await s.call(
      authorizerEvent({ route: '/v1/limits', method: 'GET', headers: { Authorization: `Bearer ${s.apiKey}` } }),
    );
    expect(result.policyDocument.Statement[0]!.Effect).toBe('Allow');
    expect(await s.tenantItem()).toBeUndefined();
  });

  it('meters GET /v1/limits on a budget of its own (limitsRequestsPerMinute) and logs every call', async () => {
    const s = await setup();
    const event = authorizerEvent({
      route: '/v1/limits',
      method: 'GET',
      headers: { Authorization: `Bearer ${s.apiKey}` },
    });
    for (let i = 0; i < 3; i++) expect((await s.call(event)).policyDocument.Statement[0]!.Effect).toBe('Allow');
    const denied = await s.call(event);
    expect(denied.policyDocument.Statement[0]!.Effect).toBe('Deny');
    expect(denied.context).toMatchObject({ code: 'user_requests_limits_per_minute', limit: '3', remaining: '0' });
    expect(Number(denied.context!.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(s.logs.filter((e) => e.route === '/v1/limits').map((e) => e.outcome)).toEqual([
      'allowed',
      'allowed',
      'allowed',
      'denied',
    ]);
    expect(await s.tenantItem()).toBeUndefined();
  });
});

describe('brake', () => {
  it('denies every AI request before any bucket, with the reason and Retry-After until it ends', async () => {
    const s = await setup();
    s.setBrake(
      JSON.stringify({
        enabled: true,
        reason: 'provider outage',
        until: new Date(s.clock.now + 120_000).toISOString(),
      }),
    );
    const denied = await s.call();
    expect(denied.context).toMatchObject({ code: 'brake', retryAfter: 120 });
    expect(String(denied.context!.message)).toContain('provider outage');
    expect(await s.tenantItem()).toBeUndefined();
  });

  it('takes effect and releases within the 5 s cache', async () => {
    const s = await setup();
    expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow');
    s.setBrake(JSON.stringify({ enabled: true, reason: 'incident' }));
    s.clock.now += 5_000;
    expect((await s.call()).context).toMatchObject({ code: 'brake', retryAfter: 60 });
    s.setBrake('off');
    s.clock.now += 4_999;
    expect((await s.call()).context).toMatchObject({ code: 'brake' });
    s.clock.now += 1;
    expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow');
  });

  it('keeps the last known state while SSM is unreachable', async () => {
    const local = await startSsmLocal();
    const name = `/test/${uniqueKey('brake')}`;
    local.parameters.set(name, { value: '{"enabled":true,"reason":"drill"}', version: 1, modified: Date.now() });
    let now = Date.now();
    const logs: Record<string, unknown>[] = [];
    const brake = new Brake({
      client: new SSMClient({
        endpoint: local.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
        maxAttempts: 1,
      }),
      parameterName: name,
      clock: () => now,
      log: (e) => logs.push(e),
    });
    expect(await brake.state()).toMatchObject({ enabled: true, reason: 'drill', source: 'ssm' });
    await local.stop();
    now += 6_000;
    expect(await brake.state()).toMatchObject({ enabled: true, reason: 'drill', source: 'last-known' });
    expect(logs).toContainEqual(expect.objectContaining({ message: 'brake parameter could not be read' }));
  });

  it.each([
    ['released', true],
    ['braked', false],
  ] as const)('at a cold start with SSM unreachable acts as %s, loudly', async (coldStart, allowed) => {
    const s = await setup({ coldStart });
    await ssm.stop();
    try {
      const result = await s.call();
      expect(result.policyDocument.Statement[0]!.Effect).toBe(allowed ? 'Allow' : 'Deny');
      expect(s.logs).toContainEqual(
        expect.objectContaining({ level: 'error', message: expect.stringContaining('BRAKE UNKNOWN at cold start') }),
      );
    } finally {
      ssm = await startSsmLocal({ port: Number(new URL(ssm.endpoint).port) });
    }
  });

  it.each([
    ['off', { enabled: false }],
    ['', { enabled: false }],
    ['on', { enabled: true }],
    ['{"enabled": false}', { enabled: false }],
    [
      '{"enabled": true, "reason": "r", "until": "2030-01-01T00:00:00Z"}',
      { enabled: true, reason: 'r', until: Date.parse('2030-01-01T00:00:00Z') },
    ],
    ['{"enabled": "yes"}', { enabled: true }],
    ['{"enabled":"true"}', { enabled: true }],
    ['{"enabled": "false"}', { enabled: false }],
    ['{"enabled": 1}', { enabled: true }],
    ['true', { enabled: true }],
    ['TRUE', { enabled: true }],
    [' yes ', { enabled: true }],
    ['1', { enabled: true }],
    ['false', { enabled: false }],
    ['no', { enabled: false }],
    ['0', { enabled: false }],
    ['{"enabled": true, "until": "tomorrow"}', undefined],
    ['{"enabled": "maybe"}', undefined],
    ['braked!', undefined],
    ['[1]', undefined],
  ])('parses the brake value %j', (value, expected) => {
    expect(parseBrake(value)).toEqual(expected);
  });

  it.each(['braked!', '{"enabled": "maybe"}', '{not json'])(
    'a value that is not a brake setting (%j) brakes, loudly, and says so in its reason',
    async (value) => {
      const s = await setup();
      expect((await s.call()).policyDocument.Statement[0]!.Effect).toBe('Allow');
      s.setBrake(value);
      s.clock.now += 10_000; // past the brake cache
      const result = await s.call();
      expect(result.policyDocument.Statement[0]!.Effect).toBe('Deny');
      expect(result.context).toMatchObject({ code: 'brake' });
      expect(String(result.context?.message)).toContain('not a brake setting');
      expect(s.logs).toContainEqual(
        expect.objectContaining({ level: 'error', message: expect.stringContaining('BRAKE UNREADABLE') }),
      );
    },
  );

  it('counts an unreadable brake value in the BrakeUnreadable metric (alarmed)', async () => {
    const name = `/test/${uniqueKey('brake')}`;
    ssm.parameters.set(name, { value: 'braked!', version: 1, modified: Date.now() });
    const metrics: MetricEvent[] = [];
    const brake = new Brake({
      client: new SSMClient({
        endpoint: ssm.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
        maxAttempts: 1,
      }),
      parameterName: name,
      log: () => {},
      metrics: (m) => metrics.push(m),
    });
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'unreadable' });
    expect(metrics).toEqual([
      { dimensions: { Function: 'brake' }, metrics: { BrakeUnreadable: { value: 1, unit: 'Count' } } },
    ]);
  });
});
