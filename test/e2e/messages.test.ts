/**
 * POST /v1/messages (Anthropic's Messages API) through npm start's stack, driven by the official
 * Anthropic SDK with its key in x-api-key, in front of a provider stand-in that bills like one:
 * streamed and not, the token count, errors and 429s in Anthropic's shape with its rate-limit
 * headers, and the hard-cap rules of the chat route (it is translated to a chat request).
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  billed,
  type HardCapStack,
  settledAtLeastBilled,
  startHardCapStack,
  USER_DAY,
} from '../support/hard-cap-stack';

let stack: HardCapStack;
beforeAll(async () => {
  stack = await startHardCapStack();
}, 60_000);
afterAll(() => stack.stop());

// The SDK appends /v1/messages to its base URL.
const client = (apiKey: string) => new Anthropic({ apiKey, baseURL: stack.local.url, maxRetries: 0 });
const say = (text: string) => [{ role: 'user' as const, content: text }];

describe('the Messages API through the official Anthropic SDK', () => {
  it('streams a message the SDK assembles: the text, the stop reason and the usage the provider billed', async () => {
    stack.provider.behaviour = { natural: 40 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const stream = client(key!).messages.stream({ model: 'gpt-4o-mini', max_tokens: 100, messages: say('Say hi.') });
    const message = await stream.finalMessage();
    const [bill] = stack.provider.bills.slice(from);
    expect(message.content).toHaveLength(1);
    expect(message.content[0]).toMatchObject({ type: 'text', text: ' hi'.repeat(40) });
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage).toMatchObject({ input_tokens: bill!.input, output_tokens: 40 });
    // max_tokens reached the provider as the chat cap.
    expect(bill!.body).toMatchObject({ max_completion_tokens: 100 });
    await settledAtLeastBilled(stack, [bill!]);
    expect(stack.settled.get(bill!.requestId)).toBe(bill!.input + 40);
  });

  it('answers a request that is not streamed, and says max_tokens when the cap cut the answer', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await stack.newTenant();
    const message = await client(key!).messages.create({
      model: 'gpt-4o-mini',
      max_tokens: 16,
      system: 'Be brief.',
      messages: say('Tell me everything.'),
    });
    expect(message.type).toBe('message');
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.usage.output_tokens).toBe(16);
  });

  it('counts tokens without spending anything upstream', async () => {
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const counted = await client(key!).messages.countTokens({ model: 'gpt-4o-mini', messages: say('Hello there') });
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(stack.provider.bills.length).toBe(from);
  });

  it('refuses in Anthropic’s error shape what it cannot honour (the SDK’s BadRequestError), spending nothing', async () => {
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const refused = client(key!).messages.create({
      model: 'gpt-4o-mini',
      max_tokens: 2_000,
      thinking: { type: 'enabled', budget_tokens: 1_024 },
      messages: say('hi'),
    });
    await expect(refused).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    const err = (await refused.catch((e: unknown) => e)) as InstanceType<typeof Anthropic.BadRequestError>;
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(JSON.stringify(err.error)).toContain('thinking');
    expect(stack.provider.bills.length).toBe(from);
  });

  it('answers 429 past a limit as the SDK expects (RateLimitError, retry-after, anthropic-ratelimit-*)', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await stack.newTenant();
    const anthropic = client(key!);
    await anthropic.messages.create({ model: 'gpt-4o-mini', max_tokens: USER_DAY - 100, messages: say('hi') });
    const denied = anthropic.messages.create({ model: 'gpt-4o-mini', max_tokens: USER_DAY - 100, messages: say('hi') });
    await expect(denied).rejects.toBeInstanceOf(Anthropic.RateLimitError);
    const err = (await denied.catch((e: unknown) => e)) as InstanceType<typeof Anthropic.RateLimitError>;
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(err.headers?.get('anthropic-ratelimit-tokens-remaining')).toMatch(/^\d+$/);
    expect(Date.parse(err.headers?.get('anthropic-ratelimit-tokens-reset') ?? '')).toBeGreaterThan(Date.now() - 1000);
  });

  it('a key the authorizer does not know is the SDK’s AuthenticationError, from x-api-key alone', async () => {
    const refused = client('sk-lrl-local-nobody-000000000000000').messages.create({
      model: 'gpt-4o-mini',
      max_tokens: 10,
      messages: say('hi'),
    });
    await expect(refused).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
  });
});

describe('the hard cap on the Messages route', () => {
  it('a client that leaves mid-stream from a reasoning model pays for the hidden reasoning', async () => {
    stack.provider.behaviour = { natural: 2_000, reasoning: 400, thinkMs: 100 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const body = JSON.stringify({
      model: 'o4-mini',
      max_tokens: 500,
      stream: true,
      messages: say('Tell me everything.'),
    });
    for (let i = 0; i < 5; i++) await stack.send(key!, body, { bytes: 1 }, '/messages');
    const bills = stack.billedSince(from);
    expect(bills.length).toBeGreaterThan(0);
    expect(billed(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it('many at once from one user stay within the user’s day, each call carrying its max_tokens', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const body = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 300, messages: say('Tell me everything.') });
    const answers = await Promise.all(Array.from({ length: 15 }, () => stack.send(key!, body, undefined, '/messages')));
    const bills = stack.billedSince(from);
    expect(answers.some((a) => a.status === 429)).toBe(true);
    for (const b of bills) expect(b.body).toMatchObject({ max_completion_tokens: 300 });
    expect(billed(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });
});
