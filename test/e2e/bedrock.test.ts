/**
 * npm start --upstream bedrock: the whole path offline, with Amazon Bedrock played by a stand-in
 * that speaks Converse / ConverseStream (the eventstream framing), checks every SigV4 signature and
 * bills like a provider. OpenAI and Anthropic clients speak their own APIs unchanged; the proxy
 * calls Bedrock with the model's `upstreamModel`, always with maxTokens, and settles what Bedrock
 * billed (at the bound when it cannot know).
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { parseConfig, tokensPerDay } from '../../lambda/engine/plans';
import { setMetricSink } from '../../lambda/runtime/metrics';
import type { BedrockBill, BedrockStandIn } from '../../local/bedrock-standin';
import { localClient } from '../../local/dynamodb-local';
import { type LocalStack, startLocal } from '../../local/start';
import { parseStartOptions } from '../../local/start-options';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { LlmRateLimiter, Upstream } from '../../lib';
import { countingModelId } from '../../lambda/proxy/bedrock/upstream';
import { type BedrockApi, bedrockCallsFor } from '../support/bedrock-calls';
import { ACCOUNT, allowed, physicalOf, REGION, rolePolicies } from '../support/iam-check';

const USER_DAY = 3_000;
const HAIKU = 'us.anthropic.claude-3-5-haiku-20241022-v1:0';
const models = {
  'claude-3-5-haiku': { inputPerMillion: 0.8, outputPerMillion: 4, upstreamModel: HAIKU, defaultMaxTokens: 200 },
};
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { team: { tenant: [tokensPerDay(2 * USER_DAY)], user: [tokensPerDay(USER_DAY)] } },
      endpoints: Object.fromEntries(
        ['/v1/chat/completions', '/v1/responses', '/v1/messages'].map((route) => [route, { models }]),
      ),
    }),
  ),
);

let local: LocalStack;
let bedrock: BedrockStandIn;
const settled = new Map<string, number>();
beforeAll(async () => {
  const parsed = parseStartOptions(['--upstream', 'bedrock', '--port', '0'], {});
  expect(parsed).toEqual({ options: { port: 0, upstreamKind: 'bedrock' } });
  local = await startLocal({ ...(parsed as { options: object }).options, config, summary: () => {} });
  bedrock = local.bedrock!;
  setMetricSink((line) => {
    const m = JSON.parse(line) as { requestId?: string; TokensSettled?: number };
    if (m.requestId && typeof m.TokensSettled === 'number') settled.set(m.requestId, m.TokensSettled);
  });
}, 60_000);
afterAll(() => local.stop());

let tenants = 0;
async function newKey(): Promise<string> {
  const client = localClient(local.dynamoEndpoint);
  const tenant = `bedrock-${++tenants}`;
  await putTenant(client, local.tableName, { id: tenant, plan: 'team' });
  const key = `sk-lrl-local-bedrock-${tenants}-00000000000000`;
  await putApiKey(client, local.tableName, key, { tenant, user: 'u', status: 'active' });
  client.destroy();
  return key;
}

const openai = (key: string) => new OpenAI({ apiKey: key, baseURL: local.baseUrl, maxRetries: 0 });
const anthropic = (key: string) => new Anthropic({ apiKey: key, baseURL: local.url, maxRetries: 0 });
const say = (text: string) => [{ role: 'user' as const, content: text }];

/** Every bill was settled, at no less than Bedrock billed for it. */
async function settledAtLeastBilled(bills: readonly BedrockBill[]): Promise<void> {
  await vi.waitFor(() => expect(bills.filter((b) => !settled.has(b.requestId ?? ''))).toEqual([]), {
    timeout: 10_000,
  });
  const under = bills.filter((b) => settled.get(b.requestId!)! < b.input + b.output);
  expect(under.map((b) => ({ billed: b.input + b.output, settled: settled.get(b.requestId!) }))).toEqual([]);
}

describe('npm start --upstream bedrock', () => {
  it('streams a chat completion from Bedrock to the OpenAI client, signed, capped and settled at what Bedrock billed', async () => {
    bedrock.behaviour = { natural: 40 };
    const key = await newKey();
    const from = bedrock.ledger.length;
    const stream = await openai(key).chat.completions.create({
      model: 'claude-3-5-haiku',
      messages: say('Say hi.'),
      max_tokens: 100,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    const [bill] = bedrock.ledger.slice(from);
    expect(text).toBe(' hi'.repeat(40));
    expect(bill).toMatchObject({ operation: 'converse-stream', modelId: HAIKU, output: 40 });
    expect(bill!.request).toMatchObject({ inferenceConfig: { maxTokens: 100 } });
    expect(usage).toMatchObject({ prompt_tokens: bill!.input, completion_tokens: 40 });
    expect(bedrock.requests.at(-1)?.signature).toBe('ok');
    await settledAtLeastBilled([bill!]);
    expect(settled.get(bill!.requestId!)).toBe(bill!.input + 40);
  });

  it('serves Anthropic’s Messages API and the Responses API from Bedrock too', async () => {
    bedrock.behaviour = { natural: 12 };
    const key = await newKey();
    const message = await anthropic(key).messages.create({
      model: 'claude-3-5-haiku',
      max_tokens: 50,
      messages: say('hi'),
    });
    expect(message.content[0]).toMatchObject({ type: 'text', text: ' hi'.repeat(12) });
    expect(message.usage.output_tokens).toBe(12);
    const response = await openai(key).responses.create({ model: 'claude-3-5-haiku', input: 'hi' });
    expect(response.output_text).toBe(' hi'.repeat(12));
    expect(bedrock.ledger.at(-1)?.request).toMatchObject({ inferenceConfig: { maxTokens: 200 } });
  });

  it('the hard cap: no max_tokens, many at once, within the user’s day; a client that leaves pays the hidden reasoning', async () => {
    bedrock.behaviour = { natural: 2_000 };
    const key = await newKey();
    const from = bedrock.ledger.length;
    const ask = () =>
      openai(key)
        .chat.completions.create({ model: 'claude-3-5-haiku', messages: say('Tell me everything.') })
        .then(
          () => 200,
          (e: { status?: number }) => e.status ?? 0,
        );
    const answers = await Promise.all(Array.from({ length: 20 }, ask));
    // Then one at a time until the limit answers 429 (a busy machine may have failed some above with a 503).
    for (let i = 0; i < 20 && !answers.includes(429); i++) answers.push(await ask());
    expect(answers).toContain(429);
    const bills = bedrock.ledger.slice(from);
    for (const b of bills) expect(b.request).toMatchObject({ inferenceConfig: { maxTokens: 200 } });
    expect(bills.reduce((n, b) => n + b.input + b.output, 0)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(bills);

    bedrock.behaviour = { natural: 2_000, reasoning: 300, eventMs: 5 };
    const leaver = await newKey();
    const before = bedrock.ledger.length;
    for (let i = 0; i < 3; i++) {
      const controller = new AbortController();
      const stream = await openai(leaver).chat.completions.create(
        { model: 'claude-3-5-haiku', messages: say('Think first.'), max_tokens: 400, stream: true },
        { signal: controller.signal },
      );
      for await (const _chunk of stream) {
        controller.abort();
        break;
      }
    }
    const left = bedrock.ledger.slice(before);
    expect(left.length).toBe(3);
    await settledAtLeastBilled(left);
  });

  it('counts tokens with Bedrock’s CountTokens on the profile’s foundation model, free of charge', async () => {
    const key = await newKey();
    const billsBefore = bedrock.ledger.length;
    const counted = await anthropic(key).messages.countTokens({
      model: 'claude-3-5-haiku',
      messages: say('Hello there'),
    });
    const asked = bedrock.requests.filter((r) => r.operation === 'count-tokens').at(-1);
    expect(asked).toMatchObject({ modelId: countingModelId(HAIKU), signature: 'ok' });
    expect(asked?.modelId).toBe('anthropic.claude-3-5-haiku-20241022-v1:0');
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(bedrock.ledger.length).toBe(billsBefore);
  });

  it('a Bedrock ThrottlingException is a 429 with Retry-After for the client, and refunded', async () => {
    const key = await newKey();
    bedrock.behaviour = { refuse: 'ThrottlingException' };
    const refused = openai(key).chat.completions.create({ model: 'claude-3-5-haiku', messages: say('hi') });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const err = (await refused.catch((e: unknown) => e)) as InstanceType<typeof OpenAI.RateLimitError>;
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    bedrock.behaviour = { natural: 8 };
    // The model cools down for every container for the throttling's Retry-After (upstream-feedback.ts):
    // the next request is refused without a call to Bedrock.
    const calls = bedrock.ledger.length;
    await expect(
      openai(key).chat.completions.create({ model: 'claude-3-5-haiku', messages: say('hi') }),
    ).rejects.toMatchObject({ status: 429, code: 'upstream_rate_limited' });
    expect(bedrock.ledger.length).toBe(calls);
    // (The last requests to Bedrock here: the model stays cooled down for the 10 s its throttling is given.)
    // Refunded: the user's whole day is still there for a request that needs almost all of it.
    await vi.waitFor(async () => {
      const limits = (await (
        await fetch(`${local.baseUrl}/limits`, { headers: { authorization: `Bearer ${key}` } })
      ).json()) as { limits: { layer: string; remaining: number }[] };
      expect(limits.limits.find((l) => l.layer === 'user')?.remaining).toBe(USER_DAY);
    });
  });

  it('every Bedrock call the proxy made above is allowed by the role the construct synthesizes for these models', async () => {
    const stack = new Stack(new App(), 'BedrockE2e', { env: { account: ACCOUNT, region: REGION } });
    new LlmRateLimiter(stack, 'Limiter', {
      upstream: Upstream.bedrock(),
      plans: { team: { user: [tokensPerDay(USER_DAY)] } },
      endpoints: Object.fromEntries(
        ['/v1/chat/completions', '/v1/responses', '/v1/messages'].map((r) => [r, { models }]),
      ),
    });
    const template = Template.fromStack(stack);
    const statements = rolePolicies(template, 'LimiterProxy', physicalOf(template, 'limits'));
    const API: Record<string, BedrockApi> = {
      converse: 'Converse',
      'converse-stream': 'ConverseStream',
      'count-tokens': 'CountTokens',
    };
    const made = [...new Set(bedrock.requests.map((r) => `${r.operation} ${r.modelId}`))];
    // Each operation was made: streamed, not streamed, and counted.
    expect(made.map((m) => m.split(' ')[0]).sort()).toEqual(['converse', 'converse-stream', 'count-tokens']);
    const calls = made.flatMap((m) => {
      const [operation, modelId] = m.split(' ') as [string, string];
      return bedrockCallsFor(modelId, REGION, ACCOUNT).filter((c) => c.api === API[operation]);
    });
    expect(calls.length).toBeGreaterThanOrEqual(made.length);
    const verdicts = await Promise.all(
      calls.map(async (c) => ({
        call: `${c.action} on ${c.resource}`,
        ...(await allowed({ fn: 'proxy', ...c }, statements)),
      })),
    );
    expect(verdicts.filter((v) => !v.allowed)).toEqual([]);
  });
});
