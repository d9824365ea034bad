import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Brake } from '../../lambda/runtime/brake';
import { Directory, putTenant } from '../../lambda/runtime/directory';
import { StoreUnavailableError } from '../../lambda/engine/errors';
import { Limiter, layerKey } from '../../lambda/engine/limiter';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { ATTR, KEY_PREFIX } from '../../lambda/engine/constants';
import { attributeName } from '../../lambda/engine/expressions';
import { tatMs } from '../../lambda/engine/gcra';
import { type TokenBucketLimit, tokenBucket } from '../../lambda/engine/limits';
import { bucketName, parseConfig, tokens, tokensPerDay, usdPerDay } from '../../lambda/engine/plans';
import { createProxyHandler } from '../../lambda/proxy/handler';
import { openAiDuration } from '../../lambda/proxy/headers';
import { countMessages } from '../../lambda/proxy/input-bound';
import { countText } from '../../lambda/proxy/tokenizer';
import { tableName, testStore, uniqueKey } from '../support/dynamo';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint } from '../support/dynamo';
import { lambdaContext, proxyEvent } from '../support/events';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { type Behaviour, startUpstreamStandIn } from '../../local/upstream-standin';

installLambdaStreamingGlobals();
const CHAT = '/v1/chat/completions';
const EMBED = '/v1/embeddings';
const USER_TOKENS = tokens(tokenBucket(10_000, 10_000 / 60));
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        team: { tenant: [tokensPerDay(1_000_000), usdPerDay(10)], user: [USER_TOKENS], outputReservation: 100 },
        short: { tenant: [tokensPerDay(1_000_000)], user: [USER_TOKENS], outputReservation: 10 },
      },
      endpoints: {
        [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } }, maxBodyBytes: 4096 },
        [EMBED]: { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
      },
    }),
  ),
);
const hello = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] };
const INPUT = countMessages(hello.messages, 'o200k_base');

let ssm: SsmLocal;
beforeAll(async () => {
  ssm = await startSsmLocal();
});
afterAll(() => ssm.stop());

async function setup(behaviour: Behaviour = {}) {
  const upstream = await startUpstreamStandIn(behaviour);
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  const ns = uniqueKey('ns');
  const logs: Record<string, unknown>[] = [];
  const log = (e: Record<string, unknown>) => logs.push(e);
  // Bucket time stands still in these tests, so every figure below is exact.
  const frozen = Date.now();
  const store = testStore({ clock: () => frozen });
  const limiter = new Limiter({ store, config, log, namespace: ns });
  const brakeName = `/test/${uniqueKey('brake')}`;
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      maxAttempts: 1,
    }),
    parameterName: brakeName,
    log,
  });
  const deps = {
    config,
    limiter,
    directory: new Directory({ client, tableName: tableName() }),
    brake,
    upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-upstream-secret-123456', idleTimeoutMs: 2_000 },
    settleBackoffMs: 5,
    log,
  };
  installLambdaStreamingGlobals();
  const handler = createProxyHandler(deps);
  const auth = {
    tenant,
    user: 'alice',
    shard: '0',
    plan: 'team',
    limit: '60',
    remaining: '59',
    reset: '1',
    policy: '"user_requests_per_minute";q=60;w=60',
    rateLimit: '"user_requests_per_minute";r=59;t=1',
    requestsLimit: '60',
    requestsRemaining: '59',
    requestsResetMs: '1000',
  };
  const send = (body: unknown, options: { route?: string; raw?: string; disconnectAfterChunks?: number } = {}) =>
    invokeStreaming(
      handler,
      proxyEvent({
        body,
        route: options.route ?? CHAT,
        authorizer: auth,
        ...(options.raw !== undefined ? { raw: options.raw } : {}),
      }),
      lambdaContext('proxy'),
      options,
    );
  const identity = { tenant, user: 'alice' };
  /** One request through a proxy built with some of its dependencies changed (the caller in its minimal context). */
  const sendWith = (changed: Partial<Parameters<typeof createProxyHandler>[0]>, body: unknown) =>
    invokeStreaming(
      createProxyHandler({ ...deps, ...changed }),
      proxyEvent({ body, authorizer: { tenant, user: 'alice', shard: '0' } }),
      lambdaContext('proxy'),
    );
  /** Tokens spent on the user's per-minute bucket (capacity minus remaining, with the refill since taken out by a frozen test clock). */
  const userRemaining = async () =>
    (
      await store.peekItem(layerKey.user(identity, ns), [
        { name: bucketName(USER_TOKENS), limit: USER_TOKENS.limit, cost: 1 },
      ])
    ).decisions[0]!.remaining;
  const tenantRemaining = async () =>
    (
      await store.peekItem(layerKey.tenant(identity, ns), [
        { name: bucketName(tokensPerDay(1_000_000)), limit: tokensPerDay(1_000_000).limit, cost: 1 },
      ])
    ).decisions[0]!.remaining;
  return {
    upstream,
    send,
    sendWith,
    logs,
    limiter,
    userRemaining,
    tenantRemaining,
    identity,
    ns,
    setBrake: (v: string) => ssm.parameters.set(brakeName, { value: v, version: 1, modified: Date.now() }),
    deps,
  };
}

const spent = (remaining: number) => 10_000 - remaining;

describe('streaming chat', () => {
  // Lambda ends an invocation at its timeout, settlement or not: the proxy stops the upstream
  // early enough to settle and close the stream itself (lambda/proxy/handler.ts SETTLE_MARGIN_MS).
  it('cuts off a stream that runs into the function timeout, settles at least the reservation, and says why, before the timeout', async () => {
    const s = await setup({
      words: Array.from({ length: 40 }, (_, i) => ` w${i}`),
      delayMs: 200,
      usage: { prompt_tokens: INPUT, completion_tokens: 40 },
    });
    const started = Date.now();
    const timeoutMs = 4_000;
    const context = {
      ...lambdaContext('proxy'),
      getRemainingTimeInMillis: () => Math.max(0, started + timeoutMs - Date.now()),
    };
    const res = await invokeStreaming(
      createProxyHandler(s.deps),
      proxyEvent({
        body: { ...hello, stream: true },
        authorizer: { tenant: s.identity.tenant, user: 'alice', shard: '0' },
      }),
      context,
    );
    const tookMs = Date.now() - started;
    expect(res.statusCode).toBe(200);
    expect(tookMs).toBeLessThan(timeoutMs);
    expect(res.body).toContain(' w0');
    expect(res.body).not.toContain(' w39');
    expect(res.body.trim().split('\n\n').at(-1)).toMatch(/"code":"stream_deadline"/);
    expect(s.logs).toContainEqual(
      expect.objectContaining({ outcome: 'settled', why: 'invocation_deadline', result: 'settled' }),
    );
    // The provider may have generated past the cut: at least the reservation (input + 100) stays spent.
    expect(spent(await s.userRemaining())).toBeGreaterThanOrEqual(INPUT + 100);
  });

  it('streams chunks in order with rate-limit headers and settles the upstream usage', async () => {
    const s = await setup({
      words: ['Hello', ' there', '!'],
      usage: { prompt_tokens: INPUT - 1, completion_tokens: 3 },
    });
    const res = await s.send({ ...hello, stream: true });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers).toMatchObject({
      'x-ratelimit-limit-requests': '60',
      'x-ratelimit-remaining-requests': '59',
      'x-ratelimit-limit-tokens': '10000',
      'RateLimit-Policy': '"user_requests_per_minute";q=60;w=60',
    });
    expect(Number(res.headers['x-ratelimit-remaining-tokens'])).toBe(10_000 - INPUT - 100);
    const events = res.body.split('\n\n').filter(Boolean);
    expect(
      events.map((e) =>
        e === 'data: [DONE]' ? '[DONE]' : (JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? 'stop'),
      ),
    ).toEqual(['', 'Hello', ' there', '!', 'stop', '[DONE]']);
    // the upstream was asked for usage, with the secret key; the client did not ask, so the usage chunk was not forwarded
    expect(s.upstream.requests[0]).toMatchObject({
      path: '/v1/chat/completions',
      authorization: 'Bearer sk-upstream-secret-123456',
      body: { stream: true, stream_options: { include_usage: true } },
    });
    expect(res.body).not.toContain('"usage"');
    expect(spent(await s.userRemaining())).toBe(INPUT - 1 + 3);
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT - 1 + 3);
    await s.upstream.stop();
  });

  it('forwards the usage chunk when the client asked for it', async () => {
    const s = await setup({ usage: { prompt_tokens: 11, completion_tokens: 3 } });
    const res = await s.send({ ...hello, stream: true, stream_options: { include_usage: true } });
    expect(res.body).toContain('"usage":{"prompt_tokens":11,"completion_tokens":3');
    await s.upstream.stop();
  });

  it('counts the streamed text when the upstream reports no usage', async () => {
    const words = ['One', ' two', ' three', ' four'];
    const s = await setup({ words });
    await s.send({ ...hello, stream: true });
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + countText(words.join(''), 'o200k_base'));
    await s.upstream.stop();
  });

  it('passes each chunk on before the upstream has finished', async () => {
    const s = await setup({ words: ['a', 'b', 'c', 'd', 'e'], delayMs: 120 });
    const res = await s.send({ ...hello, stream: true });
    const content = res.chunks.filter((c) => c.text.includes('"content":"a"'));
    expect(content).toHaveLength(1);
    expect(res.chunks.at(-1)!.atMs - content[0]!.atMs).toBeGreaterThan(400);
    await s.upstream.stop();
  });

  it('settles the bound when the upstream fails midway (its usage never came), and says so in the stream', async () => {
    const s = await setup({ words: ['alpha', ' beta', ' gamma', ' delta'], failAfterChunks: 2 });
    const res = await s.send({ ...hello, stream: true });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('"content":"alpha"');
    expect(res.body).toContain('upstream_stream_failed');
    // The provider may have generated (and billed) up to the cap it was sent: the plan's 100.
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + 100);
    expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'usage_unknown' }));
    await s.upstream.stop();
  });

  it('settles the bound when the client disconnects (the usage never comes), and stops the upstream', async () => {
    const s = await setup({ words: ['w1', ' w2', ' w3', ' w4', ' w5', ' w6'], delayMs: 80 });
    const res = await s.send({ ...hello, stream: true }, { disconnectAfterChunks: 2 });
    expect(res.body).toContain('"content":"w1"');
    expect(res.body).not.toContain('w6');
    // The pipe to the client failed, and still the invocation ended only after settling (Lambda
    // freezes the sandbox when the handler returns): everything below holds the moment it returned.
    expect(res.error).toBeInstanceOf(Error);
    // The upstream call was aborted when the client left; its socket closes a few ticks later.
    await vi.waitFor(() => expect(s.upstream.aborted).toBe(1), { timeout: 5_000 });
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + 100);
    expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'settled', why: 'client_gone' }));
    await s.upstream.stop();
  });
});

describe('upstream errors', () => {
  it.each([
    [429, 429, 'upstream_rate_limited', 0],
    [500, 502, 'upstream_error', INPUT + 100],
    [503, 502, 'upstream_error', INPUT + 100],
    [504, 502, 'upstream_error', INPUT + 100],
    [408, 408, 'upstream_rejected', INPUT + 100],
  ])(
    'upstream %i answers %i (%s): a refusal is refunded, a failure (a gateway that gave up on a generating model) settles the bound, %i',
    async (upstreamStatus, status, code, settled) => {
      const s = await setup({ status: upstreamStatus, retryAfter: '7' });
      const res = await s.send({ ...hello, stream: true });
      expect(res.statusCode).toBe(status);
      expect(JSON.parse(res.body).error).toMatchObject({ code });
      if (status === 429) expect(res.headers['Retry-After']).toBe('7');
      expect(1_000_000 - (await s.tenantRemaining())).toBe(settled);
      expect(s.upstream.requests).toHaveLength(1); // no blind retry
      await s.upstream.stop();
    },
  );

  it('answers 504 when the upstream is too slow to answer, and keeps the reservation (the provider may be billing)', async () => {
    const s = await setup({ delayMs: 500 });
    const res = await s.sendWith({ upstream: { ...s.deps.upstream, firstByteTimeoutMs: 100 } }, hello);
    expect(res.statusCode).toBe(504);
    expect(JSON.parse(res.body).error.code).toBe('upstream_timeout');
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + 100);
    await s.upstream.stop();
  });
});

describe('non-streamed requests', () => {
  it('answers a chat completion as JSON and settles its usage', async () => {
    const s = await setup({ usage: { prompt_tokens: 9, completion_tokens: 3 } });
    const res = await s.send(hello);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body).choices[0].message.content).toBe('Hello there!');
    expect(1_000_000 - (await s.tenantRemaining())).toBe(12);
    await s.upstream.stop();
  });

  it('never settles below the output it passed on: an upstream that reports less is charged what was seen', async () => {
    const s = await setup({ words: ['Hello', ' there', '!'], usage: { prompt_tokens: 9, completion_tokens: 1 } });
    const res = await s.send(hello);
    expect(JSON.parse(res.body).choices[0].message.content).toBe('Hello there!');
    expect(1_000_000 - (await s.tenantRemaining())).toBe(9 + countText('Hello there!', 'o200k_base'));
    await s.upstream.stop();
  });

  it('settles embeddings on the reported prompt tokens', async () => {
    const s = await setup({ usage: { prompt_tokens: 5, completion_tokens: 0 } });
    const input = 'embed me, please: a sentence of a dozen tokens or so';
    expect(countText(input, 'cl100k_base')).toBeGreaterThan(5);
    const res = await s.send({ model: 'text-embedding-3-small', input }, { route: EMBED });
    expect(res.statusCode).toBe(200);
    expect(1_000_000 - (await s.tenantRemaining())).toBe(5);
    await s.upstream.stop();
  });
});

describe('bad input: 400 naming the field, nothing debited, no upstream call', () => {
  it.each([
    ['not JSON', { raw: '{"model":' }, null, 'invalid_json'],
    ['an array body', { raw: '[1,2]' }, null, 'invalid_json'],
    ['no model', { body: { messages: hello.messages } }, 'model', 'missing_required_parameter'],
    ['a model that is not allowed', { body: { ...hello, model: 'gpt-4-32k' } }, 'model', 'model_not_allowed'],
    ['no messages', { body: { model: 'gpt-4o-mini' } }, 'messages', 'missing_required_parameter'],
    [
      'a message of the wrong type',
      { body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 42 }] } },
      'messages[0].content',
      'invalid_value',
    ],
    ['stream as a string', { body: { ...hello, stream: 'yes' } }, 'stream', 'invalid_value'],
    ['n > 1', { body: { ...hello, n: 2 } }, 'n', 'n_not_allowed'],
    ['a negative max_tokens', { body: { ...hello, max_tokens: -5 } }, 'max_tokens', 'invalid_value'],
    [
      'a body over the size limit',
      { body: { ...hello, messages: [{ role: 'user', content: 'x'.repeat(5000) }] } },
      null,
      'request_too_large',
    ],
    // Fields through which another server would take another cap, model or price than the one reserved.
    ["llama.cpp's n_predict", { body: { ...hello, n_predict: 100_000 } }, 'n_predict', 'unsupported_parameter'],
    ["Ollama's num_predict", { body: { ...hello, num_predict: 100_000 } }, 'num_predict', 'unsupported_parameter'],
    [
      "TGI's max_new_tokens",
      { body: { ...hello, max_new_tokens: 100_000 } },
      'max_new_tokens',
      'unsupported_parameter',
    ],
    ["LiteLLM's fallbacks", { body: { ...hello, fallbacks: ['gpt-4o'] } }, 'fallbacks', 'unsupported_parameter'],
    ["OpenRouter's models", { body: { ...hello, models: ['openai/o1-pro'] } }, 'models', 'unsupported_parameter'],
    [
      'web search (a per-call fee)',
      { body: { ...hello, web_search_options: {} } },
      'web_search_options',
      'unsupported_parameter',
    ],
    ['a model field spelt in capitals', { body: { ...hello, MODEL: 'llama3.1:405b' } }, 'MODEL', 'duplicate_parameter'],
    ['a cap field spelt in capitals', { body: { ...hello, Max_Tokens: 100_000 } }, 'Max_Tokens', 'duplicate_parameter'],
    [
      'an earlier audio answer for a model without audio prices',
      { body: { ...hello, messages: [...hello.messages, { role: 'assistant', audio: { id: 'audio_abc123' } }] } },
      'messages[1].audio',
      'unsupported_content_part',
    ],
  ])('%s', async (_name, request, param, code) => {
    const s = await setup();
    const res = await s.send((request as { body?: unknown }).body, request as { raw?: string });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'invalid_request_error', param, code });
    expect(await s.tenantRemaining()).toBe(1_000_000);
    expect(s.upstream.requests).toHaveLength(0);
    await s.upstream.stop();
  });
});

describe('reservation', () => {
  it('answers 429 with the contract and calls no upstream when the tokens are not there', async () => {
    const s = await setup();
    await s.limiter.reserve(
      s.identity,
      { id: s.identity.tenant, plan: 'team' },
      CHAT,
      { tokens: 9_990, microUsd: 0 },
      0,
    );
    const res = await s.send({ ...hello, stream: true });
    expect(res.statusCode).toBe(429);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'rate_limit_exceeded', code: 'user_tokens_per_minute' });
    // 10 tokens left of 10,000 refilling 10,000 a minute (6 ms a token); INPUT + 100 are needed.
    expect(res.headers['Retry-After']).toBe(String(Math.max(1, Math.ceil((6 * (INPUT + 100 - 10)) / 1000))));
    expect(res.headers['X-RateLimit-Limit']).toBe('10000');
    expect(res.headers['X-RateLimit-Remaining']).toBe('10');
    expect(s.upstream.requests).toHaveLength(0);
    await s.upstream.stop();
  });

  it('refuses with 400 a request that could never fit the limit', async () => {
    const s = await setup();
    const res = await s.send({ model: 'text-embedding-3-small', input: 'word '.repeat(12_000) }, { route: EMBED });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'request_too_large_for_limit', param: 'input' });
    expect(await s.tenantRemaining()).toBe(1_000_000);
    expect(s.upstream.requests).toHaveLength(0);
    await s.upstream.stop();
  });

  it('keeps concurrent long generations of one user within the reservation policy', async () => {
    // Each request reserves input + 100 output; the upstream generates 300. Ten at once on a
    // 10,000-token bucket... with a bucket of 1,000 only a few fit, and their overrun is bounded.
    const s = await setup({ words: Array.from({ length: 300 }, () => ' x'), delayMs: 1 });
    const small = tokens(tokenBucket(1_000, 1_000 / 86_400));
    const cfg = parseConfig({
      ...JSON.parse(JSON.stringify(config)),
      plans: { team: { user: [small], outputReservation: 100 } },
    });
    const frozen = Date.now();
    const limiter = new Limiter({
      store: testStore({ clock: () => frozen }),
      config: cfg,
      log: () => {},
      namespace: s.ns,
    });
    const handler = createProxyHandler({ ...s.deps, config: cfg, limiter });
    const reserve = INPUT + 100;
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        invokeStreaming(
          handler,
          proxyEvent({
            body: { ...hello, stream: true },
            authorizer: { tenant: s.identity.tenant, user: 'alice', shard: '0' },
          }),
          lambdaContext('proxy'),
        ),
      ),
    );
    const admitted = results.filter((r) => r.statusCode === 200).length;
    expect(admitted).toBe(Math.floor(1_000 / reserve));
    expect(s.upstream.requests).toHaveLength(admitted);
    const used = admitted * (INPUT + countText(' x'.repeat(300), 'o200k_base'));
    const remaining = (
      await testStore({ clock: () => frozen }).peekItem(layerKey.user(s.identity, s.ns), [
        { name: bucketName(small), limit: small.limit, cost: 1 },
      ])
    ).decisions[0]!;
    // Spend beyond the limit is the overrun of the admitted requests past their reservation: debt,
    // which `remaining` (never below 0) cannot show. The bucket's own state does: read it raw.
    expect(remaining.remaining).toBe(0);
    const raw = await localClient(dynamoEndpoint()).send(
      new GetItemCommand({
        TableName: tableName(),
        Key: { pk: { S: KEY_PREFIX.bucket + layerKey.user(s.identity, s.ns) } },
        ConsistentRead: true,
      }),
    );
    const tat = Number(raw.Item![attributeName(bucketName(small), ATTR.tat)]!.N);
    // The bucket is full at `frozen` + 1,000 tokens' refill; every token further is one refill (86.4 s) of debt.
    const debt = (tatMs({ tat }, small.limit as TokenBucketLimit)! - frozen) / 86_400 - 1_000;
    expect(Math.round(debt)).toBe(used - 1_000);
    expect(used - 1_000).toBeGreaterThan(0);
    await s.upstream.stop();
  });
});

describe('settlement', () => {
  it('retries a DynamoDB hiccup and still settles exactly once', async () => {
    const s = await setup({ usage: { prompt_tokens: 8, completion_tokens: 3 } });
    const real = s.limiter.settle.bind(s.limiter);
    let failures = 1;
    s.limiter.settle = async (...args: Parameters<typeof real>) => {
      const result = await real(...args); // the write lands...
      if (failures-- > 0) throw new StoreUnavailableError('TransactWriteItems', 'ledger'); // ...but the answer is lost
      return result;
    };
    await s.send(hello);
    expect(1_000_000 - (await s.tenantRemaining())).toBe(11);
    expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'settle_retry' }));
    expect(s.logs).toContainEqual(
      expect.objectContaining({ outcome: 'settled', result: 'already-settled', attempts: 2 }),
    );
    await s.upstream.stop();
  });
});

describe('brake and secrets', () => {
  it('checks the brake again: braked means 429 and no upstream call', async () => {
    const s = await setup();
    s.setBrake('{"enabled": true, "reason": "drill"}');
    const res = await s.send(hello);
    expect(res.statusCode).toBe(429);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'brake' });
    expect(s.upstream.requests).toHaveLength(0);
    await s.upstream.stop();
  });

  it('never puts the upstream key or the prompt into a log line or a response', async () => {
    const s = await setup({ usage: { prompt_tokens: 9, completion_tokens: 2 } });
    const secretPrompt = 'my-very-private-prompt-text';
    const res = await s.send({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: secretPrompt }],
      stream: true,
    });
    const logged = JSON.stringify(s.logs);
    expect(logged).not.toContain('sk-upstream-secret-123456');
    expect(logged).not.toContain(secretPrompt);
    expect(JSON.stringify(res.headers)).not.toContain('sk-upstream');
    await s.upstream.stop();
  });
});

describe('usage the upstream reports is checked before it is settled', () => {
  it('an upstream that ignored the cap it was sent is charged what it reports, flagged', async () => {
    for (const stream of [false, true]) {
      const s = await setup({
        words: ['Hello', ' there', '!'],
        usage: { prompt_tokens: INPUT, completion_tokens: 500 },
      });
      const res = await s.send({ ...hello, max_tokens: 50, stream });
      expect(res.statusCode).toBe(200);
      expect(s.upstream.requests[0]!.body).toMatchObject({ max_completion_tokens: 50 });
      expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + 500);
      expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'upstream_ignored_cap', cap: 50 }));
      await s.upstream.stop();
    }
  });

  const answer = countText('Hello there!', 'o200k_base');
  it.each([
    ['no prompt_tokens', { completion_tokens: answer }, INPUT + answer, ['prompt_tokens']],
    ['prompt_tokens as a string', { prompt_tokens: '10', completion_tokens: 3 }, INPUT + 3, ['prompt_tokens']],
    ['a negative completion', { prompt_tokens: INPUT, completion_tokens: -5 }, INPUT + 50, ['completion_tokens']],
    ['a fractional completion', { prompt_tokens: INPUT, completion_tokens: 2.5 }, INPUT + 50, ['completion_tokens']],
    [
      'more completion tokens than the model can produce',
      { prompt_tokens: INPUT, completion_tokens: 10_000_000 },
      INPUT + 50,
      ['completion_tokens'],
    ],
    [
      'more prompt tokens than the request holds',
      { prompt_tokens: 1_000_000, completion_tokens: 3 },
      INPUT + 3,
      ['prompt_tokens'],
    ],
    ['nulls', { prompt_tokens: null, completion_tokens: null }, INPUT + 50, ['prompt_tokens', 'completion_tokens']],
  ])(
    '%s: settles that field at its bound (never below what was seen), logged, whole numbers in the bucket',
    async (_name, usage, expected, fields) => {
      for (const stream of [false, true]) {
        const s = await setup({ words: ['Hello', ' there', '!'], usage });
        const res = await s.send({ ...hello, max_tokens: 50, stream });
        expect(res.statusCode).toBe(200);
        expect(1_000_000 - (await s.tenantRemaining())).toBe(expected);
        expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'usage_rejected', fields }));
        expect(s.logs).toContainEqual(
          expect.objectContaining({ outcome: 'settled', usedTokens: expected, result: 'settled' }),
        );
        await s.upstream.stop();
      }
    },
  );
});

describe('a tenant whose configuration is broken', () => {
  it('answers 500 plan_unknown in OpenAI’s shape, without Retry-After, calling nothing upstream', async () => {
    const s = await setup({ words: ['x'], usage: { prompt_tokens: 1, completion_tokens: 1 } });
    await putTenant(localClient(dynamoEndpoint()), tableName(), { id: s.identity.tenant, plan: 'platinum' });
    const handler = createProxyHandler({
      ...s.deps,
      directory: new Directory({ client: localClient(dynamoEndpoint()), tableName: tableName() }),
    });
    const res = await invokeStreaming(
      handler,
      proxyEvent({
        body: hello,
        authorizer: { tenant: s.identity.tenant, user: 'alice', shard: '0', configError: 'plan_unknown' },
      }),
      lambdaContext('proxy'),
    );
    expect(res.statusCode).toBe(500);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'api_error', code: 'plan_unknown' });
    expect(res.headers['Retry-After']).toBeUndefined();
    expect(s.upstream.requests).toHaveLength(0);
  });
});

describe('upstream credentials', () => {
  it.each([401, 403])(
    'an upstream %i is a 502 upstream_auth_failed with none of the provider’s text, refunded',
    async (status) => {
      const s = await setup({ status });
      const res = await s.send(hello);
      expect(res.statusCode).toBe(502);
      const error = JSON.parse(res.body).error;
      expect(error).toMatchObject({ type: 'api_error', code: 'upstream_auth_failed' });
      expect(res.body).not.toContain('stand-in says');
      expect(await s.tenantRemaining()).toBe(1_000_000);
      expect(s.logs).toContainEqual(
        expect.objectContaining({ level: 'error', outcome: 'upstream_auth_failed', status }),
      );
      await s.upstream.stop();
    },
  );
});

describe('upstream failures the validation cannot foresee', () => {
  it.each([400, 404, 422])(
    'an upstream %i passes the provider’s own error on in OpenAI’s shape, refunded in full',
    async (status) => {
      const s = await setup({ status });
      const res = await s.send({ ...hello, stream: true });
      expect(res.statusCode).toBe(status);
      expect(JSON.parse(res.body).error).toEqual({
        message: `stand-in says ${status}`,
        type: 'invalid_request_error',
        param: null,
        code: 'upstream_rejected',
      });
      expect(await s.tenantRemaining()).toBe(1_000_000);
      expect(spent(await s.userRemaining())).toBe(0);
      await s.upstream.stop();
    },
  );

  it('an upstream that cannot be reached is a 502 upstream_unreachable, refunded in full', async () => {
    const s = await setup();
    await s.upstream.stop(); // nothing listens there any more
    const res = await s.sendWith({}, { ...hello, stream: true });
    expect(res.statusCode).toBe(502);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'api_error', code: 'upstream_unreachable' });
    expect(await s.tenantRemaining()).toBe(1_000_000);
  });

  it('a stream that goes quiet past the idle timeout is cut off, said so, and keeps the reservation', async () => {
    const s = await setup({ words: ['first', ' second'], delayMs: 400 });
    const res = await s.sendWith({ upstream: { ...s.deps.upstream, idleTimeoutMs: 150 } }, { ...hello, stream: true });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain('second');
    expect(res.body.trim().split('\n\n').at(-1)).toMatch(/"code":"upstream_stream_failed"/);
    expect(s.logs).toContainEqual(expect.objectContaining({ outcome: 'settled', why: 'upstream_timeout' }));
    // The provider may still be generating: the reservation (input + 100 expected output) stays spent.
    expect(1_000_000 - (await s.tenantRemaining())).toBe(INPUT + 100);
    await s.upstream.stop();
  });
});

describe('reservation sizing and dollars', () => {
  const GLOBAL_USD = usdPerDay(100);
  const TENANT_USD = usdPerDay(10);
  const PRICE = { inputPerMillion: 0.15, outputPerMillion: 0.6 };
  /** A proxy on a config whose chat endpoint allows n > 1 and has a global usd limit in one shard. */
  async function sizing(
    s: Awaited<ReturnType<typeof setup>>,
    firstByteTimeoutMs?: number,
    models: Record<string, Record<string, unknown>> = {},
  ) {
    const raw = JSON.parse(JSON.stringify(config));
    raw.endpoints[CHAT].allowN = true;
    Object.assign(raw.endpoints[CHAT].models, models);
    const cfg = parseConfig({ ...raw, global: { limits: [GLOBAL_USD], shards: 1 } });
    const frozen = Date.now();
    const store = testStore({ clock: () => frozen });
    const limiter = new Limiter({ store, config: cfg, log: () => {}, namespace: s.ns });
    const changed = {
      config: cfg,
      limiter,
      upstream: { ...s.deps.upstream, ...(firstByteTimeoutMs ? { firstByteTimeoutMs } : {}) },
    };
    const spentOn = async (key: string, spec: typeof TENANT_USD) => {
      const d = (await store.peekItem(key, [{ name: bucketName(spec), limit: spec.limit, cost: 1 }])).decisions[0]!;
      return d.limit - d.remaining;
    };
    return {
      send: (body: unknown) => s.sendWith(changed, body),
      tenantTokens: () => spentOn(layerKey.tenant(s.identity, s.ns), tokensPerDay(1_000_000)),
      tenantMicroUsd: () => spentOn(layerKey.tenant(s.identity, s.ns), TENANT_USD),
      globalMicroUsd: () => spentOn(layerKey.global(0, s.ns), GLOBAL_USD),
    };
  }

  // The upstream never answers in time, so the reservation is what stays spent: it is measured here.
  it.each([
    ['no max_tokens: the plan’s outputReservation', {}, 100],
    ['max_tokens below it', { max_tokens: 30 }, 30],
    ['max_completion_tokens equal to max_tokens', { max_tokens: 40, max_completion_tokens: 40 }, 40],
    ['max_tokens above the plan’s default: the client’s cap, reserved whole', { max_tokens: 5_000 }, 5_000],
    ['n = 3 with max_tokens 20: per choice', { n: 3, max_tokens: 20 }, 60],
  ])('reserves input + the output cap, %s', async (_name, extra, output) => {
    const s = await setup({ delayMs: 400 });
    const p = await sizing(s, 100);
    const res = await p.send({ ...hello, ...extra });
    expect(res.statusCode).toBe(504);
    expect(await p.tenantTokens()).toBe(INPUT + output);
    // Micro-dollars from the model's prices, on the tenant's and the global usd limits alike (a
    // fractional charge shows as the next whole micro-dollar).
    const microUsd = INPUT * PRICE.inputPerMillion + output * PRICE.outputPerMillion;
    expect(await p.tenantMicroUsd()).toBe(Math.ceil(microUsd));
    expect(await p.globalMicroUsd()).toBe(Math.ceil(microUsd));
    await s.upstream.stop();
  });

  it('settles dollars on the usage the upstream reports, on the tenant and the global limit', async () => {
    const s = await setup({ words: ['Hi'], usage: { prompt_tokens: INPUT, completion_tokens: 2_000 } });
    const p = await sizing(s);
    const res = await p.send({ ...hello, stream: true, max_tokens: 2_000 });
    expect(res.statusCode).toBe(200);
    // INPUT x $0.15 + 2,000 x $0.60 per million tokens, in micro-dollars (the fraction shows as the next whole one).
    const microUsd = Math.ceil(INPUT * PRICE.inputPerMillion + 2_000 * PRICE.outputPerMillion);
    expect(microUsd).toBeGreaterThan(1_200);
    expect(await p.tenantMicroUsd()).toBe(microUsd);
    expect(await p.globalMicroUsd()).toBe(microUsd);
    expect(await p.tenantTokens()).toBe(INPUT + 2_000);
    await s.upstream.stop();
  });
  const TIERED = {
    ...PRICE,
    cachedInputPerMillion: 0.075,
    audioOutputPerMillion: 80,
    serviceTiers: { priority: { inputPerMillion: 0.25, outputPerMillion: 1 } },
  };

  it('prices service_tier priority at its own prices, and refuses a tier without one', async () => {
    const s = await setup({ words: ['Hi'], usage: { prompt_tokens: INPUT, completion_tokens: 1_000 } });
    const p = await sizing(s, undefined, { 'gpt-4o-mini': TIERED });
    const res = await p.send({ ...hello, service_tier: 'priority', max_tokens: 1_000 });
    expect(res.statusCode).toBe(200);
    expect(await p.tenantMicroUsd()).toBe(Math.ceil(INPUT * 0.25 + 1_000 * 1));
    const before = s.upstream.requests.length;
    const refused = await p.send({ ...hello, service_tier: 'flex' });
    expect(refused.statusCode).toBe(400);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'unsupported_service_tier', param: 'service_tier' });
    expect(s.upstream.requests).toHaveLength(before);
    const standard = await p.send({ ...hello, service_tier: 'default', max_tokens: 1_000 });
    expect(standard.statusCode).toBe(200);
    expect(await p.tenantMicroUsd()).toBe(Math.ceil(INPUT * 0.25 + 1_000 + INPUT * 0.15 + 1_000 * 0.6));
    await s.upstream.stop();
  });

  it('prices cached input at its price and audio output at the audio price; unpriced audio is refused', async () => {
    const usage = {
      prompt_tokens: INPUT,
      completion_tokens: 100,
      prompt_tokens_details: { cached_tokens: 4 },
      completion_tokens_details: { audio_tokens: 60 },
    };
    const s = await setup({ words: ['Hi'], usage });
    const p = await sizing(s, undefined, { 'gpt-4o-mini': TIERED });
    const res = await p.send({ ...hello, modalities: ['text', 'audio'], audio: { voice: 'alloy' }, max_tokens: 100 });
    expect(res.statusCode).toBe(200);
    const expected = (INPUT - 4) * 0.15 + 4 * 0.075 + 40 * 0.6 + 60 * 80;
    expect(await p.tenantMicroUsd()).toBe(Math.ceil(expected));
    const plain = await sizing(s);
    const refused = await plain.send({ ...hello, modalities: ['text', 'audio'] });
    expect(refused.statusCode).toBe(400);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'unsupported_modality', param: 'modalities' });
    await s.upstream.stop();
  });

  it('audio asked for but not itemised is priced all at the audio price; cached tokens never above the list price', async () => {
    const usage = { prompt_tokens: INPUT, completion_tokens: 10, prompt_tokens_details: { cached_tokens: 999 } };
    const s = await setup({ words: ['Hi'], usage });
    const p = await sizing(s, undefined, { 'gpt-4o-mini': TIERED });
    const res = await p.send({ ...hello, modalities: ['audio'], max_tokens: 10 });
    expect(res.statusCode).toBe(200);
    // 999 cached of INPUT cannot be: no discount; the 10 output tokens at the audio price.
    expect(await p.tenantMicroUsd()).toBe(Math.ceil(INPUT * 0.15 + 10 * 80));
    await s.upstream.stop();
  });

  it('sends one output cap upstream, in the field the model’s upstream reads', async () => {
    const s = await setup({ words: ['Hi'], usage: { prompt_tokens: INPUT, completion_tokens: 1 } });
    const p = await sizing(s, undefined, {
      'llama3.1': { ...PRICE },
      'ft:gpt-4o-mini:acme::x': { ...PRICE },
      'vllm-both': { ...PRICE, outputCapField: 'both', defaultMaxTokens: 77 },
    });
    const sent = async (body: Record<string, unknown>) => {
      expect((await p.send(body)).statusCode).toBe(200);
      return s.upstream.requests.at(-1)!.body;
    };
    const capFields = (b: Record<string, unknown>) => ({ mct: b.max_completion_tokens, mt: b.max_tokens });
    // OpenAI's names: max_completion_tokens only, the plan's default when the client sets none.
    expect(capFields(await sent(hello))).toEqual({ mct: 100, mt: undefined });
    expect(capFields(await sent({ ...hello, max_tokens: 42 }))).toEqual({ mct: 42, mt: undefined });
    expect(capFields(await sent({ ...hello, model: 'ft:gpt-4o-mini:acme::x' }))).toEqual({ mct: 100, mt: undefined });
    // Other names: max_tokens, which every OpenAI-compatible server reads; a model's own field where configured.
    expect(capFields(await sent({ ...hello, model: 'llama3.1', max_completion_tokens: 9 }))).toEqual({
      mct: undefined,
      mt: 9,
    });
    // The plan's outputReservation (100) comes before the model's defaultMaxTokens (77).
    expect(capFields(await sent({ ...hello, model: 'vllm-both' }))).toEqual({ mct: 100, mt: 100 });
    await s.upstream.stop();
  });
});

describe('a plan change', () => {
  it('reaches the proxy within 5 s: the next cap sent upstream is the new plan’s', async () => {
    const s = await setup({ words: ['Hi'], usage: { prompt_tokens: INPUT, completion_tokens: 1 } });
    const clock = { now: Date.now() };
    const client = localClient(dynamoEndpoint());
    const directory = new Directory({ client, tableName: tableName(), cacheMs: 30_000, clock: () => clock.now });
    const capSent = async () => {
      expect((await s.sendWith({ directory }, hello)).statusCode).toBe(200);
      return s.upstream.requests.at(-1)!.body.max_completion_tokens;
    };
    expect(await capSent()).toBe(100);
    await putTenant(client, tableName(), { id: s.identity.tenant, plan: 'short' });
    clock.now += 4_900;
    expect(await capSent()).toBe(100);
    clock.now += 200;
    expect(await capSent()).toBe(10);
    await s.upstream.stop();
  });
});

describe('upstream errors as the client sees them', () => {
  it.each([
    ['retry-after-ms', { retryAfterMs: '2500' }, '3'],
    ['a Retry-After of years', { retryAfter: '99999999999' }, '86400'],
    ['an HTTP date in the year 9999', { retryAfter: 'Fri, 31 Dec 9999 23:59:59 GMT' }, '86400'],
  ])('an upstream 429 with %s: Retry-After %s', async (_name, headers, expected) => {
    const s = await setup({ status: 429, ...headers });
    const res = await s.send(hello);
    expect(res.headers['Retry-After']).toBe(expected);
    await s.upstream.stop();
  });

  it('an upstream 4xx whose code or param looks like a key keeps neither', async () => {
    const s = await setup({
      status: 400,
      errorCode: 'sk-proj-abcdefghijklmnopqrstuvwxyz',
      errorParam: '0123456789abcdef0123456789abcdef',
    });
    const res = await s.send(hello);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'upstream_rejected', param: null });
    await s.upstream.stop();
  });

  it('an HTTP-date Retry-After from an upstream 429 becomes whole seconds', async () => {
    const at = new Date(Date.now() + 30_000).toUTCString();
    const s = await setup({ status: 429, retryAfter: at });
    const res = await s.send(hello);
    expect(res.statusCode).toBe(429);
    const wait = Number(res.headers['Retry-After']);
    expect(wait).toBeGreaterThanOrEqual(28);
    expect(wait).toBeLessThanOrEqual(31);
    await s.upstream.stop();
  });

  it.each([
    ['quotes a key', 'Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123456.'],
    ['quotes a header', 'Header Authorization: Bearer sk-upstream-secret-123456 is malformed'],
    ['holds an opaque token', 'request 0123456789abcdef0123456789abcdef failed'],
  ])('an upstream 4xx message that %s is replaced by a generic line; code and param kept', async (_name, message) => {
    const s = await setup({ status: 400, errorMessage: message, errorCode: 'invalid_value', errorParam: 'messages' });
    const res = await s.send(hello);
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toEqual({
      message: 'The model provider rejected the request (HTTP 400).',
      type: 'invalid_request_error',
      code: 'invalid_value',
      param: 'messages',
    });
    expect(JSON.stringify(s.logs)).not.toContain('sk-upstream-secret-123456');
    await s.upstream.stop();
  });

  it('embeddings usage without completion_tokens is the honest shape: settled, nothing rejected', async () => {
    const s = await setup({ usage: { prompt_tokens: 5 } });
    const input = 'embed me, please: a sentence of a dozen tokens or so';
    const res = await s.send({ model: 'text-embedding-3-small', input }, { route: EMBED });
    expect(res.statusCode).toBe(200);
    expect(1_000_000 - (await s.tenantRemaining())).toBe(5);
    expect(s.logs.filter((l) => l.outcome === 'usage_rejected')).toEqual([]);
    await s.upstream.stop();
  });
});

describe('OpenAI’s reset format (x-ratelimit-reset-requests, x-ratelimit-reset-tokens)', () => {
  it.each([
    [0, '0ms'],
    [-5, '0ms'],
    [20, '20ms'],
    [999.2, '1s'],
    [1_000, '1s'],
    [1_001, '2s'],
    [59_500, '1m0s'],
    [360_000, '6m0s'],
    [3_725_000, '1h2m5s'],
    [86_400_000, '24h0m0s'],
  ])('%s ms reads %s', (ms, text) => {
    expect(openAiDuration(ms)).toBe(text);
  });

  it('both headers carry it on an answer', async () => {
    const s = await setup({ words: ['Hi'], usage: { prompt_tokens: INPUT, completion_tokens: 1 } });
    const res = await s.send({ ...hello, stream: true });
    expect(res.headers['x-ratelimit-reset-requests']).toBe('1s'); // the authorizer's requestsResetMs: 1000
    // The user's 10,000-token bucket refills 10,000 a minute: 6 ms a token for the INPUT + 100 reserved.
    expect(res.headers['x-ratelimit-reset-tokens']).toBe(`${6 * (INPUT + 100)}ms`);
    await s.upstream.stop();
  });
});
