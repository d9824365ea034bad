/**
 * Amazon Bedrock as an upstream: the translation both ways on recorded shapes, then the adapter
 * with the real SDK client against the local Bedrock stand-in (signatures checked, a ledger of its
 * own), read the way the proxy reads any upstream (its SSE relay).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  BedrockStreamError,
  ConverseStreamTranslator,
  finishReason,
  toCompletion,
} from '../../lambda/proxy/bedrock/completion';
import { toConverse } from '../../lambda/proxy/bedrock/converse';
import { RETRY_AFTER_SECONDS } from '../../lambda/proxy/bedrock/errors';
import { type BedrockUpstreamOptions, callBedrock, countTokensBedrock } from '../../lambda/proxy/bedrock/upstream';
import { SseRelay } from '../../lambda/proxy/relay';
import { ClientGoneError, UpstreamTimeoutError, UpstreamUnreachableError } from '../../lambda/proxy/upstream';
import { safeUpstreamError } from '../../lambda/proxy/upstream-errors';
import { RequestError } from '../../lambda/proxy/validate';
import { type BedrockStandIn, startBedrockStandIn } from '../../local/bedrock-standin';

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } } },
  },
};
const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'claude-sonnet',
  messages: [{ role: 'user', content: 'Hello' }],
  max_tokens: 50,
  ...extra,
});

/** The RequestError toConverse throws for `body`. */
function refusal(body: Record<string, unknown>): RequestError {
  try {
    toConverse(body);
  } catch (err) {
    if (err instanceof RequestError) return err;
    throw err;
  }
  throw new Error('toConverse accepted the body');
}

describe('a chat request as Converse input', () => {
  it('puts system and developer messages in system, merges turns of one role, and always sends the cap', () => {
    const input = toConverse(
      chat({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
          { role: 'user', content: 'Hi' },
          { role: 'user', content: [{ type: 'text', text: 'Are you there?' }] },
          { role: 'assistant', content: 'Oui.' },
          { role: 'user', content: 'Bien.' },
        ],
        max_tokens: 300,
        max_completion_tokens: 200,
        temperature: 0.2,
        top_p: 0.9,
        stop: 'END',
      }),
    );
    expect(input).toEqual({
      system: [{ text: 'Be brief.' }, { text: 'Answer in French.' }],
      messages: [
        { role: 'user', content: [{ text: 'Hi' }, { text: 'Are you there?' }] },
        { role: 'assistant', content: [{ text: 'Oui.' }] },
        { role: 'user', content: [{ text: 'Bien.' }] },
      ],
      inferenceConfig: { maxTokens: 200, temperature: 0.2, topP: 0.9, stopSequences: ['END'] },
    });
  });

  it('sends tools, tool calls as toolUse and tool results as the user’s turn', () => {
    const input = toConverse(
      chat({
        messages: [
          { role: 'user', content: 'Weather in Paris and Rome?' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
              { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
          { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: 'rain' }] },
          { role: 'user', content: 'And tomorrow?' },
        ],
        tools: [weather],
        tool_choice: 'required',
      }),
    );
    expect(input.messages).toEqual([
      { role: 'user', content: [{ text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { toolUse: { toolUseId: 'call_1', name: 'get_weather', input: { city: 'Paris' } } },
          { toolUse: { toolUseId: 'call_2', name: 'get_weather', input: { city: 'Rome' } } },
        ],
      },
      {
        role: 'user',
        content: [
          { toolResult: { toolUseId: 'call_1', content: [{ text: 'sunny' }] } },
          { toolResult: { toolUseId: 'call_2', content: [{ text: 'rain' }] } },
          { text: 'And tomorrow?' },
        ],
      },
    ]);
    expect(input.toolConfig).toEqual({
      tools: [
        {
          toolSpec: {
            name: 'get_weather',
            description: 'The weather in a city',
            inputSchema: { json: weather.function.parameters },
          },
        },
      ],
      toolChoice: { any: {} },
    });
  });

  it.each([
    [undefined, { auto: {} }],
    ['auto', { auto: {} }],
    ['required', { any: {} }],
    [{ type: 'function', function: { name: 'get_weather' } }, { tool: { name: 'get_weather' } }],
  ])('tool_choice %j -> toolChoice %j', (choice, expected) => {
    expect(toConverse(chat({ tools: [weather], tool_choice: choice })).toolConfig?.toolChoice).toEqual(expected);
  });

  it("sends no tools for tool_choice 'none', and refuses it where the conversation holds tool calls", () => {
    expect(toConverse(chat({ tools: [weather], tool_choice: 'none' })).toolConfig).toBeUndefined();
    const withCall = chat({
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather' } }] },
        { role: 'tool', tool_call_id: 'c', content: 'sunny' },
      ],
      tools: [weather],
      tool_choice: 'none',
    });
    expect(refusal(withCall).param).toBe('tool_choice');
  });

  it('sends a data: URL image as bytes, and refuses a link naming the field', () => {
    const input = toConverse(
      chat({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'What is this?' },
              { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'low' } },
            ],
          },
        ],
      }),
    );
    const image = input.messages[0]?.content?.[1]?.image;
    expect(image?.format).toBe('png');
    expect(Buffer.from(image?.source?.bytes ?? []).toString('base64')).toBe(PNG);
    const linked = refusal(
      chat({
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }],
      }),
    );
    expect(linked).toMatchObject({ status: 400, param: 'messages[0].content[0].image_url.url' });
  });

  it.each([
    ['n', { n: 2 }],
    ['logprobs', { logprobs: true }],
    ['response_format', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }],
    ['audio', { audio: { voice: 'alloy', format: 'mp3' } }],
    ['service_tier', { service_tier: 'flex' }],
    ['reasoning_effort', { reasoning_effort: 'high' }],
    ['frequency_penalty', { frequency_penalty: 0.5 }],
    ['parallel_tool_calls', { parallel_tool_calls: false }],
    ['messages[0].name', { messages: [{ role: 'user', content: 'Hi', name: 'bob' }] }],
    ['max_tokens', { max_tokens: undefined }],
    ['messages', { messages: [{ role: 'assistant', content: 'I start.' }] }],
  ])('refuses %s, naming it, in words the proxy passes on', (param, extra) => {
    const err = refusal(chat(extra));
    expect(err.param).toBe(param);
    expect(err.status).toBe(400);
    // upstream-errors.ts shows an upstream's message only when it looks safe: this one must.
    expect(safeUpstreamError(JSON.stringify({ error: { message: err.message } }), 400).message).toBe(err.message);
  });

  it('drops what changes neither the answer nor its price, and accepts defaults', () => {
    const input = toConverse(
      chat({
        user: 'u-1',
        metadata: { team: 'a' },
        seed: 7,
        stream: true,
        stream_options: { include_usage: true },
        n: 1,
        logprobs: false,
        service_tier: 'auto',
        response_format: { type: 'text' },
        stop: null,
      }),
    );
    expect(input).toEqual({
      messages: [{ role: 'user', content: [{ text: 'Hello' }] }],
      inferenceConfig: { maxTokens: 50 },
    });
  });
});

const ids = { id: 'chatcmpl-r1', model: 'claude-sonnet', created: 1 };

// biome-ignore lint/suspicious/noExplicitAny: parsed JSON answers, asserted on field by field
type Answer = any;
const json = async (response: Response): Promise<Answer> => response.json();

/** Canonical SSE as the proxy's relay reads it. */
function relayed(sse: string) {
  const relay = new SseRelay(true);
  const events = relay.push(new TextEncoder().encode(sse));
  events.push(...relay.flush());
  return { relay, chunks: events.map((e) => e.slice(6).trim()).map((d) => (d === '[DONE]' ? d : JSON.parse(d))) };
}

describe('Converse answers as canonical chat answers', () => {
  const recorded = [
    { messageStart: { role: 'assistant' } },
    { contentBlockDelta: { contentBlockIndex: 0, delta: { reasoningContent: { text: 'The user wants' } } } },
    { contentBlockDelta: { contentBlockIndex: 0, delta: { reasoningContent: { signature: 'sig' } } } },
    { contentBlockStop: { contentBlockIndex: 0 } },
    { contentBlockDelta: { contentBlockIndex: 1, delta: { text: 'Let me check.' } } },
    { contentBlockStop: { contentBlockIndex: 1 } },
    {
      contentBlockStart: { contentBlockIndex: 2, start: { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather' } } },
    },
    { contentBlockDelta: { contentBlockIndex: 2, delta: { toolUse: { input: '{"city":' } } } },
    { contentBlockDelta: { contentBlockIndex: 2, delta: { toolUse: { input: '"Paris"}' } } } },
    { contentBlockStop: { contentBlockIndex: 2 } },
    { messageStop: { stopReason: 'tool_use' } },
    {
      metadata: {
        usage: { inputTokens: 40, outputTokens: 25, totalTokens: 165, cacheReadInputTokens: 100 },
        metrics: { latencyMs: 9 },
      },
    },
  ] as const;

  it('streams reasoning, text and a tool call as OpenAI does, then usage and [DONE]', () => {
    const translator = new ConverseStreamTranslator(ids);
    const sse = [...recorded.flatMap((e) => translator.event(e as never)), ...translator.end()].join('');
    const { relay, chunks } = relayed(sse);
    const deltas = chunks.slice(0, -2).map((c) => c.choices[0]);
    expect(deltas.map((c) => c.delta)).toEqual([
      { role: 'assistant', content: '' },
      { reasoning_content: 'The user wants' },
      { content: 'Let me check.' },
      {
        tool_calls: [{ index: 0, id: 'tooluse_1', type: 'function', function: { name: 'get_weather', arguments: '' } }],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] },
      {},
    ]);
    expect(deltas.at(-1).finish_reason).toBe('tool_calls');
    expect(chunks.at(-2)).toMatchObject({ id: 'chatcmpl-r1', model: 'claude-sonnet', choices: [] });
    expect(chunks.at(-1)).toBe('[DONE]');
    // What settlement reads: usage with the cache read inside prompt_tokens, every output channel, a whole answer.
    expect(relay.usage.reported).toEqual({
      prompt_tokens: 140,
      completion_tokens: 25,
      total_tokens: 165,
      prompt_tokens_details: { cached_tokens: 100, cache_write_tokens: 0 },
    });
    expect(relay.usage.text).toBe('The user wantsLet me check.get_weather{"city":"Paris"}');
    expect(relay.complete).toBe(true);
  });

  it.each([
    ['without its metadata', recorded.slice(0, -1)],
    ['before the message stopped', recorded.slice(0, 5)],
  ])('fails a stream that ends %s, with no usage chunk', (_, events) => {
    const translator = new ConverseStreamTranslator(ids);
    const sse = events.flatMap((e) => translator.event(e as never)).join('');
    expect(() => translator.end()).toThrow(BedrockStreamError);
    expect(relayed(sse).relay.usage.reported).toBeUndefined();
  });

  it('fails on an exception event', () => {
    const translator = new ConverseStreamTranslator(ids);
    expect(() => translator.event({ throttlingException: { message: 'slow down' } } as never)).toThrow(
      BedrockStreamError,
    );
  });

  it.each([
    ['end_turn', 'stop'],
    ['stop_sequence', 'stop'],
    ['max_tokens', 'length'],
    ['model_context_window_exceeded', 'length'],
    ['tool_use', 'tool_calls'],
    ['malformed_tool_use', 'tool_calls'],
    ['content_filtered', 'content_filter'],
    ['guardrail_intervened', 'content_filter'],
    ['malformed_model_output', 'stop'],
    ['a_reason_added_later', 'stop'],
  ])('stopReason %s -> finish_reason %s', (stop, finish) => {
    expect(finishReason(stop)).toBe(finish);
  });

  it('answers a whole Converse response as a chat.completion', () => {
    const completion = toCompletion(
      {
        output: {
          message: {
            content: [
              { reasoningContent: { reasoningText: { text: 'Hmm.', signature: 's' } } },
              { text: 'Checking.' },
              { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Paris' } } },
            ],
          },
        },
        stopReason: 'tool_use',
        usage: { inputTokens: 10, outputTokens: 20, totalTokens: 37, cacheWriteInputTokens: 7 },
      },
      ids,
    );
    expect(completion).toEqual({
      id: 'chatcmpl-r1',
      object: 'chat.completion',
      created: 1,
      model: 'claude-sonnet',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Checking.',
            reasoning_content: 'Hmm.',
            tool_calls: [
              { id: 'tooluse_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            ],
          },
          finish_reason: 'tool_calls',
        },
      ],
      usage: {
        prompt_tokens: 17,
        completion_tokens: 20,
        total_tokens: 37,
        prompt_tokens_details: { cached_tokens: 0, cache_write_tokens: 7 },
      },
    });
  });
});

describe('callBedrock against the Bedrock stand-in', () => {
  let standIn: BedrockStandIn;
  let options: BedrockUpstreamOptions;
  const PROFILE = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-v1:0';

  beforeAll(async () => {
    standIn = await startBedrockStandIn();
    options = {
      region: standIn.region,
      endpoint: standIn.endpoint,
      credentials: standIn.credentials,
      modelId: (model) => (model === 'claude-sonnet' ? PROFILE : model),
    };
  });
  afterAll(() => standIn.close());
  beforeEach(() => {
    standIn.behaviour = {};
    standIn.ledger.length = 0;
    standIn.requests.length = 0;
  });

  const call = (body: Record<string, unknown>, abort = new AbortController(), requestId?: string) =>
    callBedrock(options, body, abort, requestId);
  const lastBill = () => standIn.ledger.at(-1)!;

  it('streams the answer as canonical SSE whose usage is what Bedrock billed', async () => {
    standIn.behaviour = { natural: 30 };
    const response = await call(chat({ stream: true }), undefined, 'req-stream');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const { relay, chunks } = relayed(await response.text());
    const bill = lastBill();
    expect(bill).toMatchObject({ operation: 'converse-stream', modelId: PROFILE, requestId: 'req-stream', output: 30 });
    expect(relay.usage.reported).toMatchObject({ prompt_tokens: bill.input, completion_tokens: 30 });
    expect(relay.usage.text).toBe(' hi'.repeat(30));
    expect(relay.complete).toBe(true);
    expect(chunks.at(-1)).toBe('[DONE]');
    // The operators' model ARN never reaches the client: the answer names the client's model.
    expect(JSON.stringify(chunks)).not.toContain('arn:aws');
  });

  it('answers a non-streamed request with a chat.completion and its usage', async () => {
    standIn.behaviour = { natural: 12 };
    const response = await call(chat());
    expect(response.headers.get('content-type')).toContain('application/json');
    const completion = await json(response);
    expect(completion.choices[0]).toEqual({
      index: 0,
      message: { role: 'assistant', content: ' hi'.repeat(12) },
      finish_reason: 'stop',
    });
    expect(completion.usage).toMatchObject({ prompt_tokens: lastBill().input, completion_tokens: 12 });
  });

  it('always sends the output cap as maxTokens, and the stand-in stops there', async () => {
    standIn.behaviour = { natural: 500, reasoning: 16 };
    const response = await call(chat({ max_completion_tokens: 40, max_tokens: undefined, stream: true }));
    const { relay, chunks } = relayed(await response.text());
    expect((lastBill().request.inferenceConfig as { maxTokens: number }).maxTokens).toBe(40);
    expect(lastBill().output).toBe(40);
    expect(relay.usage.reported?.completion_tokens).toBe(40);
    expect(chunks.at(-3).choices[0].finish_reason).toBe('length');
    // The reasoning streamed is output the relay saw (a floor when usage is missing).
    expect(relay.usage.text).toBe(' hi'.repeat(40));
  });

  it('reports honestly a model that ignores the cap (settlement flags it)', async () => {
    standIn.behaviour = { natural: 90, ignoreMaxTokens: true };
    const { relay } = relayed(await (await call(chat({ max_tokens: 10, stream: true }))).text());
    expect(relay.usage.reported?.completion_tokens).toBe(90);
  });

  it('streams a tool call as OpenAI does', async () => {
    standIn.behaviour = { toolInput: { city: 'Paris' } };
    const response = await call(chat({ tools: [weather], tool_choice: 'required', stream: true }));
    const { chunks, relay } = relayed(await response.text());
    const calls = chunks.flatMap((c) => (c === '[DONE]' ? [] : (c.choices[0]?.delta?.tool_calls ?? [])));
    expect(calls[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather' } });
    expect(calls.map((c: { function: { arguments: string } }) => c.function.arguments).join('')).toBe(
      '{"city":"Paris"}',
    );
    expect(relay.usage.finished).toEqual(new Set([0]));
    expect(chunks.find((c) => c !== '[DONE]' && c.choices[0]?.finish_reason).choices[0].finish_reason).toBe(
      'tool_calls',
    );
    expect((lastBill().request.toolConfig as { toolChoice: unknown }).toolChoice).toEqual({ any: {} });
  });

  it('answers Bedrock throttling with a 429 and a Retry-After, and nothing is billed', async () => {
    standIn.behaviour = { refuse: 'ThrottlingException', refuseMessage: 'Too many tokens, please wait.' };
    const response = await call(chat({ stream: true }));
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe(String(RETRY_AFTER_SECONDS.throttled));
    expect((await json(response)).error).toMatchObject({ type: 'rate_limit_exceeded', code: 'upstream_throttled' });
    expect(standIn.ledger).toEqual([]);
  });

  it.each([
    ['ServiceQuotaExceededException', 429],
    ['AccessDeniedException', 403],
    ['ResourceNotFoundException', 403],
    ['ModelNotReadyException', 503],
    ['ServiceUnavailableException', 503],
    ['ModelTimeoutException', 504],
    ['InternalServerException', 502],
    ['ModelErrorException', 502],
  ] as const)('answers %s with %i, naming no AWS internals', async (exception, status) => {
    standIn.behaviour = {
      refuse: exception,
      refuseMessage: `User: arn:aws:sts::123456789012:assumed-role/proxy is not authorized (${exception})`,
    };
    const response = await call(chat());
    expect(response.status).toBe(status);
    const text = await response.text();
    expect(JSON.parse(text).error.message).toEqual(expect.any(String));
    expect(text).not.toMatch(/arn:aws|123456789012|assumed-role/);
  });

  it('passes on a ValidationException’s message when it is plain prose, never one naming AWS resources', async () => {
    standIn.behaviour = { refuse: 'ValidationException', refuseMessage: 'Input is too long for requested model.' };
    expect((await json(await call(chat()))).error).toMatchObject({
      message: 'Input is too long for requested model.',
      code: 'upstream_validation',
    });
    standIn.behaviour = { refuse: 'ValidationException', refuseMessage: `Invocation of ${PROFILE} is not allowed.` };
    const shown = (await json(await call(chat()))).error.message;
    expect(shown).not.toContain('arn:aws');
  });

  it('answers a request it cannot translate with a 400 naming the field, without calling Bedrock', async () => {
    const response = await call(chat({ n: 3 }));
    expect(response.status).toBe(400);
    expect((await json(response)).error).toMatchObject({ param: 'n', code: 'unsupported_parameter' });
    expect(standIn.requests).toEqual([]);
  });

  it.each([
    ['the connection is cut midway', { cutAfterEvents: 2 }],
    ['an exception event arrives midway', { streamException: { type: 'modelStreamErrorException', afterEvents: 2 } }],
    ['the metadata event never comes', { omitMetadata: true }],
  ] as const)('errors the body, not ends it, when %s', async (_, misbehaviour) => {
    standIn.behaviour = { natural: 64, ...misbehaviour };
    const response = await call(chat({ max_tokens: 100, stream: true }));
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const seen: string[] = [];
    const failure = await (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return undefined;
        seen.push(new TextDecoder().decode(value));
      }
    })().catch((err: Error) => err);
    expect(failure).toBeInstanceOf(BedrockStreamError);
    expect(seen.join('')).not.toContain('"usage"');
    expect(seen.join('')).toContain(' hi hi');
  });

  it('refuses a wrong secret key: the stand-in really checks the signature', async () => {
    const wrong = { ...options, credentials: { ...standIn.credentials, secretAccessKey: 'not-the-secret' } };
    const response = await callBedrock(wrong, chat(), new AbortController());
    expect(response.status).toBe(403);
    expect((await json(response)).error.code).toBe('upstream_auth_failed');
    expect(standIn.requests).toEqual([
      { operation: 'converse', modelId: PROFILE, signature: 'InvalidSignatureException' },
    ]);
    expect(standIn.ledger).toEqual([]);
    // The right key, same request: accepted.
    expect((await call(chat())).status).toBe(200);
    expect(standIn.requests.at(-1)?.signature).toBe('ok');
  });

  it('stops the stand-in’s generation when the client goes away mid-stream', async () => {
    standIn.behaviour = { natural: 4_000, eventMs: 5 };
    const abort = new AbortController();
    const response = await call(chat({ max_tokens: 4_000, stream: true }), abort);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.read();
    abort.abort(new ClientGoneError());
    await expect(reader.read()).rejects.toThrow();
    await expect.poll(() => lastBill().aborted).toBe(true);
    const { output } = lastBill();
    await new Promise((r) => setTimeout(r, 50));
    expect(lastBill().output).toBe(output);
    expect(output).toBeLessThan(4_000);
  });

  it('times out when Bedrock does not answer in time, and tells an unreachable endpoint apart', async () => {
    standIn.behaviour = { answerAfterMs: 2_000 };
    await expect(callBedrock({ ...options, firstByteTimeoutMs: 100 }, chat(), new AbortController())).rejects.toThrow(
      UpstreamTimeoutError,
    );
    const closed = await startBedrockStandIn();
    await closed.close();
    await expect(callBedrock({ ...options, endpoint: closed.endpoint }, chat(), new AbortController())).rejects.toThrow(
      UpstreamUnreachableError,
    );
  });

  it('counts input tokens with CountTokens as Bedrock bills them, undefined where the model cannot', async () => {
    const body = chat({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'What is the weather like in Paris today?' },
      ],
      tools: [weather],
    });
    // The proxy pre-counts before it sets the cap: a body without one is counted too.
    const counted = await countTokensBedrock(options, { ...body, max_tokens: undefined });
    await call(body);
    expect(counted).toBe(lastBill().input);
    standIn.behaviour = { noCountTokens: true };
    expect(await countTokensBedrock(options, body)).toBeUndefined();
  });
});
