/**
 * callAnthropic against the Anthropic stand-in, whose own ledger says what it billed: the
 * reserved cap always sent, answers and streams read back in the canonical form by the proxy's
 * own relay, usage translated, and every failure (a cut stream, an error event, a 429) as the
 * proxy must see it. Last, the whole way round: the real Anthropic SDK through the Messages
 * dialect and the Anthropic upstream to the stand-in.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { chatToMessagesRequest } from '../../lambda/proxy/anthropic-request';
import { AnthropicStreamError, callAnthropic } from '../../lambda/proxy/anthropic-upstream';
import { exhaustedUntil } from '../../lambda/proxy/upstream-feedback';
import { messagesDialect } from '../../lambda/proxy/dialects/messages';
import { SseRelay } from '../../lambda/proxy/relay';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../../lambda/proxy/upstream';
import { safeUpstreamError } from '../../lambda/proxy/upstream-errors';
import { RequestError } from '../../lambda/proxy/validate';
import { type AnthropicStandIn, startAnthropicStandIn } from '../../local/anthropic-standin';
import { listenLocal } from '../../local/listen';
import { RECORDED_REQUEST } from '../support/messages-recorded';

type Json = Record<string, unknown>;
const MODEL = 'claude-haiku-4-5';
const WORDS = ['One', ' two', ' three', ' four', ' five', ' six', ' seven', ' eight'];

let standIn: AnthropicStandIn;
const options = () => ({ baseUrl: standIn.baseUrl, apiKey: async () => 'sk-ant-test' });
const chat = (extra: Json = {}): Json => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'Count.' }],
  max_completion_tokens: 100,
  ...extra,
});

/** The canonical body read as the proxy reads it: the relay's events and what it recorded for settlement. */
async function relayed(response: Response): Promise<{ relay: SseRelay; events: Json[] }> {
  const relay = new SseRelay(true);
  const raw: string[] = [];
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    raw.push(...relay.push(value));
  }
  raw.push(...relay.flush());
  const events = raw
    .map((e) => e.replace(/^data: /, '').trim())
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as Json);
  return { relay, events };
}

beforeAll(async () => {
  standIn = await startAnthropicStandIn();
});
afterAll(() => standIn.stop());
beforeEach(() => {
  standIn.behaviour = { words: WORDS };
  standIn.requests.length = 0;
  standIn.ledger.length = 0;
});

describe('callAnthropic', () => {
  it("passes on the provider's rate-limit headers, streamed or not, so an exhausted limit cools the model down", async () => {
    const reset = new Date(Date.now() + 3_000).toISOString();
    standIn.behaviour = {
      words: WORDS,
      headers: {
        'anthropic-ratelimit-requests-remaining': '0',
        'anthropic-ratelimit-requests-reset': reset,
        'anthropic-ratelimit-tokens-remaining': '9000',
      },
    };
    for (const stream of [false, true]) {
      const response = await callAnthropic(options(), chat({ stream }), new AbortController());
      expect(response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
      expect(response.headers.get('anthropic-ratelimit-tokens-remaining')).toBe('9000');
      const now = Date.now();
      expect(exhaustedUntil(response.headers, now, 10_000)).toBe(Date.parse(reset));
    }
  });

  it('sends the reserved cap as max_tokens, with the key and version, and reads the Message as a chat.completion', async () => {
    const response = await callAnthropic(options(), chat({ max_completion_tokens: 5 }), new AbortController(), 'req-1');
    const completion = (await response.json()) as Json;
    expect(standIn.requests[0]).toMatchObject({
      path: '/v1/messages',
      apiKey: 'sk-ant-test',
      version: '2023-06-01',
      body: { model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'text', text: 'Count.' }] }] },
    });
    const [bill] = standIn.ledger;
    expect(bill!.outputTokens).toBe(5);
    expect(completion).toMatchObject({
      object: 'chat.completion',
      choices: [{ message: { role: 'assistant', content: 'One two three four five' }, finish_reason: 'length' }],
      usage: { prompt_tokens: bill!.inputTokens, completion_tokens: 5, total_tokens: bill!.inputTokens + 5 },
    });
  });

  it('takes the cap from max_tokens too, and refuses a body without one', async () => {
    const { max_completion_tokens: _, ...uncapped } = chat();
    await callAnthropic(options(), { ...uncapped, max_tokens: 3 }, new AbortController());
    expect(standIn.requests[0]!.body.max_tokens).toBe(3);
    await expect(callAnthropic(options(), uncapped, new AbortController())).rejects.toThrow('reserved output cap');
    expect(standIn.requests).toHaveLength(1);
  });

  it('streams as canonical chunks, a usage chunk that equals the provider’s bill, and [DONE]', async () => {
    standIn.behaviour = { words: WORDS, cacheReadTokens: 4 };
    const response = await callAnthropic(
      options(),
      chat({ stream: true, stream_options: { include_usage: true } }),
      new AbortController(),
    );
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const { relay, events } = await relayed(response);
    const [bill] = standIn.ledger;
    expect(relay.usage.text).toBe(WORDS.join(''));
    expect(relay.usage.done).toBe(true);
    expect(relay.complete).toBe(true);
    expect(relay.usage.reported).toEqual({
      prompt_tokens: bill!.inputTokens,
      completion_tokens: bill!.outputTokens,
      total_tokens: bill!.inputTokens + bill!.outputTokens,
      prompt_tokens_details: { cached_tokens: 4 },
    });
    expect(events.at(-2)).toMatchObject({ choices: [{ delta: {}, finish_reason: 'stop' }] });
  });

  it('streams a tool call as tool_calls deltas, and names the matched stop sequence', async () => {
    standIn.behaviour = { words: ['Sure.'], toolUse: { name: 'lookup', input: { q: 'tides', days: 3 } } };
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
    const { events } = await relayed(
      await callAnthropic(options(), chat({ stream: true, tools, tool_choice: 'required' }), new AbortController()),
    );
    expect(standIn.requests[0]!.body).toMatchObject({
      tools: [{ name: 'lookup', input_schema: { type: 'object' } }],
      tool_choice: { type: 'any' },
    });
    const calls = events.flatMap(
      (e) => ((e.choices as Json[])[0]?.delta as Json | undefined)?.tool_calls ?? [],
    ) as Json[];
    expect(calls[0]).toMatchObject({
      index: 0,
      id: expect.stringMatching(/^toolu_standin\d+$/),
      function: { name: 'lookup' },
    });
    expect(calls.map((c) => (c.function as Json).arguments).join('')).toBe('{"q":"tides","days":3}');
    expect(events.at(-2)).toMatchObject({ choices: [{ finish_reason: 'tool_calls' }] });

    standIn.behaviour = { words: ['a', ' b', ' END', ' c'] };
    const stopped = (await (
      await callAnthropic(options(), chat({ stop: 'END' }), new AbortController())
    ).json()) as Json;
    expect(standIn.requests[1]!.body.stop_sequences).toEqual(['END']);
    expect((stopped.choices as Json[])[0]).toMatchObject({
      message: { content: 'a b' },
      finish_reason: 'stop',
      stop_reason: 'END',
    });
    expect(messagesDialect.fromChat(stopped, { model: MODEL })).toMatchObject({
      stop_reason: 'stop_sequence',
      stop_sequence: 'END',
    });
  });

  it('fails the body of a stream the provider cut, after what it had relayed', async () => {
    standIn.behaviour = { words: WORDS, cutAfterDeltas: 2 };
    const response = await callAnthropic(options(), chat({ stream: true }), new AbortController());
    const relay = new SseRelay(true);
    const reader = response.body!.getReader();
    const read = async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        relay.push(value);
      }
    };
    await expect(read()).rejects.toThrow();
    expect(relay.usage.text).toBe('One two');
    expect(relay.usage.reported).toBeUndefined();
    expect(standIn.ledger[0]!.outputTokens).toBe(2);
  });

  it.each([
    ['at an error event inside the stream', { errorAfterDeltas: 3 }, 'overloaded_error'],
    ['when the stream ends cleanly before message_stop', { endAfterDeltas: 3 }, 'incomplete_stream'],
  ])('fails the body %s', async (_, misbehaviour, type) => {
    standIn.behaviour = { words: WORDS, ...misbehaviour };
    const response = await callAnthropic(options(), chat({ stream: true }), new AbortController());
    const error = await relayed(response).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AnthropicStreamError);
    expect(error).toMatchObject({ type });
  });

  it('passes a 429 on with its Retry-After and an OpenAI-shaped body the proxy reads', async () => {
    standIn.behaviour = { status: 429, retryAfter: '9' };
    const response = await callAnthropic(options(), chat(), new AbortController());
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('9');
    const text = await response.text();
    expect(JSON.parse(text)).toEqual({
      error: { message: 'stand-in says 429', type: 'rate_limit_exceeded', param: null, code: 'rate_limit_error' },
    });
    expect(safeUpstreamError(text, 429)).toMatchObject({ message: 'stand-in says 429', code: 'rate_limit_error' });
    expect(standIn.ledger).toHaveLength(0);
  });

  it.each<[string, Json]>([
    ['n', { n: 2 }],
    ['logprobs', { logprobs: true }],
    ['response_format', { response_format: { type: 'json_schema', json_schema: {} } }],
    ['reasoning_effort', { reasoning_effort: 'high' }],
    [
      'messages[0].content[0].type',
      { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] },
    ],
  ])('refuses %s before calling, naming it', async (param, extra) => {
    const error = await callAnthropic(options(), chat(extra), new AbortController()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RequestError);
    expect(error).toMatchObject({ status: 400, param });
    expect(standIn.requests).toHaveLength(0);
  });

  it('fails as callUpstream does: unreachable, and no headers in time', async () => {
    const closed = { baseUrl: 'http://127.0.0.1:9/v1', apiKey: async () => '' };
    await expect(callAnthropic(closed, chat(), new AbortController())).rejects.toBeInstanceOf(UpstreamUnreachableError);
    standIn.behaviour = { words: WORDS, delayMs: 2_000 };
    const slow = { ...options(), firstByteTimeoutMs: 50 };
    await expect(callAnthropic(slow, chat(), new AbortController())).rejects.toBeInstanceOf(UpstreamTimeoutError);
  });
});

describe('a Messages request, read into the canonical form, goes to an Anthropic upstream as it came', () => {
  it('translates back every field it read, cache_control aside', () => {
    const expected = structuredClone(RECORDED_REQUEST) as Json & { messages: { content: Json[] }[]; tools: Json[] };
    expected.system = [{ type: 'text', text: 'You are terse.' }];
    delete expected.tools[0]!.cache_control;
    // A tool result's text blocks come back as its text.
    expected.messages[2]!.content[0]!.content = '18C';
    expect(chatToMessagesRequest(messagesDialect.toChat(structuredClone(RECORDED_REQUEST)))).toEqual(expected);
  });
});

describe('the Anthropic SDK through the Messages dialect and the Anthropic upstream', () => {
  let stop: () => Promise<void>;
  let client: Anthropic;

  /** What the proxy does between them (no limits here): toChat, callAnthropic, the stream translator. */
  async function proxy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as Json;
    const upstream = await callAnthropic(options(), messagesDialect.toChat(body), new AbortController());
    if (body.stream !== true) {
      res.writeHead(upstream.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(messagesDialect.fromChat((await upstream.json()) as Json, body)));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const translator = messagesDialect.stream(body, 1);
    try {
      const { events, relay } = await relayed(upstream);
      for (const event of events) res.write(translator.chunk(event).join(''));
      res.write(translator.end(relay.complete).join(''));
    } catch {
      res.write(translator.end(false).join(''));
      res.write(messagesDialect.errorEvent({ message: 'The model provider failed.', type: 'api_error', code: null }));
    }
    res.end();
  }

  beforeAll(async () => {
    const listening = await listenLocal(createServer((req, res) => void proxy(req, res)));
    stop = listening.stop;
    client = new Anthropic({ apiKey: 'sk-client', baseURL: `http://127.0.0.1:${listening.port}`, maxRetries: 0 });
  });
  afterAll(() => stop());

  it('the client’s max_tokens is the provider’s cap, and the usage it sees is what the provider billed', async () => {
    const message = await client.messages
      .stream({ model: MODEL, max_tokens: 3, messages: [{ role: 'user', content: 'Count.' }] })
      .finalMessage();
    const [bill] = standIn.ledger;
    expect(standIn.requests[0]!.body.max_tokens).toBe(3);
    expect(message.content).toEqual([{ type: 'text', text: 'One two three' }]);
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.usage).toMatchObject({ input_tokens: bill!.inputTokens, output_tokens: bill!.outputTokens });
    expect(bill!.outputTokens).toBe(3);

    const created = await client.messages.create({
      model: MODEL,
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Count.' }],
    });
    expect(created.content).toEqual([{ type: 'text', text: WORDS.join('') }]);
    expect(created.usage).toMatchObject({ input_tokens: standIn.ledger[1]!.inputTokens, output_tokens: 8 });
  });

  it('a stream the provider cut fails for the client too', async () => {
    standIn.behaviour = { words: WORDS, cutAfterDeltas: 4 };
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Count.' }],
    });
    await expect(stream.finalMessage()).rejects.toThrow('The model provider failed.');
  });
});
