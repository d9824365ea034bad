/**
 * The Responses dialect on recorded shapes (a Responses request -> the canonical chat body; chat
 * chunks -> Responses events; a chat.completion -> a Response), its refusals, and the real OpenAI
 * client against a local server that answers with what the dialect makes of a canonical answer.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { responsesDialect } from '../../lambda/proxy/dialects/responses';
import { parseRequest, RequestError } from '../../lambda/proxy/validate';

type Json = Record<string, unknown>;

/** A second turn as an agent sends it: the first answer's output items, then the function's output. */
const agentTurn = {
  model: 'gpt-4o-mini',
  instructions: 'You are terse.',
  input: [
    { role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris and Oslo?' }] },
    { id: 'rs_1', type: 'reasoning', summary: [], encrypted_content: 'gAAAA...' },
    {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      status: 'completed',
      content: [{ type: 'output_text', text: 'Checking.', annotations: [] }],
    },
    { id: 'fc_1', type: 'function_call', call_id: 'call_a', name: 'weather', arguments: '{"city":"Paris"}' },
    { id: 'fc_2', type: 'function_call', call_id: 'call_b', name: 'weather', arguments: '{"city":"Oslo"}' },
    { type: 'function_call_output', call_id: 'call_a', output: '18C' },
    { type: 'function_call_output', call_id: 'call_b', output: [{ type: 'input_text', text: '9C' }] },
    {
      type: 'message',
      role: 'user',
      content: [
        { type: 'input_text', text: 'And this?' },
        { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'low' },
      ],
    },
  ],
  tools: [
    {
      type: 'function',
      name: 'weather',
      description: 'Weather now',
      parameters: { type: 'object', properties: { city: { type: 'string' } } },
      strict: true,
    },
  ],
  tool_choice: { type: 'function', name: 'weather' },
  parallel_tool_calls: false,
  text: { format: { type: 'json_schema', name: 'answer', schema: { type: 'object' }, strict: true }, verbosity: 'low' },
  reasoning: { effort: 'low', summary: 'auto' },
  max_output_tokens: 300,
  temperature: 0.2,
  stream: true,
  store: true,
  metadata: { team: 'a' },
  include: ['reasoning.encrypted_content'],
  truncation: 'auto',
  safety_identifier: 'u-1',
  service_tier: 'flex',
};

describe('a Responses request as the canonical chat body', () => {
  it('translates an agent turn: instructions, history, calls merged into one assistant turn, results, tools, options', () => {
    expect(responsesDialect.toChat(agentTurn)).toEqual({
      model: 'gpt-4o-mini',
      temperature: 0.2,
      safety_identifier: 'u-1',
      service_tier: 'flex',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Oslo?' }] },
        {
          role: 'assistant',
          content: [{ type: 'text', text: 'Checking.' }],
          tool_calls: [
            { id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_b', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_a', content: '18C' },
        { role: 'tool', tool_call_id: 'call_b', content: [{ type: 'text', text: '9C' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'And this?' },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          ],
        },
      ],
      max_completion_tokens: 300,
      tools: [
        {
          type: 'function',
          function: {
            name: 'weather',
            description: 'Weather now',
            parameters: { type: 'object', properties: { city: { type: 'string' } } },
            strict: true,
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      parallel_tool_calls: false,
      verbosity: 'low',
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'answer', schema: { type: 'object' }, strict: true },
      },
      reasoning_effort: 'low',
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('makes a body the chat validation accepts as it is, with the cap where the proxy reads it', () => {
    const endpoint = {
      models: {
        'gpt-4o-mini': {
          inputPerMillion: 0.15,
          outputPerMillion: 0.6,
          partTokens: { image: 800 },
          serviceTiers: { flex: { inputPerMillion: 0.07, outputPerMillion: 0.3 } },
        },
      },
    };
    const chat = responsesDialect.toChat(agentTurn);
    const request = parseRequest('/v1/chat/completions', JSON.stringify(chat), false, endpoint);
    expect(request).toMatchObject({
      kind: 'chat',
      model: 'gpt-4o-mini',
      stream: true,
      maxTokens: 300,
      n: 1,
      serviceTier: 'flex',
    });
  });

  it('takes a string input as one user message; without tools, parallel_tool_calls is not sent', () => {
    expect(
      responsesDialect.toChat({ model: 'm', input: 'Hi', parallel_tool_calls: true, store: false, stream: false }),
    ).toEqual({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], stream: false });
  });

  it('takes a file by its content, and refuses one by id or URL', () => {
    const file = (part: Json) => ({
      model: 'm',
      input: [{ role: 'user', content: [{ type: 'input_file', ...part }] }],
    });
    expect(
      responsesDialect.toChat(file({ filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' })).messages,
    ).toEqual([
      {
        role: 'user',
        content: [{ type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }],
      },
    ]);
    expect(() => responsesDialect.toChat(file({ file_id: 'file-1' }))).toThrow(/stored with the provider/);
    expect(() => responsesDialect.toChat(file({ file_url: 'https://x/a.pdf' }))).toThrow(/file_url/);
  });

  it('starts a call-only assistant turn when no assistant message comes before the call', () => {
    const chat = responsesDialect.toChat({
      model: 'm',
      input: [
        { role: 'user', content: 'Go' },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '' },
        { type: 'function_call_output', call_id: 'c1', output: 'ok' },
      ],
    });
    expect(chat.messages).toEqual([
      { role: 'user', content: 'Go' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'ok' },
    ]);
  });

  const refusals: [string, Json, string, string][] = [
    [
      'a built-in tool',
      { tools: [agentTurn.tools[0], { type: 'web_search' }] },
      'tools[1].type',
      'unsupported_parameter',
    ],
    ['previous_response_id', { previous_response_id: 'resp_1' }, 'previous_response_id', 'unsupported_parameter'],
    ['conversation', { conversation: 'conv_1' }, 'conversation', 'unsupported_parameter'],
    ['background', { background: true }, 'background', 'unsupported_parameter'],
    ['a stored prompt', { prompt: { id: 'pmpt_1' } }, 'prompt', 'unsupported_parameter'],
    ['an unknown field', { n: 2 }, 'n', 'unknown_parameter'],
    ['include of logprobs', { include: ['message.output_text.logprobs'] }, 'include[0]', 'unsupported_parameter'],
    ['max_output_tokens 0', { max_output_tokens: 0 }, 'max_output_tokens', 'invalid_value'],
    [
      'an allowed_tools choice',
      { tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [] } },
      'tool_choice',
      'unsupported_parameter',
    ],
    ['an empty input', { input: [] }, 'input', 'missing_required_parameter'],
    ['a stored item', { input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0]', 'unsupported_parameter'],
    [
      'a built-in tool call item',
      { input: [{ type: 'web_search_call', id: 'ws_1' }] },
      'input[0].type',
      'unsupported_parameter',
    ],
    [
      'an image by file id',
      { input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-1' }] }] },
      'input[0].content[0].file_id',
      'unsupported_parameter',
    ],
    ['an unknown role', { input: [{ role: 'tool', content: 'x' }] }, 'input[0].role', 'invalid_value'],
    [
      'a call without arguments',
      { input: [{ type: 'function_call', call_id: 'c', name: 'f' }] },
      'input[0].arguments',
      'invalid_value',
    ],
    [
      'a call without call_id',
      { input: [{ type: 'function_call', name: 'f', arguments: '{}' }] },
      'input[0].call_id',
      'invalid_value',
    ],
    [
      'an image in a function output',
      {
        input: [
          {
            type: 'function_call_output',
            call_id: 'c',
            output: [{ type: 'input_image', image_url: 'https://x/y.png' }],
          },
        ],
      },
      'input[0].output[0].type',
      'unsupported_parameter',
    ],
  ];
  it.each(refusals)('refuses %s with a 400 naming the field', (_, fields, param, code) => {
    const body = { model: 'm', input: 'Hi', ...fields };
    let error: unknown;
    try {
      responsesDialect.toChat(body);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RequestError);
    expect(error).toMatchObject({ status: 400, param, code });
    expect((error as Error).message).toContain(`'${param.split('.')[0]}`);
  });
});

const completion = (message: Json, finish_reason = 'stop') => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_700_000_000,
  model: 'gpt-4o-mini-2024-07-18',
  service_tier: 'default',
  choices: [{ index: 0, message: { role: 'assistant', refusal: null, ...message }, logprobs: null, finish_reason }],
  usage: {
    prompt_tokens: 20,
    completion_tokens: 8,
    total_tokens: 28,
    prompt_tokens_details: { cached_tokens: 4, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 2, audio_tokens: 0 },
  },
});

describe('a chat.completion as a Response', () => {
  const request = {
    model: 'gpt-4o-mini',
    input: 'Hi',
    instructions: 'Be brief.',
    max_output_tokens: 50,
    metadata: { a: '1' },
  };

  it('is a completed Response with a message item, usage in Responses terms and the request echoed', () => {
    const response = responsesDialect.fromChat(completion({ content: 'Hello!' }), request);
    expect(response).toMatchObject({
      object: 'response',
      created_at: 1_700_000_000,
      status: 'completed',
      incomplete_details: null,
      error: null,
      model: 'gpt-4o-mini',
      instructions: 'Be brief.',
      max_output_tokens: 50,
      metadata: { a: '1' },
      store: false,
      service_tier: 'default',
      output: [
        {
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Hello!', annotations: [], logprobs: [] }],
        },
      ],
      usage: {
        input_tokens: 20,
        input_tokens_details: { cached_tokens: 4 },
        output_tokens: 8,
        output_tokens_details: { reasoning_tokens: 2 },
        total_tokens: 28,
      },
    });
    expect(response.id).toMatch(/^resp_/);
    expect((response.output as Json[])[0]!.id).toMatch(/^msg_/);
    expect(response).not.toHaveProperty('output_text');
  });

  it('is incomplete for max_output_tokens when the cap cut the answer, and for content_filter', () => {
    const cut = responsesDialect.fromChat(completion({ content: 'Hel' }, 'length'), request);
    expect(cut).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect((cut.output as Json[])[0]!.status).toBe('incomplete');
    expect(responsesDialect.fromChat(completion({ content: '' }, 'content_filter'), request)).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'content_filter' },
      output: [],
    });
  });

  it('gives one function_call item per tool call, and a refusal as a refusal part', () => {
    const calls = responsesDialect.fromChat(
      completion(
        {
          content: null,
          tool_calls: [
            { id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_b', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
          ],
        },
        'tool_calls',
      ),
      request,
    );
    expect(calls.output).toEqual([
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_a',
        name: 'weather',
        arguments: '{"city":"Paris"}',
        status: 'completed',
      }),
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_b',
        name: 'weather',
        arguments: '{"city":"Oslo"}',
        status: 'completed',
      }),
    ]);
    expect((calls.output as Json[])[0]!.id).toMatch(/^fc_/);
    const refused = responsesDialect.fromChat(completion({ content: null, refusal: 'I cannot.' }), request);
    expect((refused.output as Json[])[0]).toMatchObject({
      type: 'message',
      content: [{ type: 'refusal', refusal: 'I cannot.' }],
    });
  });
});

/** OpenAI's chat stream shapes: a role chunk, deltas, finish_reason, then the usage chunk. */
const chunk = (delta: Json, finish_reason: string | null = null) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1_700_000_000,
  model: 'gpt-4o-mini',
  service_tier: 'default',
  choices: [{ index: 0, delta, logprobs: null, finish_reason }],
  usage: null,
});
const usageChunk = { id: 'chatcmpl-1', object: 'chat.completion.chunk', choices: [], usage: completion({}).usage };
const textChunks = (parts: string[], finish = 'stop') => [
  chunk({ role: 'assistant', content: '', refusal: null }),
  ...parts.map((content) => chunk({ content })),
  chunk({}, finish),
  usageChunk,
];
const callChunks = [
  chunk({
    role: 'assistant',
    content: null,
    tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'weather', arguments: '' } }],
  }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
  chunk({
    tool_calls: [
      { index: 1, id: 'call_b', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } },
    ],
  }),
  chunk({}, 'tool_calls'),
  usageChunk,
];

/** Runs chunks through a translator; returns the SSE text and the events parsed back. */
function translate(
  chunks: Json[],
  complete = true,
  request: Json = { model: 'gpt-4o-mini', input: 'Hi', stream: true },
) {
  const translator = responsesDialect.stream(request, 20);
  const sse = [...chunks.flatMap((c) => translator.chunk(c)), ...translator.end(complete)];
  const events = sse.map((event) => {
    const [head, data] = event.split('\n');
    const parsed = JSON.parse(data!.slice('data: '.length)) as Json;
    expect(head).toBe(`event: ${parsed.type}`);
    expect(event.endsWith('\n\n')).toBe(true);
    return parsed;
  });
  return { sse: sse.join(''), events };
}

describe('the canonical stream as Responses events', () => {
  it('streams a text answer in OpenAI order, numbered from 0, and ends with usage in response.completed', () => {
    const { events } = translate(textChunks(['Hel', 'lo', '!']));
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta)).toEqual([
      'Hel',
      'lo',
      '!',
    ]);
    expect(events[7]).toMatchObject({ text: 'Hello!', output_index: 0, content_index: 0 });
    const done = events.at(-1)!.response as Json;
    expect(done).toMatchObject({
      status: 'completed',
      output: [{ type: 'message', status: 'completed', content: [{ type: 'output_text', text: 'Hello!' }] }],
      usage: { input_tokens: 20, output_tokens: 8, input_tokens_details: { cached_tokens: 4 } },
    });
    expect(done.id).toBe((events[0]!.response as Json).id);
  });

  it('holds the final event for the usage chunk, and without one sends it at the end', () => {
    const translator = responsesDialect.stream({ model: 'm', input: 'Hi' }, 20);
    const beforeUsage = textChunks(['Hi'])
      .slice(0, -1)
      .flatMap((c) => translator.chunk(c));
    expect(beforeUsage.some((e) => e.startsWith('event: response.completed'))).toBe(false);
    const end = translator.end(true);
    expect(end).toHaveLength(1);
    expect(JSON.parse(end[0]!.split('\n')[1]!.slice(6))).toMatchObject({
      type: 'response.completed',
      response: { usage: null },
    });
  });

  it('streams tool calls as function_call items, one after the other, arguments in deltas', () => {
    const { events } = translate(callChunks);
    expect(events.map((e) => e.type).slice(2)).toEqual([
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events[2]).toMatchObject({
      output_index: 0,
      item: { type: 'function_call', call_id: 'call_a', name: 'weather', arguments: '' },
    });
    expect(events[5]).toMatchObject({ name: 'weather', arguments: '{"city":"Paris"}', output_index: 0 });
    expect(events[7]).toMatchObject({ output_index: 1, item: { call_id: 'call_b' } });
    expect((events.at(-1)!.response as Json).output).toEqual([
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_a',
        arguments: '{"city":"Paris"}',
        status: 'completed',
      }),
      expect.objectContaining({
        type: 'function_call',
        call_id: 'call_b',
        arguments: '{"city":"Oslo"}',
        status: 'completed',
      }),
    ]);
  });

  it('keeps each call whole in the final Response when a call resumes after the next began', () => {
    const interleaved = [...callChunks.slice(0, 2), callChunks[3]!, callChunks[2]!, ...callChunks.slice(4)];
    const { events } = translate(interleaved);
    const firstDone = events.findIndex((e) => e.type === 'response.output_item.done');
    expect(events.slice(firstDone).filter((e) => e.type === 'response.function_call_arguments.delta')).toEqual([
      expect.objectContaining({ output_index: 1, delta: '{"city":"Oslo"}' }),
    ]);
    expect((events.at(-1)!.response as Json).output).toMatchObject([
      { call_id: 'call_a', arguments: '{"city":"Paris"}' },
      { call_id: 'call_b', arguments: '{"city":"Oslo"}' },
    ]);
  });

  it('streams a refusal as a refusal part of the message', () => {
    const { events } = translate([
      chunk({ role: 'assistant', refusal: 'I can' }),
      chunk({ refusal: 'not.' }),
      chunk({}, 'stop'),
    ]);
    expect(events.map((e) => e.type).slice(3, -2)).toEqual([
      'response.content_part.added',
      'response.refusal.delta',
      'response.refusal.delta',
      'response.refusal.done',
      'response.content_part.done',
    ]);
    expect(events.find((e) => e.type === 'response.refusal.done')).toMatchObject({ refusal: 'I cannot.' });
    expect((events.at(-1)!.response as Json).output).toMatchObject([
      { type: 'message', content: [{ type: 'refusal', refusal: 'I cannot.' }] },
    ]);
  });

  it('ends an answer cut by the cap with response.incomplete, its message incomplete', () => {
    const { events } = translate(textChunks(['Hel'], 'length'));
    expect(events.at(-1)).toMatchObject({
      type: 'response.incomplete',
      response: {
        status: 'incomplete',
        incomplete_details: { reason: 'max_output_tokens' },
        output: [{ status: 'incomplete' }],
      },
    });
    expect(events.find((e) => e.type === 'response.output_item.done')).toMatchObject({
      item: { status: 'incomplete' },
    });
  });

  it('puts reasoning text in a reasoning item before the message', () => {
    const { events } = translate([chunk({ reasoning_content: 'Think.' }), ...textChunks(['Hi'])]);
    const added = events.filter((e) => e.type === 'response.output_item.added').map((e) => (e.item as Json).type);
    expect(added).toEqual(['reasoning', 'message']);
    expect(events.find((e) => e.type === 'response.reasoning_text.delta')).toMatchObject({
      delta: 'Think.',
      output_index: 0,
    });
  });

  it('broken off, owes nothing that looks like a whole answer', () => {
    const { events } = translate(textChunks(['Hel']).slice(0, 2), false);
    expect(events.map((e) => e.type)).not.toContain('response.completed');
    expect(events.map((e) => e.type)).not.toContain('response.output_item.done');
  });

  it('turns an {error} chunk into an error event in sequence and a failed Response', () => {
    const error = { message: 'Upstream overloaded.', type: 'api_error', code: 'upstream_error', param: null };
    const { events } = translate([...textChunks(['Hel']).slice(0, 2), { error }], false);
    expect(events.slice(-2)).toMatchObject([
      {
        type: 'error',
        code: 'upstream_error',
        message: 'Upstream overloaded.',
        param: null,
        sequence_number: events.length - 2,
      },
      {
        type: 'response.failed',
        response: { status: 'failed', error: { code: 'server_error', message: 'Upstream overloaded.' } },
      },
    ]);
  });

  it('states errors in OpenAI shape: the body, and the stream error event', () => {
    const error = { message: 'Slow down.', type: 'rate_limit_exceeded', code: 'tenant_tokens_per_day', param: null };
    expect(JSON.parse(responsesDialect.errorBody(429, error))).toEqual({ error });
    const event = responsesDialect.errorEvent(error);
    expect(event).toMatch(/^event: error\ndata: .*\n\n$/);
    expect(JSON.parse(event.split('\n')[1]!.slice(6))).toEqual({
      type: 'error',
      code: 'tenant_tokens_per_day',
      message: 'Slow down.',
      param: null,
      sequence_number: 0,
    });
    expect(responsesDialect.headers({ 'x-ratelimit-limit': '10' })).toEqual({});
  });
});

describe('the OpenAI client against answers the dialect makes', () => {
  let server: Server;
  let client: OpenAI;
  /** The canonical bodies the dialect made of what the client sent. */
  const seen: Json[] = [];

  const read = async (req: IncomingMessage) => {
    let text = '';
    for await (const part of req) text += part;
    return JSON.parse(text) as Json;
  };

  beforeAll(async () => {
    server = createServer(async (req, res) => {
      const body = await read(req);
      if (body.model === 'limited') {
        const error = {
          message: 'Tenant limit reached.',
          type: 'rate_limit_exceeded',
          code: 'tenant_tokens_per_day',
          param: null,
        };
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
        return res.end(responsesDialect.errorBody(429, error));
      }
      const chat = responsesDialect.toChat(body);
      seen.push(chat);
      if (body.model === 'breaks') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const translator = responsesDialect.stream(body, 20);
        const error = {
          message: 'The model provider reported an error.',
          type: 'api_error',
          code: 'upstream_error',
          param: null,
        };
        for (const c of [...textChunks(['Hel']).slice(0, 2), { error }])
          for (const event of translator.chunk(c)) res.write(event);
        for (const event of translator.end(false)) res.write(event);
        return res.end();
      }
      // A stand-in upstream: calls the first tool if there is one, else says hello.
      const chunks = chat.tools ? callChunks : textChunks(['Hello', ', ', 'world']);
      if (!chat.stream) {
        const message = chat.tools
          ? {
              content: null,
              tool_calls: [
                { id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
              ],
            }
          : { content: 'Hello, world' };
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(
          JSON.stringify(responsesDialect.fromChat(completion(message, chat.tools ? 'tool_calls' : 'stop'), body)),
        );
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const translator = responsesDialect.stream(body, 20);
      for (const c of chunks) for (const event of translator.chunk(c)) res.write(event);
      for (const event of translator.end(true)) res.write(event);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = new OpenAI({
      apiKey: 'k',
      baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
      maxRetries: 0,
    });
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('iterates a streamed create: the event types in order, the deltas joined are the text', async () => {
    const stream = await client.responses.create({
      model: 'gpt-4o-mini',
      input: 'Say hello',
      max_output_tokens: 40,
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(text).toBe('Hello, world');
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(3);
    expect(seen.at(-1)).toMatchObject({
      max_completion_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it('gets the final Response of a stream: output_text, usage, and function_call items', async () => {
    const final = await client.responses.stream({ model: 'gpt-4o-mini', input: 'Say hello' }).finalResponse();
    expect(final.output_text).toBe('Hello, world');
    expect(final.status).toBe('completed');
    expect(final.usage).toMatchObject({ input_tokens: 20, output_tokens: 8, total_tokens: 28 });

    const calls = await client.responses
      .stream({
        model: 'gpt-4o-mini',
        input: 'Weather in Paris and Oslo?',
        tools: [{ type: 'function', name: 'weather', parameters: { type: 'object' }, strict: false }],
      })
      .finalResponse();
    const items = calls.output.filter((item) => item.type === 'function_call');
    expect(items.map((item) => [item.call_id, item.name, JSON.parse(item.arguments)])).toEqual([
      ['call_a', 'weather', { city: 'Paris' }],
      ['call_b', 'weather', { city: 'Oslo' }],
    ]);
  });

  it('reads a non-streamed Response: output_text and usage', async () => {
    const response = await client.responses.create({
      model: 'gpt-4o-mini',
      input: 'Say hello',
      instructions: 'Be brief.',
    });
    expect(response.output_text).toBe('Hello, world');
    expect(response.usage?.input_tokens_details.cached_tokens).toBe(4);
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBe(2);
    expect(response.instructions).toBe('Be brief.');
    expect(seen.at(-1)?.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Say hello' },
    ]);
  });

  it('sees an answer that fails midway as an error event and a failed Response; the stream helper throws', async () => {
    const stream = await client.responses.create({ model: 'breaks', input: 'Say hello', stream: true });
    const events = [];
    for await (const event of stream) events.push(event);
    expect(events.map((e) => e.type).slice(-2)).toEqual(['error', 'response.failed']);
    expect(events.at(-2)).toMatchObject({ code: 'upstream_error', message: 'The model provider reported an error.' });
    expect((events.at(-1) as { response: OpenAI.Responses.Response }).response).toMatchObject({
      status: 'failed',
      error: { code: 'server_error', message: 'The model provider reported an error.' },
      output: [{ type: 'message', status: 'incomplete', content: [{ type: 'output_text', text: 'Hel' }] }],
    });
    // The SDK's stream helper rejects on an error event, with its message.
    await expect(client.responses.stream({ model: 'breaks', input: 'Say hello' }).finalResponse()).rejects.toThrow(
      'The model provider reported an error.',
    );
  });

  it('surfaces a 429 from errorBody as a RateLimitError with the code and Retry-After', async () => {
    const error = await client.responses.create({ model: 'limited', input: 'Hi' }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const err = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.status).toBe(429);
    expect(err.code).toBe('tenant_tokens_per_day');
    expect(err.message).toContain('Tenant limit reached.');
    expect(err.headers?.get('retry-after')).toBe('7');
  });
});
