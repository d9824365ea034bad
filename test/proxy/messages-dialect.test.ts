/**
 * Anthropic's Messages API as a client dialect and as an upstream, without DynamoDB: recorded
 * shapes translated both ways, validation, the real @anthropic-ai/sdk reading what the dialect
 * writes (through a tiny server here), and callAnthropic against the Anthropic stand-in, whose
 * own ledger says what was billed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import Anthropic, { APIError, BadRequestError, RateLimitError } from '@anthropic-ai/sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChatChunk } from '../../lambda/proxy/dialect';
import {
  anthropicRateLimitHeaders,
  countTokensAnswer,
  countTokensRequest,
  messagesDialect,
} from '../../lambda/proxy/dialects/messages';
import { proxyHeaders } from '../../lambda/proxy/headers';
import { chatInputBound } from '../../lambda/proxy/input-bound';
import { parseRequest, RequestError } from '../../lambda/proxy/validate';
import { listenLocal } from '../../local/listen';
import { MODEL, RECORDED_REQUEST } from '../support/messages-recorded';

type Json = Record<string, unknown>;
const PRICE = { inputPerMillion: 3, outputPerMillion: 15, partTokens: { image: 1_600 } };
const ENDPOINT = { models: { [MODEL]: PRICE } };

describe('Messages requests read into the canonical chat form', () => {
  it('translates every field of a recorded request, and the result passes the chat validation', () => {
    const chat = messagesDialect.toChat(structuredClone(RECORDED_REQUEST));
    expect(chat).toEqual({
      model: MODEL,
      max_tokens: 1024,
      messages: [
        { role: 'system', content: 'You are terse.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Weather in Paris? And what is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
          ],
        },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_01', content: '18C' },
        { role: 'user', content: [{ type: 'text', text: 'Thanks. In Kelvin?' }] },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather for a city',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          },
        },
      ],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stop: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      user: 'u-42',
      stream: true,
      stream_options: { include_usage: true },
    });
    const parsed = parseRequest('/v1/chat/completions', JSON.stringify(chat), false, ENDPOINT);
    expect(parsed).toMatchObject({ kind: 'chat', model: MODEL, stream: true, maxTokens: 1024 });
  });

  it('reads tool_choice tool and none, an errored tool result, and string content', () => {
    const chat = messagesDialect.toChat({
      model: MODEL,
      max_tokens: 5,
      messages: [
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'boom', is_error: true }] },
      ],
      tool_choice: { type: 'tool', name: 'get_weather' },
    });
    expect(chat.messages).toEqual([{ role: 'tool', tool_call_id: 't1', content: '[tool error] boom' }]);
    expect(chat.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } });
    const none = messagesDialect.toChat({
      model: MODEL,
      max_tokens: 5,
      messages: [{ role: 'user', content: 'hi' }],
      tool_choice: { type: 'none' },
    });
    expect(none).toEqual({
      model: MODEL,
      max_tokens: 5,
      messages: [{ role: 'user', content: 'hi' }],
      tool_choice: 'none',
    });
  });

  const base = (): Json => ({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
  it.each<[string, (b: Json) => void, string, string]>([
    ['max_tokens missing', (b) => delete b.max_tokens, 'max_tokens', 'max_tokens: Field required'],
    ['max_tokens 0 (a cache pre-warm)', (b) => (b.max_tokens = 0), 'max_tokens', 'pre-warming'],
    ['max_tokens not whole', (b) => (b.max_tokens = 1.5), 'max_tokens', 'whole number'],
    ['top_k', (b) => (b.top_k = 5), 'top_k', 'no equivalent'],
    ['thinking', (b) => (b.thinking = { type: 'enabled', budget_tokens: 2048 }), 'thinking', 'not supported'],
    ['speed fast', (b) => (b.speed = 'fast'), 'speed', 'priced above'],
    ['inference_geo', (b) => (b.inference_geo = 'us'), 'inference_geo', 'Extra inputs are not permitted'],
    ['temperature above 1', (b) => (b.temperature = 1.5), 'temperature', 'from 0 to 1'],
    ['metadata other than user_id', (b) => (b.metadata = { email: 'a@b' }), 'metadata.email', 'Extra inputs'],
    [
      'a server tool',
      (b) => (b.tools = [{ type: 'web_search_20250305', name: 'web_search' }]),
      'tools.0.type',
      'server or Anthropic-defined tool',
    ],
    [
      'a document block',
      (b) => (b.messages = [{ role: 'user', content: [{ type: 'document', source: {} }] }]),
      'messages.0.content.0.type',
      "'document' blocks are not supported",
    ],
    [
      'a tool_result from the assistant',
      (b) => (b.messages = [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 'x' }] }]),
      'messages.0.content.0.type',
      'cannot be in a assistant message',
    ],
    [
      'a file image source',
      (b) => (b.messages = [{ role: 'user', content: [{ type: 'image', source: { type: 'file', file_id: 'f' } }] }]),
      'messages.0.content.0.source',
      'file sources are not supported',
    ],
    [
      'a thinking block',
      (b) => (b.messages = [{ role: 'assistant', content: [{ type: 'thinking' }] }]),
      'messages.0.content.0.type',
      "'thinking'",
    ],
    ['no messages', (b) => (b.messages = []), 'messages', 'non-empty'],
  ])('refuses %s with a 400 naming the field', (_, change, param, message) => {
    const body = base();
    change(body);
    let error: unknown;
    try {
      messagesDialect.toChat(body);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RequestError);
    expect(error).toMatchObject({ status: 400, param });
    expect((error as Error).message).toContain(message);
    expect((error as Error).message.startsWith(`${param}: `)).toBe(true);
  });

  it('reads a count_tokens body without max_tokens, and refuses one with it', () => {
    const {
      max_tokens: _,
      stream: __,
      stop_sequences: ___,
      temperature: _t,
      top_p: _p,
      metadata: _m,
      ...count
    } = RECORDED_REQUEST;
    const chat = countTokensRequest(count);
    expect(chat.max_tokens).toBeUndefined();
    expect(chat.messages).toHaveLength(5);
    expect(chat.tools).toHaveLength(1);
    expect(() => countTokensRequest({ ...count, max_tokens: 5 })).toThrow('max_tokens: Extra inputs are not permitted');
    expect(countTokensAnswer(42)).toEqual({ input_tokens: 42 });
  });
});

/** A recorded chat.completion with a tool call, a matched stop sequence (vLLM's stop_reason) and cached input. */
const COMPLETION: Json = {
  id: 'chatcmpl-abc123',
  object: 'chat.completion',
  created: 1,
  model: 'upstream-model-name',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: 'Calling it.',
        tool_calls: [
          { id: 'call_9', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
        ],
      },
      finish_reason: 'tool_calls',
    },
  ],
  usage: {
    prompt_tokens: 120,
    completion_tokens: 17,
    total_tokens: 137,
    prompt_tokens_details: { cached_tokens: 100 },
  },
};

const chunk = (delta: Json, finish: string | null = null): ChatChunk => ({
  id: 'chatcmpl-s1',
  object: 'chat.completion.chunk',
  choices: [{ index: 0, delta, finish_reason: finish }],
});
/** A recorded canonical stream: text, two tool calls (arguments in pieces), finish, usage. */
const STREAM: ChatChunk[] = [
  chunk({ role: 'assistant', content: '' }),
  chunk({ content: 'Two ' }),
  chunk({ content: 'calls.' }),
  chunk({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'f', arguments: '' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }),
  chunk({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'g', arguments: '{}' } }] }),
  chunk({}, 'tool_calls'),
  { id: 'chatcmpl-s1', choices: [], usage: { prompt_tokens: 30, completion_tokens: 12 } },
];
describe('canonical answers written as Messages', () => {
  it('writes a chat.completion as a Message', () => {
    expect(messagesDialect.fromChat(COMPLETION, { model: MODEL })).toEqual({
      id: 'msg_abc123',
      type: 'message',
      role: 'assistant',
      model: MODEL,
      content: [
        { type: 'text', text: 'Calling it.' },
        { type: 'tool_use', id: 'call_9', name: 'get_weather', input: { city: 'Oslo' } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 20, output_tokens: 17, cache_creation_input_tokens: 0, cache_read_input_tokens: 100 },
    });
  });

  it.each([
    ['stop', undefined, 'end_turn', null],
    ['stop', 'END', 'stop_sequence', 'END'],
    ['length', undefined, 'max_tokens', null],
    ['content_filter', undefined, 'refusal', null],
  ])('finish_reason %s (stop_reason %s) is stop_reason %s', (finish, matched, stopReason, stopSequence) => {
    const completion = {
      ...COMPLETION,
      choices: [
        { index: 0, message: { role: 'assistant', content: 'x' }, finish_reason: finish, stop_reason: matched },
      ],
    };
    expect(messagesDialect.fromChat(completion, { model: MODEL })).toMatchObject({
      stop_reason: stopReason,
      stop_sequence: stopSequence,
    });
  });

  const parse = (events: string[]) =>
    events.map((e) => {
      const [, type, data] = /^event: (\S+)\ndata: (.*)\n\n$/s.exec(e)!;
      return { type, data: JSON.parse(data!) as Json };
    });

  it('writes a canonical stream as Messages events in Anthropic order', () => {
    const t = messagesDialect.stream({ model: MODEL }, 31);
    const events = parse([...STREAM.flatMap((c) => t.chunk(c)), ...t.end(true)]);
    expect(events.map((e) => `${e.type}${e.data.index ?? ''}`)).toEqual([
      'message_start',
      'content_block_start0',
      'content_block_delta0',
      'content_block_delta0',
      'content_block_stop0',
      'content_block_start1',
      'content_block_delta1',
      'content_block_delta1',
      'content_block_stop1',
      'content_block_start2',
      'content_block_delta2',
      'content_block_stop2',
      'message_delta',
      'message_stop',
    ]);
    expect(events[0]!.data.message).toMatchObject({ id: 'msg_s1', model: MODEL, usage: { input_tokens: 31 } });
    expect(events[5]!.data.content_block).toEqual({ type: 'tool_use', id: 'call_a', name: 'f', input: {} });
    expect(events[7]!.data.delta).toEqual({ type: 'input_json_delta', partial_json: '1}' });
    expect(events[12]!.data).toMatchObject({
      delta: { stop_reason: 'tool_use', stop_sequence: null },
      usage: { input_tokens: 30, output_tokens: 12 },
    });
  });

  it('owes nothing that looks whole when the stream broke, and closes what is owed when it ended without usage', () => {
    const broken = messagesDialect.stream({ model: MODEL }, 5);
    const sent = parse([...STREAM.slice(0, 3).flatMap((c) => broken.chunk(c)), ...broken.end(false)]);
    expect(sent.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
    ]);
    const noUsage = messagesDialect.stream({ model: MODEL }, 5);
    const ended = parse([...[STREAM[1]!, chunk({}, 'stop')].flatMap((c) => noUsage.chunk(c)), ...noUsage.end(true)]);
    expect(ended.map((e) => e.type).slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(ended.at(-2)!.data.delta).toMatchObject({ stop_reason: 'end_turn' });
  });

  it.each([
    [400, 'invalid_request_error'],
    [401, 'authentication_error'],
    [403, 'permission_error'],
    [404, 'not_found_error'],
    [413, 'request_too_large'],
    [422, 'invalid_request_error'],
    [429, 'rate_limit_error'],
    [500, 'api_error'],
    [502, 'api_error'],
    [503, 'overloaded_error'],
    [529, 'overloaded_error'],
  ])('answers status %i with error type %s', (status, type) => {
    const body = JSON.parse(messagesDialect.errorBody(status, { message: 'm', type: 'x', code: null }));
    expect(body).toEqual({ type: 'error', error: { type, message: 'm' } });
  });

  it('writes an error inside a stream as an error event', () => {
    const event = messagesDialect.errorEvent({
      message: 'Limit hit.',
      type: 'rate_limit_exceeded',
      code: 'tenant_tokens_per_day',
    });
    expect(event).toBe(
      'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"Limit hit."}}\n\n',
    );
  });

  it('states the proxy limits as anthropic-ratelimit-* headers, resets as RFC 3339 times', () => {
    const now = Date.parse('2025-06-01T12:00:00Z');
    const proxy = {
      ...proxyHeaders({ requestsLimit: 600, requestsRemaining: 599, requestsResetMs: 100 }),
      'x-ratelimit-limit-tokens': '20000',
      'x-ratelimit-remaining-tokens': '15000',
      'x-ratelimit-reset-tokens': '6m0s',
      'Retry-After': '7',
    };
    expect(anthropicRateLimitHeaders(proxy, now)).toEqual({
      'anthropic-ratelimit-requests-limit': '600',
      'anthropic-ratelimit-requests-remaining': '599',
      'anthropic-ratelimit-requests-reset': '2025-06-01T12:00:01Z',
      'anthropic-ratelimit-tokens-limit': '20000',
      'anthropic-ratelimit-tokens-remaining': '15000',
      'anthropic-ratelimit-tokens-reset': '2025-06-01T12:06:00Z',
      'retry-after': '7',
    });
    // Only X-RateLimit-*: the RateLimit field says which limit they describe.
    const focus = {
      'X-RateLimit-Limit': '100',
      'X-RateLimit-Remaining': '0',
      'X-RateLimit-Reset': '30',
      RateLimit: '"user_tokens_per_minute";r=0;t=30',
    };
    expect(anthropicRateLimitHeaders(focus, now)).toEqual({
      'anthropic-ratelimit-tokens-limit': '100',
      'anthropic-ratelimit-tokens-remaining': '0',
      'anthropic-ratelimit-tokens-reset': '2025-06-01T12:00:30Z',
    });
  });
});

/**
 * What the proxy will do with the dialect, in a tiny server: the request read with toChat (a
 * RequestError answered with errorBody), the canonical answer scripted by the test and written
 * back with fromChat or the stream translator, limits with errorBody and headers.
 */
interface Script {
  chunks?: ChatChunk[];
  completion?: Json;
  /** Answer this status (a limit) instead. */
  status?: number;
  /** The canonical stream breaks after this many chunks: the proxy sends an error event. */
  breakAfter?: number;
}

describe('the real Anthropic SDK reading what the dialect writes', () => {
  let script: Script = {};
  const seen: Json[] = [];
  let server: Server;
  let stop: () => Promise<void>;
  let client: Anthropic;

  const read = async (req: IncomingMessage): Promise<Json> => {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    return JSON.parse(Buffer.concat(parts).toString('utf8')) as Json;
  };
  const json = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  };

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await read(req);
    if (req.url === '/v1/messages/count_tokens') {
      const chat = countTokensRequest(body);
      return json(res, 200, JSON.stringify(countTokensAnswer(chatInputBound(chat, 'o200k_base', PRICE).inputTokens)));
    }
    let chat: Json;
    try {
      chat = messagesDialect.toChat(body);
    } catch (err) {
      const e = err as RequestError;
      return json(
        res,
        e.status,
        messagesDialect.errorBody(e.status, { message: e.message, type: 'invalid_request_error', code: e.code }),
      );
    }
    seen.push(chat);
    if (script.status) {
      const proxy = {
        'Retry-After': '7',
        'x-ratelimit-limit-requests': '10',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '7s',
      };
      const error = {
        message: 'This tenant’s tokens per day are used up.',
        type: 'rate_limit_exceeded',
        code: 'tenant_tokens_per_day',
      };
      return json(res, script.status, messagesDialect.errorBody(script.status, error), messagesDialect.headers(proxy));
    }
    if (chat.stream !== true) return json(res, 200, JSON.stringify(messagesDialect.fromChat(script.completion!, body)));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const translator = messagesDialect.stream(body, 11);
    const chunks = script.chunks ?? [];
    for (const c of chunks.slice(0, script.breakAfter ?? chunks.length)) res.write(translator.chunk(c).join(''));
    if (script.breakAfter === undefined) res.write(translator.end(true).join(''));
    else
      res.write(
        translator.end(false).join('') +
          messagesDialect.errorEvent({
            message: 'The model provider failed.',
            type: 'api_error',
            code: 'upstream_error',
          }),
      );
    res.end();
  }

  beforeAll(async () => {
    server = createServer((req, res) => void answer(req, res));
    const listening = await listenLocal(server);
    stop = listening.stop;
    client = new Anthropic({ apiKey: 'sk-test', baseURL: `http://127.0.0.1:${listening.port}`, maxRetries: 0 });
  });
  afterAll(() => stop());
  afterEach(() => {
    script = {};
    seen.length = 0;
  });

  const tools = [{ name: 'f', input_schema: { type: 'object' as const, properties: {} } }];

  it('messages.stream().finalMessage() gets the text, the tool inputs, the stop reason and the usage', async () => {
    script = { chunks: STREAM };
    const message = await client.messages
      .stream({ model: MODEL, max_tokens: 300, tools, messages: [{ role: 'user', content: 'go' }] })
      .finalMessage();
    expect(seen[0]).toMatchObject({ max_tokens: 300, stream: true, messages: [{ role: 'user', content: 'go' }] });
    expect(message.content).toEqual([
      { type: 'text', text: 'Two calls.' },
      { type: 'tool_use', id: 'call_a', name: 'f', input: { x: 1 } },
      { type: 'tool_use', id: 'call_b', name: 'g', input: {} },
    ]);
    expect(message).toMatchObject({ model: MODEL, stop_reason: 'tool_use', stop_sequence: null });
    expect(message.usage).toMatchObject({ input_tokens: 30, output_tokens: 12 });
  });

  it('messages.create() gets the Message', async () => {
    script = { completion: COMPLETION };
    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 50,
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(seen[0]).toEqual({ model: MODEL, max_tokens: 50, messages: [{ role: 'user', content: 'x' }] });
    expect(message.content).toEqual([
      { type: 'text', text: 'Calling it.' },
      { type: 'tool_use', id: 'call_9', name: 'get_weather', input: { city: 'Oslo' } },
    ]);
    expect(message.stop_reason).toBe('tool_use');
    expect(message.usage).toMatchObject({ input_tokens: 20, output_tokens: 17, cache_read_input_tokens: 100 });
  });

  it('a limit answered with errorBody and Retry-After is the SDK’s RateLimitError', async () => {
    script = { status: 429 };
    const error = await client.messages
      .create({ model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitError);
    const rate = error as RateLimitError;
    expect(rate.status).toBe(429);
    expect(rate.headers?.get('retry-after')).toBe('7');
    expect(rate.headers?.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(rate.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(rate.message).toContain('tokens per day are used up');
  });

  it('a request without max_tokens is the SDK’s BadRequestError naming it', async () => {
    const error = await client.messages
      .create({
        model: MODEL,
        messages: [{ role: 'user', content: 'x' }],
      } as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BadRequestError);
    expect((error as BadRequestError).message).toContain('max_tokens: Field required');
    expect(seen).toHaveLength(0);
  });

  it('a stream that breaks fails the SDK’s stream instead of ending as a whole message', async () => {
    script = { chunks: STREAM, breakAfter: 3 };
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 300,
      messages: [{ role: 'user', content: 'go' }],
    });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const error = await stream.finalMessage().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(APIError);
    expect((error as APIError).message).toContain('The model provider failed.');
    expect(texts.join('')).toBe('Two calls.');
  });

  it('messages.countTokens() gets the proxy’s count of the translated request', async () => {
    const count = (content: string) =>
      client.messages.countTokens({ model: MODEL, system: 'Be brief.', messages: [{ role: 'user', content }] });
    const short = await count('hi');
    const long = await count('hi '.repeat(200));
    const expected = chatInputBound(
      {
        model: MODEL,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hi' },
        ],
      },
      'o200k_base',
      PRICE,
    ).inputTokens;
    expect(short).toEqual({ input_tokens: expected });
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens + 150);
  });
});
