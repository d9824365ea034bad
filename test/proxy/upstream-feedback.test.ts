/**
 * The upstream's rate limits fed back (lambda/proxy/upstream-feedback.ts): a provider's 429 or its
 * "nothing left" headers cool the model down for every container, within bounds a lying provider
 * cannot stretch. Through the proxy built from its environment, two containers sharing DynamoDB
 * Local, and the stand-in upstream.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_PREFIX, TABLE } from '../../lambda/engine/constants';
import { requestsPerMinute } from '../../lambda/engine/plans';
import { createProxyHandler, proxyDepsFromEnvironment } from '../../lambda/proxy/handler';
import { durationHeaderMs, exhaustedUntil } from '../../lambda/proxy/upstream-feedback';
import { putTenant } from '../../lambda/runtime/directory';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';
import { dynamoEndpoint, tableName, uniqueKey } from '../support/dynamo';
import { lambdaContext, proxyEvent } from '../support/events';
import { localFunctionEnvironment } from '../support/function-environment';

const CHAT = '/v1/chat/completions';
const headers = (h: Record<string, string>) => new Headers(h);

describe('what the provider says is left', () => {
  it('reads Go-style reset durations', () => {
    expect(['1s', '6m0s', '20ms', '1h2m3.5s', '0s'].map(durationHeaderMs)).toEqual([1_000, 360_000, 20, 3_723_500, 0]);
    expect(['', 'soon', '5', '1s later', null].map((v) => durationHeaderMs(v as string | null))).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('cools down when no request or no token is left, until the reset, at most the cap', () => {
    const now = 1_000_000;
    const cap = 10_000;
    expect(
      exhaustedUntil(headers({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '2s' }), now, cap),
    ).toBe(now + 2_000);
    expect(
      exhaustedUntil(headers({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '300ms' }), now, cap),
    ).toBe(now + 300);
    expect(
      exhaustedUntil(
        headers({
          'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-requests-reset': new Date(now + 4_000).toISOString(),
        }),
        now,
        cap,
      ),
    ).toBe(now + 4_000);
    // A reset an hour away is believed for 10 s at most; no reset given: a second.
    expect(
      exhaustedUntil(headers({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1h' }), now, cap),
    ).toBe(now + cap);
    expect(exhaustedUntil(headers({ 'x-ratelimit-remaining-requests': '0' }), now, cap)).toBe(now + 1_000);
    // A reset in plain seconds is seconds (not a year of Date.parse).
    expect(
      exhaustedUntil(headers({ 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '6' }), now, cap),
    ).toBe(now + 6_000);
    // Something left (a large request's tokens too: it must not stop the model for the small ones),
    // or nothing said, or nonsense: no cooldown.
    for (const h of <Record<string, string>[]>[
      { 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-remaining-tokens': '1' },
      {},
      { 'x-ratelimit-remaining-requests': '-1' },
      { 'x-ratelimit-remaining-tokens': 'lots' },
    ])
      expect(exhaustedUntil(headers(h), now, cap)).toBeUndefined();
  });
});

/**
 * One model on the stand-in behind `count` proxy containers built from their environment (each
 * reads the model's cooldown item at most once a second), a tenant, and the stand-in itself.
 */
function proxyStack(label: string, count: number) {
  const stack = {
    model: `gpt-${label}-${uniqueKey('m')}`,
    tenant: uniqueKey('tenant'),
    upstream: undefined as unknown as UpstreamStandIn,
    containers: [] as ReturnType<typeof createProxyHandler>[],
  };
  let ssm: SsmLocal;
  const saved = { ...process.env };
  beforeAll(async () => {
    installLambdaStreamingGlobals();
    ssm = await startSsmLocal();
    stack.upstream = await startUpstreamStandIn({ usage: { prompt_tokens: 5, completion_tokens: 3 } });
    ssm.parameters.set(`/${label}/brake`, { value: 'off', version: 1, modified: Date.now() });
    ssm.secrets.set(`${label}-key`, 'sk-upstream');
    Object.assign(process.env, {
      ...localFunctionEnvironment({
        tableName: tableName(),
        brakeParameterName: `/${label}/brake`,
        config: {
          plans: { team: { user: [requestsPerMinute(1_000)] } },
          endpoints: { [CHAT]: { models: { [stack.model]: { inputPerMillion: 1, outputPerMillion: 1 } } } },
        },
        dynamoEndpoint: dynamoEndpoint(),
        ssmEndpoint: ssm.endpoint,
      }),
      UPSTREAM_BASE_URL: stack.upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: `${label}-key`,
    });
    await putTenant(localClient(dynamoEndpoint()), tableName(), { id: stack.tenant, plan: 'team' });
    stack.containers = Array.from({ length: count }, () => createProxyHandler(proxyDepsFromEnvironment()));
  });
  afterAll(async () => {
    process.env = saved;
    await stack.upstream?.stop();
    await ssm?.stop();
  });
  return stack;
}

describe('a model cooling down, through the proxy', () => {
  // Two containers: what one learns, the other acts on.
  const stack = proxyStack('cool', 2);
  const MODEL = stack.model;

  const ask = async (container: number, user = 'ann') => {
    const res = await invokeStreaming(
      stack.containers[container]!,
      proxyEvent({
        route: CHAT,
        body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 },
        authorizer: { tenant: stack.tenant, user, shard: '0' },
      }),
      lambdaContext('proxy'),
    );
    const retryAfter = Object.entries(res.headers).find(([k]) => k.toLowerCase() === 'retry-after')?.[1];
    return { status: res.statusCode, retryAfter: Number(retryAfter ?? 0), body: res.body };
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const untilMs = async () =>
    Number(
      (
        await DynamoDBDocumentClient.from(localClient(dynamoEndpoint())).send(
          new GetCommand({ TableName: tableName(), Key: { [TABLE.partitionKey]: `${KEY_PREFIX.upstream}${MODEL}` } }),
        )
      ).Item?.untilMs ?? 0,
    );

  it("after the provider's 429, every container answers 429 upstream_rate_limited without calling it, until its Retry-After", async () => {
    stack.upstream.behaviour = { status: 429, retryAfter: '2' };
    expect((await ask(0)).status).toBe(429);
    stack.upstream.behaviour = { usage: { prompt_tokens: 5, completion_tokens: 3 } };
    const called = stack.upstream.requests.length;
    const other = await ask(1, 'bob');
    expect(other.status).toBe(429);
    expect(other.body).toContain('upstream_rate_limited');
    expect(other.retryAfter).toBeGreaterThanOrEqual(1);
    expect(other.retryAfter).toBeLessThanOrEqual(2);
    expect(stack.upstream.requests.length).toBe(called);
    await sleep(2_100);
    expect((await ask(1, 'bob')).status).toBe(200);
    expect(stack.upstream.requests.length).toBe(called + 1);
  });

  it('does not cool the model down for a request the provider finds too large for its limit at all', async () => {
    await sleep(1_100); // the cooldown before this test has ended, and every container has read so
    stack.upstream.behaviour = {
      status: 429,
      errorMessage: 'Request too large for the model on tokens per min (TPM): Limit 10000, Requested 30000.',
    };
    expect((await ask(0)).status).toBe(429);
    stack.upstream.behaviour = { usage: { prompt_tokens: 5, completion_tokens: 3 } };
    const called = stack.upstream.requests.length;
    expect((await ask(0)).status).toBe(200);
    expect(stack.upstream.requests.length).toBe(called + 1);
  });

  it('believes a Retry-After for a minute at most: a provider that says a day cannot stop the model for longer', async () => {
    stack.upstream.behaviour = { status: 429, retryAfter: '86400' };
    const before = Date.now();
    expect((await ask(0)).status).toBe(429);
    const until = await untilMs();
    expect(until - before).toBeGreaterThan(59_000);
    expect(until - Date.now()).toBeLessThanOrEqual(60_000);
    // The other container (once its second-old reading has expired) holds the model for the minute, not the day.
    await sleep(1_100);
    stack.upstream.behaviour = { usage: { prompt_tokens: 5, completion_tokens: 3 } };
    const called = stack.upstream.requests.length;
    const held = await ask(1);
    expect(held.status).toBe(429);
    expect(held.retryAfter).toBeGreaterThan(50);
    expect(held.retryAfter).toBeLessThanOrEqual(60);
    expect(stack.upstream.requests.length).toBe(called);
  });
});

describe('a model whose provider says nothing is left', () => {
  const stack = proxyStack('left', 1);

  const ask = async () =>
    (
      await invokeStreaming(
        stack.containers[0]!,
        proxyEvent({
          route: CHAT,
          body: { model: stack.model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10, stream: true },
          authorizer: { tenant: stack.tenant, user: 'ann', shard: '0' },
        }),
        lambdaContext('proxy'),
      )
    ).statusCode;

  it('answers the request that got the last one, and holds the next ones until the reset, at most 10 s', async () => {
    stack.upstream.behaviour = {
      usage: { prompt_tokens: 5, completion_tokens: 3 },
      headers: { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' },
    };
    expect(await ask()).toBe(200);
    const called = stack.upstream.requests.length;
    expect(await ask()).toBe(429);
    expect(stack.upstream.requests.length).toBe(called);
    await new Promise((r) => setTimeout(r, 1_100));
    stack.upstream.behaviour = { usage: { prompt_tokens: 5, completion_tokens: 3 } };
    expect(await ask()).toBe(200);
  });
});
