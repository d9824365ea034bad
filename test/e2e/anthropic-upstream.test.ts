/**
 * npm start --upstream anthropic: an Anthropic-compatible Messages API behind the limiter (here
 * the built-in stand-in, which keeps its own ledger). OpenAI clients on /v1/chat/completions and
 * Anthropic clients on /v1/messages both reach it; the key goes as x-api-key from Secrets
 * Manager, every call carries max_tokens, and what the stand-in billed is what is settled.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AnthropicStandIn } from '../../local/anthropic-standin';
import { type LocalStack, startLocal } from '../../local/start';
import { parseStartOptions } from '../../local/start-options';

let local: LocalStack;
let provider: AnthropicStandIn;
beforeAll(async () => {
  const parsed = parseStartOptions(['--port', '0'], { UPSTREAM_KIND: 'anthropic' });
  expect(parsed).toEqual({ options: { port: 0, upstreamKind: 'anthropic' } });
  local = await startLocal({ ...(parsed as { options: object }).options, summary: () => {} });
  provider = local.anthropic!;
}, 60_000);
afterAll(() => local.stop());

describe('npm start --upstream anthropic', () => {
  it('answers an OpenAI client from an Anthropic-format upstream: the key as x-api-key, max_tokens always sent', async () => {
    provider.behaviour = { words: ['Hello', ' from', ' Claude'] };
    const openai = new OpenAI({ apiKey: local.apiKey, baseURL: local.baseUrl, maxRetries: 0 });
    const from = provider.requests.length;
    const stream = await openai.chat.completions.create({
      model: 'claude-3-5-haiku',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe('Hello from Claude');
    const [sent] = provider.requests.slice(from);
    // The demo plan's output reservation went out as the cap; the model by its upstream name; the stand-in's key.
    expect(sent!.body).toMatchObject({
      model: 'us.anthropic.claude-3-5-haiku-20241022-v1:0',
      max_tokens: 256,
      system: [{ type: 'text', text: 'Be brief.' }],
    });
    expect(sent!.apiKey).toBe('sk-local-stand-in');
    const [bill] = provider.ledger.slice(-1);
    expect(usage).toMatchObject({ prompt_tokens: bill!.inputTokens, completion_tokens: bill!.outputTokens });
  });

  it('serves Anthropic’s own SDK on /v1/messages from it, streamed', async () => {
    provider.behaviour = { words: ['Hi', '!'] };
    const anthropic = new Anthropic({ apiKey: local.apiKey, baseURL: local.url, maxRetries: 0 });
    const message = await anthropic.messages
      .stream({ model: 'claude-3-5-haiku', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage();
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'Hi!' });
    expect(message.usage.output_tokens).toBe(provider.ledger.at(-1)!.outputTokens);
    expect(provider.requests.at(-1)!.body).toMatchObject({ max_tokens: 64 });
  });

  it('passes the provider’s 429 on with its Retry-After, refunded', async () => {
    provider.behaviour = { status: 429, retryAfter: '7' };
    const openai = new OpenAI({ apiKey: local.apiKey, baseURL: local.baseUrl, maxRetries: 0 });
    const refused = openai.chat.completions.create({
      model: 'claude-3-5-haiku',
      messages: [{ role: 'user', content: 'hi' }],
    });
    await expect(refused).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const err = (await refused.catch((e: unknown) => e)) as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.headers?.get('retry-after')).toBe('7');
  });
});
