/**
 * The cap against bodies built to spend more than they reserve: hidden tokens in fields the
 * counter does not model, non-text parts, deep nesting, and random bodies (fast-check), each sent
 * through the real proxy handler on DynamoDB Local to an upstream that bills for everything.
 */
import { SSMClient } from '@aws-sdk/client-ssm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Brake } from '../../lambda/runtime/brake';
import { Directory, putTenant } from '../../lambda/runtime/directory';
import { Limiter, layerKey } from '../../lambda/engine/limiter';
import { tokenBucket } from '../../lambda/engine/limits';
import { bucketName, type LimiterConfig, parseConfig, tokens } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';
import { createProxyHandler } from '../../lambda/proxy/handler';
import { MAX_JSON_DEPTH } from '../../lambda/proxy/validate';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { lambdaContext, proxyEvent } from '../support/events';
import { honestInputBill } from '../support/honest-bill';

installLambdaStreamingGlobals();
const CHAT = '/v1/chat/completions';
const PARTS = { image: 25_501, imageLowDetail: 2_833, file: 3_000 };
const OUTPUT_RESERVATION = 64;
const ANSWER = ['ok'];

const configFor = (userTokensPerMinute: number): LimiterConfig =>
  parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: {
          team: {
            user: [tokens(tokenBucket(userTokensPerMinute, userTokensPerMinute / 60))],
            outputReservation: OUTPUT_RESERVATION,
          },
        },
        endpoints: {
          [CHAT]: {
            models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6, partTokens: PARTS } },
            maxBodyBytes: 1_048_576,
          },
        },
      }),
    ),
  );

let ssm: SsmLocal;
let upstream: UpstreamStandIn;
/** What the honest upstream billed, per request it answered. */
let bills: number[] = [];
beforeAll(async () => {
  ssm = await startSsmLocal();
  upstream = await startUpstreamStandIn({
    reply: (body) => {
      const prompt = honestInputBill(body, PARTS);
      bills.push(prompt + 1);
      return { words: ANSWER, usage: { prompt_tokens: prompt, completion_tokens: 1 } };
    },
  });
});
afterAll(async () => {
  await upstream.stop();
  await ssm.stop();
});

async function harness(userTokensPerMinute: number) {
  bills = [];
  const config = configFor(userTokensPerMinute);
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  const ns = uniqueKey('ns');
  const frozen = Date.now(); // bucket time stands still: no refill during the test
  const store = testStore({ clock: () => frozen });
  const logs: Record<string, unknown>[] = [];
  const log = (e: Record<string, unknown>) => logs.push(e);
  const limiter = new Limiter({ store, config, log, namespace: ns });
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      maxAttempts: 1,
    }),
    parameterName: `/test/${uniqueKey('brake')}`,
    log,
  });
  const handler = createProxyHandler({
    config,
    limiter,
    directory: new Directory({ client, tableName: tableName() }),
    brake,
    upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-test' },
    settleBackoffMs: 5,
    log,
    metrics: () => {},
  });
  const auth = { tenant, user: 'mallory', shard: '0' };
  const send = (body: unknown) =>
    invokeStreaming(handler, proxyEvent({ body, authorizer: auth }), lambdaContext('proxy'));
  const sendRaw = (raw: string) =>
    invokeStreaming(handler, proxyEvent({ raw, authorizer: auth }), lambdaContext('proxy'));
  const spec = config.plans.team!.user![0]!;
  /** Tokens the user's bucket holds as spent: capacity minus remaining, debt included. */
  const spent = async () => {
    const outcome = await store.peekItem(layerKey.user({ tenant, user: 'mallory' }, ns), [
      { name: bucketName(spec), limit: spec.limit, cost: 1 },
    ]);
    return userTokensPerMinute - outcome.decisions[0]!.remaining;
  };
  /** Sends `body`; what the proxy reserved as input, what the upstream billed as input, and whether its usage was refused. */
  const sendCounted = async (body: unknown) => {
    bills = [];
    const before = logs.length;
    const res = await send(body);
    const mine = logs.slice(before);
    return {
      res,
      reserved: mine.find((e) => e.outcome === 'reserved')?.inputTokens as number | undefined,
      billedInput: bills.map((bill) => bill - 1),
      usageRejected: mine.some((e) => e.outcome === 'usage_rejected'),
    };
  };
  return { send, sendRaw, sendCounted, spent };
}

/** A function definition whose description and schema carry about `n` tokens of text. */
const bulkyFunction = (i: number, n: number) => ({
  name: `lookup_${i}`,
  description: 'Looks a record up by its identifier and returns every field of it. '.repeat(Math.ceil(n / 14)),
  parameters: {
    type: 'object',
    properties: { id: { type: 'string', description: 'the identifier' } },
    required: ['id'],
  },
});
const ask = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Find record 42.' }] };

describe('hidden tokens: 40 concurrent requests from one key, 20,000 tokens a minute', () => {
  it.each([
    ['~47k tokens in functions each (none can fit)', 47_000, 0],
    ['~2k tokens in functions each (a few fit)', 2_000, 1],
  ])('%s: the upstream bills no more than the limit', async (_name, hiddenTokens, minAdmitted) => {
    const limit = 20_000;
    const h = await harness(limit);
    const body = { ...ask, functions: [bulkyFunction(1, hiddenTokens)] };
    const results = await Promise.all(Array.from({ length: 40 }, () => h.send(body)));
    const admitted = results.filter((r) => r.statusCode === 200).length;
    expect(admitted).toBeGreaterThanOrEqual(minAdmitted);
    for (const r of results.filter((x) => x.statusCode !== 200)) expect([400, 429]).toContain(r.statusCode);
    const billed = bills.reduce((a, b) => a + b, 0);
    expect(bills).toHaveLength(admitted);
    // Output here (1 token) stays within the reservation, so no overrun allowance applies.
    expect(billed).toBeLessThanOrEqual(limit);
    // And the bucket holds exactly what was billed: the reservation was settled down to the bill.
    expect(await h.spent()).toBe(billed);
  });

  it('prices image parts per model: a request whose images cannot fit is refused, smaller ones fit the limit', async () => {
    const h = await harness(20_000);
    const image = (detail: 'low' | 'high') => ({
      type: 'image_url',
      image_url: { url: 'https://example.com/cat.png', detail },
    });
    const big = await h.send({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, image('high')] }],
    });
    expect(big.statusCode).toBe(400);
    expect(JSON.parse(big.body).error.code).toBe('request_too_large_for_limit');
    const smalls = await Promise.all(
      Array.from({ length: 20 }, () =>
        h.send({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: [image('low'), image('low'), image('low')] }],
        }),
      ),
    );
    const admitted = smalls.filter((r) => r.statusCode === 200).length;
    expect(admitted).toBe(2); // 3 x 2,833 + text and framing: two fit in 20,000
    expect(bills.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(20_000);
  });
});

describe('tool definitions: every shape reserves at least what the provider bills, framing included', () => {
  it.each([
    ['an empty tools list', { tools: [] }],
    ['an empty functions list', { functions: [] }],
    ['both lists, empty', { tools: [], functions: [] }],
    ['functions: null', { functions: null }],
    ['one tool', { tools: [{ type: 'function', function: { name: 'f' } }] }],
    ['one function', { functions: [{ name: 'f', parameters: { type: 'object', properties: {} } }] }],
  ])('%s', async (_name, tools) => {
    const h = await harness(1_000_000);
    const sent = await h.sendCounted({ ...ask, ...tools });
    expect(sent.res.statusCode).toBe(200);
    expect(sent.billedInput).toHaveLength(1);
    expect(sent.reserved).toBeGreaterThanOrEqual(sent.billedInput[0]!);
    expect(sent.usageRejected).toBe(false);
  });
});

describe('bodies the counter cannot bound: 400 naming the part, nothing debited, no upstream call', () => {
  it.each([
    [
      'an audio part the operators did not price',
      [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }],
      'messages[0].content[0]',
      'unsupported_content_part',
    ],
    [
      'an unknown part type',
      [{ type: 'video_url', video_url: { url: 'https://example.com/v.mp4' } }],
      'messages[0].content[0].type',
      'unsupported_content_part',
    ],
    ['a text part without text', [{ type: 'text' }], 'messages[0].content[0].text', 'invalid_value'],
  ])('%s', async (_name, content, param, code) => {
    const h = await harness(20_000);
    const res = await h.send({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ type: 'invalid_request_error', param, code });
    expect(bills).toHaveLength(0);
    expect(await h.spent()).toBe(0);
  });

  it.each([5_000, MAX_JSON_DEPTH])('nesting %i levels deep in tools', async (levels) => {
    const h = await harness(20_000);
    // Written as text: a body this deep is too deep for a test's own JSON.stringify.
    const schema = `${'{"type":"object","properties":{"x":'.repeat(levels)}{"type":"string"}${'}}'.repeat(levels)}`;
    const raw =
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],' +
      `"tools":[{"type":"function","function":{"name":"deep","parameters":${schema}}}]}`;
    const res = await h.sendRaw(raw);
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'nesting_too_deep', param: null });
    expect(JSON.parse(res.body).error.message).toContain(`${MAX_JSON_DEPTH} levels`);
    expect(bills).toHaveLength(0);
    expect(await h.spent()).toBe(0);
  });

  it('accepts nesting just under the limit', async () => {
    const h = await harness(1_000_000);
    let schema: unknown = { type: 'string' };
    // body > tools > [ > tool > function > parameters: six levels before the schema's own
    for (let i = 0; i < MAX_JSON_DEPTH - 7; i++) schema = { x: schema };
    const res = await h.send({ ...ask, tools: [{ type: 'function', function: { name: 'deep', parameters: schema } }] });
    expect(res.statusCode).toBe(200);
  });
});

// Random bodies: unicode everywhere, random extra fields and nesting, parts, tools, names.
const text = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.constantFrom('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '          \n\n\n', '中文文本日本語', '🎉👩‍💻🎉'),
);
const jsonish = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 6 },
    text,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 4 }),
  ),
})).value;
const part = fc.oneof(
  text.map((t) => ({ type: 'text', text: t })),
  fc
    .constantFrom('low', 'high', 'auto')
    .map((detail) => ({ type: 'image_url', image_url: { url: 'https://example.com/x.png', detail } })),
  fc.constant({ type: 'file', file: { file_id: 'file-abc' } }),
);
const message = fc.record(
  {
    role: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool'),
    content: fc.oneof(text, fc.array(part, { minLength: 1, maxLength: 3 })),
    name: fc.stringMatching(/^[a-z]{1,8}$/),
    tool_call_id: text,
    function_call: jsonish,
    extra: jsonish,
  },
  { requiredKeys: ['role', 'content'] },
);
const chatBody = fc.record(
  {
    messages: fc.array(message, { minLength: 1, maxLength: 4 }),
    tools: fc.array(jsonish, { maxLength: 3 }),
    response_format: jsonish,
    prediction: jsonish,
    tool_choice: jsonish,
    temperature: fc.double({ min: 0, max: 2, noNaN: true }),
    unknown_field: jsonish,
  },
  { requiredKeys: ['messages'] },
);

/** A message with only the fields counted exactly: role, content and name. */
const knownFields = ({ role, content, name }: { role: string; content: unknown; name?: string }) =>
  name === undefined ? { role, content } : { role, content, name };

describe('any body: what the upstream bills never exceeds what was reserved', () => {
  it('holds for random bodies (fast-check, honest billing upstream, real store)', async () => {
    const h = await harness(100_000_000);
    const numRuns = Math.min(Number(process.env.FC_RUNS ?? 100), 150);
    let admittedRuns = 0;
    await fc.assert(
      fc.asyncProperty(chatBody, async (body) => {
        const sent = await h.sendCounted({ model: 'gpt-4o-mini', ...body });
        if (sent.res.statusCode === 400) return; // refused before anything was spent
        expect(sent.res.statusCode).toBe(200);
        admittedRuns++;
        expect(sent.billedInput).toHaveLength(1);
        expect(sent.billedInput[0]).toBeLessThanOrEqual(sent.reserved!);
        // The bill was believed (it is within the bound), not replaced by the proxy's count.
        expect(sent.usageRejected).toBe(false);
        // Where the text is known (roles, names, text and priced parts) the bound is the exact bill, so an
        // under-count of a token there fails even when other fields' bytes would hide it above.
        const known = await h.sendCounted({ model: 'gpt-4o-mini', messages: body.messages.map(knownFields) });
        expect(known.res.statusCode).toBe(200);
        expect(known.reserved).toBe(known.billedInput[0]);
      }),
      { numRuns },
    );
    // Most generated bodies are valid: the property is not vacuously true of refusals.
    expect(admittedRuns).toBeGreaterThan(numRuns / 2);
  }, 120_000);
});
