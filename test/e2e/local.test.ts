import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { tokenBucket, slidingWindow } from '../../lambda/engine/limits';
import { parseConfig, requests, tokens } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { cliTargets, type LocalStack, startLocal } from '../../local/start';
import { main as cli } from '../../lib/cli/main';

const CHAT = '/v1/chat/completions';
/** A second real client: the OpenAI Python SDK, where this machine has it (LIMITER_TEST_PYTHON names the interpreter). */
const PYTHON = process.env.LIMITER_TEST_PYTHON ?? 'python3';
const pythonOpenAi = spawnSync(PYTHON, ['-c', 'import openai'], { stdio: 'ignore' }).status === 0;
const models = { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } };
// Token buckets that refill negligibly during a test, so every figure is exact.
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        demo: {
          tenant: [tokens(tokenBucket(100_000, 0.001), { name: 'budget' })],
          user: [requests(slidingWindow(3, '3 s', 3))],
          outputReservation: 100,
        },
        small: { tenant: [requests(slidingWindow(10, '1 h', 6))] },
        roomy: { tenant: [requests(slidingWindow(100_000, '1 m'))] },
      },
      endpoints: {
        [CHAT]: { models },
        '/v1/embeddings': { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
      },
      penalty: { threshold: 2, windowMs: 60_000, baseMs: 4_000, maxMs: 16_000 },
    }),
  ),
);

let local: LocalStack;
const summaries: string[] = [];
beforeAll(async () => {
  local = await startLocal({
    port: 0,
    config,
    brakeCacheTtlSeconds: 1,
    apiKey: 'sk-lrl-local-e2e-key-000000001',
    summaryEveryMs: 200,
    summary: (line) => summaries.push(line),
  });
}, 60_000);
afterAll(() => local.stop());

const openai = (apiKey = local.apiKey, maxRetries = 0) => new OpenAI({ apiKey, baseURL: local.baseUrl, maxRetries });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const limits = async (apiKey = local.apiKey) =>
  (await (await fetch(`${local.baseUrl}/limits`, { headers: { authorization: `Bearer ${apiKey}` } })).json()) as {
    limits: { code: string; remaining: number }[];
  };
const remaining = async (code: string, apiKey?: string) =>
  (await limits(apiKey)).limits.find((l) => l.code === code)!.remaining;
const chat = (apiKey: string, body: Record<string, unknown> = {}) =>
  fetch(`${local.baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
const cliArgs = () => cliTargets(local);

async function newTenant(plan: string): Promise<string> {
  const tenant = `t-${plan}-${Math.random().toString(36).slice(2, 8)}`;
  await putTenant(localClient(local.dynamoEndpoint), local.tableName, { id: tenant, plan });
  return tenant;
}

async function newKey(plan: string, user: string, tenant?: string): Promise<string> {
  const client = localClient(local.dynamoEndpoint);
  tenant ??= await newTenant(plan);
  const key = `sk-lrl-local-${tenant}-${user}-0000000`;
  await putApiKey(client, local.tableName, key, { tenant, user, status: 'active' });
  return key;
}

/** Waits for settlement, which lands just after the stream has ended. */
async function settled(code: string, expected: number, apiKey?: string): Promise<number> {
  let value = -1;
  for (let i = 0; i < 40 && value !== expected; i++) {
    value = await remaining(code, apiKey);
    if (value !== expected) await sleep(50);
  }
  return value;
}

describe('npm start, driven by the official OpenAI client', () => {
  it('streams a chat completion in chunks, and the tenant budget moves by the settled usage', async () => {
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'stream please' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces: string[] = [];
    let usage: { total_tokens: number } | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) pieces.push(chunk.choices[0].delta.content);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(pieces.length).toBeGreaterThan(3);
    expect(pieces.join('')).toBe('Hello from the local stand-in. You said: "stream please"');
    expect(await settled('tenant_tokens_budget', 100_000 - usage!.total_tokens)).toBe(100_000 - usage!.total_tokens);
  });

  it('prints a summary line of what the limiter did, every few seconds', async () => {
    await sleep(300);
    const last = summaries.at(-1)!;
    expect(last).toMatch(/^\[limiter\] \d+ admitted, \d+ denied.*, \d+ tokens settled, \$\d+\.\d{6} spent$/);
    expect(Number(/(\d+) admitted/.exec(last)![1])).toBeGreaterThanOrEqual(1);
  });

  it('answers 401 to an unknown key and 400 to malformed JSON, debiting nothing', async () => {
    await expect(
      openai('sk-lrl-local-never-issued-00000').chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const key = await newKey('demo', 'json');
    const before = await remaining('tenant_tokens_budget', key);
    const bad = await fetch(`${local.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: '{"model": "gpt-4o-mini", "messages": [',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: unknown }).error).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_json',
    });
    expect(await remaining('tenant_tokens_budget', key)).toBe(before);
  });

  // API Gateway takes bodies up to 10 MB, Lambda events up to 6,291,456 bytes: in between the
  // function never runs. Nothing may be debited.
  it('refuses a body API Gateway takes but Lambda cannot be invoked with, debiting nothing', async () => {
    const key = await newKey('demo', 'huge');
    const before = await remaining('tenant_tokens_budget', key);
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a'.repeat(7_000_000) }] });
    const res = await fetch(`${local.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(502);
    expect(await remaining('tenant_tokens_budget', key)).toBe(before);
  });

  it('lists the configured models to the official client (client.models.list), through the authorizer', async () => {
    const models = [];
    for await (const model of openai().models.list()) models.push(model.id);
    expect(models).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
    await expect(openai('sk-lrl-local-never-issued-00000').models.list()).rejects.toBeInstanceOf(
      OpenAI.AuthenticationError,
    );
  });

  // The official SDK asks for base64 embeddings by default and decodes them itself.
  it('returns embeddings the official client decodes to a vector of the right length', async () => {
    const out = await openai().embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
    expect(out.data[0]!.embedding).toHaveLength(4);
    expect(out.data[0]!.embedding[0]).toBeCloseTo(0.1, 5);
  });

  it('answers each input of an embeddings batch with its own vector, in order (the official client)', async () => {
    const out = await openai().embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] });
    expect(out.data.map((d) => d.index)).toEqual([0, 1]);
    for (const d of out.data) expect(d.embedding).toHaveLength(4);
  });

  it.skipIf(!pythonOpenAi)(
    'answers an embeddings batch from the OpenAI Python SDK with a vector per input',
    async () => {
      const script = [
        'import json, sys',
        'from openai import OpenAI',
        'client = OpenAI(api_key=sys.argv[1], base_url=sys.argv[2], max_retries=0)',
        'out = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])',
        'print(json.dumps([[d.index, len(d.embedding)] for d in out.data]))',
      ].join('\n');
      // Asynchronously: the stack answers from this process.
      const { stdout } = await promisify(execFile)(PYTHON, ['-c', script, local.apiKey, local.baseUrl]);
      expect(JSON.parse(stdout)).toEqual([
        [0, 4],
        [1, 4],
      ]);
    },
  );

  it('answers 404 in OpenAI’s error shape for a route or method the API does not serve', async () => {
    for (const [method, path] of [
      ['POST', '/v1/nope'],
      ['GET', '/v1/chat/completions'],
    ] as const) {
      const res = await fetch(`${local.url}${path}`, { method, headers: { authorization: `Bearer ${local.apiKey}` } });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string; type: string } }).error).toMatchObject({
        code: 'unknown_route',
        type: 'invalid_request_error',
      });
    }
  });

  it("gives 429 with Retry-After past the user's limit, and the OpenAI client's own retry waits as told", async () => {
    const key = await newKey('demo', 'pacer');
    for (let i = 0; i < 3; i++) expect((await chat(key)).status).toBe(200);
    const denied = await chat(key);
    expect(denied.status).toBe(429);
    const wait = Number(denied.headers.get('retry-after'));
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(denied.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe('user_requests_per_3s');
    const started = Date.now();
    const answer = await openai(key, 2).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'again' }],
    });
    expect(answer.choices[0]?.message.content).toContain('again');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000); // it waited for the window instead of failing
  });

  it('grows Retry-After while a client keeps hammering', async () => {
    const key = await newKey('demo', 'hammer');
    for (let i = 0; i < 3; i++) await chat(key);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await chat(key);
      expect(r.status).toBe(429);
      waits.push(Number(r.headers.get('retry-after')));
      // Every 429, the penalty box's too, carries the same rate-limit headers.
      for (const h of [
        'x-ratelimit-limit',
        'x-ratelimit-remaining',
        'x-ratelimit-reset',
        'ratelimit',
        'ratelimit-policy',
      ])
        expect(r.headers.get(h), `${h} on 429 #${i + 1}`).toBeTruthy();
      if (i >= 2) expect(r.headers.get('x-ratelimit-remaining')).toBe('0');
    }
    expect(waits.at(-1)!).toBeGreaterThan(waits[0]!);
    expect(waits.slice(2)).toEqual([...waits.slice(2)].sort((a, b) => a - b));
  });

  it('stops every AI route when the brake is set with the CLI, without calling the upstream, and recovers on release', async () => {
    const key = await newKey('roomy', 'ops');
    const quiet = { out: () => {}, err: () => {} };
    expect(await cli(['brake', 'on', '--reason', 'e2e drill', ...cliArgs()], quiet)).toBe(0);
    await sleep(1_100); // the brake cache TTL in this run
    const calls = local.upstreamRequests!();
    const braked = await chat(key);
    expect(braked.status).toBe(429);
    expect(await braked.json()).toMatchObject({
      error: { code: 'brake', message: expect.stringContaining('e2e drill') },
    });
    expect(local.upstreamRequests!()).toBe(calls);
    expect((await fetch(`${local.baseUrl}/limits`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    expect(await cli(['brake', 'off', ...cliArgs()], quiet)).toBe(0);
    await sleep(1_100);
    expect((await chat(key)).status).toBe(200);
  });

  it('keeps tenants apart: 30 concurrent clients of two tenants on one plan, A flooding past its cap, B never sees a 429', async () => {
    // One plan and the same user names in both tenants: only the tenant id keeps their items apart.
    const [tenantA, tenantB] = [await newTenant('small'), await newTenant('small')];
    const aKeys = await Promise.all(Array.from({ length: 20 }, (_, i) => newKey('small', `u${i}`, tenantA)));
    const bKeys = await Promise.all(Array.from({ length: 10 }, (_, i) => newKey('small', `u${i}`, tenantB)));
    const run = async (key: string, requests: number) => {
      const statuses: number[] = [];
      for (let i = 0; i < requests; i++) {
        const r = await chat(key, { stream: true });
        await r.text(); // read the stream to its end, as a client would
        statuses.push(r.status);
      }
      return statuses;
    };
    // A: 100 requests on a cap of 10 an hour; B: 10, exactly its own cap.
    const [a, b] = await Promise.all([
      Promise.all(aKeys.map((k) => run(k, 5))),
      Promise.all(bKeys.map((k) => run(k, 1))),
    ]);
    expect(a.flat().filter((s) => s === 200)).toHaveLength(10); // tenant A's cap
    expect(a.flat().filter((s) => s === 429)).toHaveLength(90);
    expect(b.flat()).toHaveLength(10);
    expect(b.flat().every((s) => s === 200)).toBe(true);
  });
});
