/**
 * Dependencies that accept connections and never answer (an overloaded endpoint, a black-holed
 * network path). The functions are built exactly as in Lambda, from the environment the construct
 * deploys (functionEnvironment: the brake read from the table's mirror of the parameter), with
 * their real clients, and the brake mirror as its Lambda entry builds it; the endpoints sit behind
 * a proxy that can stop answering. Every answer must come within the documented deadlines with the
 * documented outcome, never after a hang.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { createHandler, depsFromEnvironment } from '../../lambda/authorizer/handler';
import { functionEnvironment } from '../../lambda/gateway/api';
import { layerKey } from '../../lambda/engine/limiter';
import { bucketName, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';
import { createLimitsHandler, limitsDepsFromEnvironment } from '../../lambda/limits/handler';
import { createProxyHandler, proxyDepsFromEnvironment } from '../../lambda/proxy/handler';
import { dynamoEndpoint, ledgerTableName, tableName, testStore, uniqueKey } from '../support/dynamo';
import { authorizerEvent, lambdaContext, proxyEvent } from '../support/events';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy';
import { localFunctionEnvironment } from '../support/function-environment';

installLambdaStreamingGlobals();
const CHAT = '/v1/chat/completions';
const TOKENS = tokensPerDay(100_000);
const rawConfig = {
  plans: {
    team: { tenant: [requestsPerMinute(100), TOKENS], user: [requestsPerMinute(50)] },
    open: { tenant: [requestsPerMinute(100)], user: [requestsPerMinute(50)] },
  },
  endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
};
/** Well past every deadline (DynamoDB 1 s per operation, SSM 0.5 s, Secrets Manager 2 s), far short of a hang. */
const NEVER_A_HANG_MS = 4_000;

let ssm: SsmLocal;
let dynamo: FaultProxy;
let ssmProxy: FaultProxy;
let upstream: UpstreamStandIn;
const brakeName = `/test/${uniqueKey('brake')}`;
const secretName = `test/${uniqueKey('secret')}`;
const saved = { ...process.env };

beforeAll(async () => {
  ssm = await startSsmLocal();
  ssm.secrets.set(secretName, 'sk-upstream');
  dynamo = await startFaultProxy(dynamoEndpoint());
  ssmProxy = await startFaultProxy(ssm.endpoint);
  upstream = await startUpstreamStandIn({ usage: { prompt_tokens: 5, completion_tokens: 3 } });
  Object.assign(process.env, {
    // What the construct deploys (BRAKE_SOURCE=mirror among it), then the local endpoints.
    ...functionEnvironment({
      tableName: tableName(),
      ledgerTableName: ledgerTableName(),
      brakeParameterName: brakeName,
      settings: {},
    }),
    ...localFunctionEnvironment({
      tableName: tableName(),
      brakeParameterName: brakeName,
      config: rawConfig,
      dynamoEndpoint: dynamo.endpoint,
      ssmEndpoint: ssmProxy.endpoint,
    }),
    UPSTREAM_BASE_URL: upstream.baseUrl,
    UPSTREAM_API_KEY_SECRET: secretName,
  });
});
afterAll(async () => {
  process.env = saved;
  await upstream.stop();
  await dynamo.stop();
  await ssmProxy.stop();
  await ssm.stop();
});

async function caller(plan = 'team') {
  dynamo.mode = 'pass';
  ssmProxy.mode = 'pass';
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  const apiKey = `sk-${uniqueKey('key')}`;
  await putTenant(client, tableName(), { id: tenant, plan });
  await putApiKey(client, tableName(), apiKey, { tenant, user: 'alice', status: 'active' });
  return { tenant, event: authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } }) };
}

/** Runs `fn`, returning its outcome and how long it took. */
async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: Error }> {
  const started = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error: error as Error };
  }
}

const authorizer = () => createHandler(depsFromEnvironment());

/** The brake mirror's Lambda entry (lambda/brake-mirror/index.ts), built from the environment as Lambda builds it. */
const mirror = async () => (await import('../../lambda/brake-mirror/index')).handler();
let brakeVersion = 0;
/** An operator writes the brake and the mirror copies it (EventBridge's change event runs the mirror). */
async function setBrake(value: 'on' | 'off') {
  ssm.parameters.set(brakeName, { value, version: ++brakeVersion, modified: Date.now() });
  await mirror();
}

describe('authorizer', () => {
  it('SSM hung: the mirror gives up in time, and a cold authorizer reads the last mirrored brake (on) from the table', async () => {
    const c = await caller();
    await setBrake('on');
    ssmProxy.mode = 'hang';
    const run = await timed(mirror);
    expect(run.error?.name).toBe('TimeoutError'); // the next run (once a minute) copies the parameter again
    expect(run.ms).toBeLessThan(NEVER_A_HANG_MS);
    const out = await timed(() => authorizer()(c.event, lambdaContext()));
    expect(out.value?.context).toMatchObject({ code: 'brake' });
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
    ssmProxy.mode = 'pass';
    await setBrake('off');
  });

  it('DynamoDB hung after the brake was seen on, the key cached: the mirror read gives up, the last known state holds (denied)', async () => {
    const c = await caller();
    await setBrake('on');
    const handler = authorizer();
    const first = await handler(c.event, lambdaContext());
    expect(first.context).toMatchObject({ code: 'brake' });
    dynamo.mode = 'hang';
    const out = await timed(() => handler(c.event, lambdaContext()));
    expect(out.value?.context).toMatchObject({ code: 'brake' });
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
    dynamo.mode = 'pass';
    await setBrake('off');
  });

  it('DynamoDB hung at a cold start: the key cannot be checked, so the authorizer fails (API Gateway: 503) in time', async () => {
    const c = await caller();
    dynamo.mode = 'hang';
    const out = await timed(() => authorizer()(c.event, lambdaContext()));
    expect(out.error?.message).toBe('Rate limiter unavailable');
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
  });

  it('DynamoDB and SSM hung with the key cached: closed layers fail (503) in time, open layers let the request through', async () => {
    for (const [plan, failureMode] of [
      ['team', 'closed'],
      ['open', 'open'],
    ] as const) {
      const c = await caller(plan);
      process.env.LIMITER_CONFIG = JSON.stringify({
        ...rawConfig,
        failureModes: { tenant: failureMode, user: failureMode },
      });
      const handler = authorizer();
      expect((await handler(c.event, lambdaContext())).policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
      dynamo.mode = 'hang';
      ssmProxy.mode = 'hang';
      const out = await timed(() => handler(c.event, lambdaContext()));
      expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
      if (failureMode === 'closed') expect(out.error?.message).toBe('Rate limiter unavailable');
      else expect(out.value?.context).toMatchObject({ failedOpen: 'tenant,user' });
    }
    process.env.LIMITER_CONFIG = JSON.stringify(rawConfig);
  });
});

describe('proxy', () => {
  const send = (tenant: string) =>
    invokeStreaming(
      createProxyHandler(proxyDepsFromEnvironment()),
      proxyEvent({
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        authorizer: { tenant, user: 'alice', shard: '0' },
      }),
      lambdaContext('proxy'),
    );
  const tokensSpent = async (tenant: string) => {
    const store = testStore();
    const outcome = await store.peekItem(layerKey.tenant({ tenant, user: 'alice' }), [
      { name: bucketName(TOKENS), limit: TOKENS.limit, cost: 1 },
    ]);
    return 100_000 - outcome.decisions[0]!.remaining;
  };

  it('Secrets Manager hung: 503 upstream_key_unavailable in time, and the reservation is refunded before the answer', async () => {
    const c = await caller();
    const before = upstream.requests.length;
    ssmProxy.mode = 'hang'; // the local endpoint serves SSM and Secrets Manager
    const out = await timed(() => send(c.tenant));
    expect(out.value?.statusCode).toBe(503);
    expect(JSON.parse(out.value!.body).error.code).toBe('upstream_key_unavailable');
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
    expect(await tokensSpent(c.tenant)).toBe(0);
    expect(upstream.requests.length).toBe(before);
  });

  it('DynamoDB hung: 503 limiter_unavailable in time, no upstream call', async () => {
    const c = await caller();
    const before = upstream.requests.length;
    dynamo.mode = 'hang';
    const out = await timed(() => send(c.tenant));
    expect(out.value?.statusCode).toBe(503);
    expect(JSON.parse(out.value!.body).error.code).toBe('limiter_unavailable');
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('GET /v1/limits', () => {
  it('DynamoDB hung: a 5xx in OpenAI’s shape in time', async () => {
    const c = await caller();
    const handler = createLimitsHandler(limitsDepsFromEnvironment());
    dynamo.mode = 'hang';
    const out = await timed(() =>
      handler(
        proxyEvent({ route: '/v1/limits', authorizer: { tenant: c.tenant, user: 'alice' } }),
        lambdaContext('limits'),
      ),
    );
    expect(out.value?.statusCode).toBeGreaterThanOrEqual(500);
    expect(JSON.parse(out.value!.body).error.type).toBe('api_error');
    expect(out.ms).toBeLessThan(NEVER_A_HANG_MS);
  });
});
