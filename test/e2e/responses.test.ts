/**
 * POST /v1/responses through npm start's stack, driven by the official OpenAI client, in front of
 * a provider stand-in that bills like one: the Responses API works streamed and not, refuses
 * what it cannot honour, answers 429 the way the SDK expects, and obeys every hard-cap rule of
 * the chat route (it is translated to a chat request: lambda/proxy/dialects/responses.ts).
 */
import OpenAI from 'openai';
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

const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: stack.local.baseUrl, maxRetries: 0 });
const ask = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, input: 'Tell me everything.', ...extra });

describe('the Responses API through the official client', () => {
  it('streams response events in order, the text the provider wrote, and the usage it billed', async () => {
    stack.provider.behaviour = { natural: 40 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const stream = await client(key!).responses.create({
      model: 'gpt-4o-mini',
      input: 'Say hi.',
      max_output_tokens: 100,
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    let completed: OpenAI.Responses.Response | undefined;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = event.response;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(types).toContain('response.output_item.added');
    const [bill] = stack.provider.bills.slice(from);
    expect(text).toBe(' hi'.repeat(40));
    expect(completed?.usage).toMatchObject({ input_tokens: bill!.input, output_tokens: 40 });
    expect(completed?.status).toBe('completed');
    // The cap the client set is the one the provider was sent.
    expect(bill!.body).toMatchObject({ max_completion_tokens: 100, stream: true });
    await settledAtLeastBilled(stack, [bill!]);
    expect(stack.settled.get(bill!.requestId)).toBe(bill!.input + 40);
  });

  it('answers a request that is not streamed with a Response the SDK reads (output_text, usage)', async () => {
    stack.provider.behaviour = { natural: 16 };
    const [key] = await stack.newTenant();
    const response = await client(key!).responses.create({
      model: 'gpt-4o-mini',
      instructions: 'Be brief.',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Say hi.' }] }],
    });
    expect(response.object).toBe('response');
    expect(response.output_text).toBe(' hi'.repeat(16));
    expect(response.usage?.output_tokens).toBe(16);
  });

  it('refuses what it cannot honour with a 400 naming the field, and spends nothing', async () => {
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const refused = client(key!).responses.create({
      model: 'gpt-4o-mini',
      input: 'hi',
      previous_response_id: 'resp_123',
    });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(refused).rejects.toMatchObject({ status: 400, param: 'previous_response_id' });
    const builtIn = client(key!).responses.create({
      model: 'gpt-4o-mini',
      input: 'hi',
      tools: [{ type: 'web_search' }],
    });
    await expect(builtIn).rejects.toMatchObject({ status: 400, param: 'tools[0].type' });
    expect(stack.provider.bills.length).toBe(from);
  });

  it('answers 429 past a limit as the SDK expects it (RateLimitError, Retry-After), with the code that hit', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await stack.newTenant();
    // The first answer spends two thirds of the user's day; the second asks for more than is left.
    const openai = client(key!);
    await openai.responses.create({ model: 'gpt-4o-mini', input: 'hi', max_output_tokens: USER_DAY - 100 });
    const denied = openai.responses.create({ model: 'gpt-4o-mini', input: 'hi', max_output_tokens: USER_DAY - 100 });
    await expect(denied).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const err = (await denied.catch((e: unknown) => e)) as InstanceType<typeof OpenAI.RateLimitError>;
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(err.code).toMatch(/tokens/);
  });
});

describe('the hard cap on the Responses route', () => {
  it('no max_output_tokens (the SDK default): every call upstream carries the default cap, bounded by the limits', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const answers: { status: number }[] = [];
    for (let i = 0; i < 40 && !answers.some((a) => a.status === 429); i++)
      answers.push(await stack.send(key!, ask('gpt-4o-mini', { stream: i % 2 === 0 }), undefined, '/responses'));
    const bills = stack.billedSince(from);
    expect(answers.filter((a) => a.status === 429).length).toBe(1);
    for (const b of bills) expect(b.body).toMatchObject({ max_completion_tokens: 200 });
    expect(billed(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it('a client that leaves mid-stream from a reasoning model pays for the hidden reasoning', async () => {
    stack.provider.behaviour = { natural: 2_000, reasoning: 400, thinkMs: 100 };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    for (let i = 0; i < 5; i++)
      await stack.send(key!, ask('o4-mini', { stream: true, max_output_tokens: 500 }), { bytes: 1 }, '/responses');
    const bills = stack.billedSince(from);
    expect(bills.length).toBeGreaterThan(0);
    expect(billed(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it('an answer streamed without usage is settled on what the relay saw, never below the bill', async () => {
    stack.provider.behaviour = { natural: 2_000, usage: false };
    const [key] = await stack.newTenant();
    const from = stack.provider.bills.length;
    const sent = await stack.send(
      key!,
      ask('llama3.1', { stream: true, max_output_tokens: 100 }),
      undefined,
      '/responses',
    );
    expect(sent.status).toBe(200);
    const bills = stack.billedSince(from);
    await settledAtLeastBilled(stack, bills);
    // No usage came: the 100 tokens the client was shown (counted as a bound: llama3.1's tokenizer is not known here).
    expect(sent.body).toContain('"type":"response.completed"');
    expect(stack.settled.get(bills[0]!.requestId)).toBeGreaterThanOrEqual(bills[0]!.input + 100);
  });
});
