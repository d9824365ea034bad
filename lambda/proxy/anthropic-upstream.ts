/**
 * An Anthropic-compatible upstream (Anthropic's API, or anything that speaks Messages): the
 * canonical chat body goes out as a Messages request with the reserved cap in `max_tokens`
 * (anthropic-request.ts), and the answer comes back in the canonical form the proxy reads for
 * every upstream, so its relay, floors and settlement apply unchanged:
 * - a Message -> a chat.completion; an error status -> the same status with an OpenAI-shaped
 *   body (Anthropic's error type as its `code`) and Retry-After passed on;
 * - the streaming events -> chat.completion.chunk events, a usage chunk at message_stop, then
 *   `[DONE]`. An `error` event, an unreadable event, or a stream that ends before message_stop
 *   makes the body fail: the proxy then settles at the bound, as for any broken stream.
 *
 * Usage: prompt_tokens = input_tokens + cache_creation_input_tokens + cache_read_input_tokens
 * (Anthropic's input_tokens leaves the cached ones out), cache reads named as
 * prompt_tokens_details.cached_tokens (priced at the model's cachedInputPerMillion), and
 * completion_tokens = output_tokens. The last message_delta's usage is cumulative and final
 * (https://docs.claude.com/en/docs/build-with-claude/streaming#event-types).
 */
import { chatToMessagesRequest } from './anthropic-request';
import { chatErrorType, chatUsageOf, finishReasonOf, isRecord, type Json, str } from './dialects/messages-shapes';
import { EventTooLargeError, MAX_EVENT_BYTES } from './relay';
import { postJson, type UpstreamOptions } from './upstream';

export interface AnthropicUpstreamOptions extends UpstreamOptions {
  /** e.g. https://api.anthropic.com/v1 ; requests go to `{baseUrl}/messages`. */
  readonly baseUrl: string;
  /** The anthropic-version header. @default '2023-06-01' */
  readonly version?: string;
}

/** The Anthropic stream failed after its headers: an `error` event, an unreadable event, or an early end. */
export class AnthropicStreamError extends Error {
  /** Anthropic's error type (overloaded_error, ...), or 'incomplete_stream'. */
  readonly type: string;
  constructor(type: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'AnthropicStreamError';
    this.type = type;
  }
}

/** Same contract as callUpstream: resolves on the answer's headers, in the canonical form. */
export async function callAnthropic(
  options: AnthropicUpstreamOptions,
  chatBody: Json,
  abort: AbortController,
  requestId?: string,
): Promise<Response> {
  const request = chatToMessagesRequest(chatBody);
  const key = await options.apiKey();
  const url = `${options.baseUrl.replace(/\/+$/, '')}/messages`;
  const headers = { ...(key ? { 'x-api-key': key } : {}), 'anthropic-version': options.version ?? '2023-06-01' };
  const response = await postJson(url, headers, request, abort, options.firstByteTimeoutMs, requestId);
  const passed = new Headers();
  for (const name of ['retry-after', 'request-id']) {
    const value = response.headers.get(name);
    if (value !== null) passed.set(name, value);
  }
  // What the provider says is left: the cooldown reads it (upstream-feedback.ts).
  for (const [name, value] of response.headers) if (name.startsWith('anthropic-ratelimit-')) passed.set(name, value);
  const streamed = (response.headers.get('content-type') ?? '').includes('text/event-stream');
  if (response.ok && streamed && response.body) {
    passed.set('content-type', 'text/event-stream');
    return new Response(canonicalStream(response.body), { status: response.status, headers: passed });
  }
  passed.set('content-type', 'application/json');
  const status = response.status;
  const translate = response.ok ? chatCompletionText : (text: string) => chatErrorText(text, status);
  return new Response(whole(response, translate), { status, headers: passed });
}

const encoder = new TextEncoder();

/** A body read whole when the proxy reads it (its deadline applies), translated; what is not JSON passes as it is. */
function whole(response: Response, translate: (text: string) => string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      const text = await response.text();
      let out = text;
      try {
        out = translate(text);
      } catch {
        // not the JSON expected: the proxy judges it as it is (no usage: settled at the bound)
      }
      controller.enqueue(encoder.encode(out));
      controller.close();
    },
    cancel: (reason) => response.body?.cancel(reason),
  });
}

function chatCompletionText(text: string): string {
  const message: unknown = JSON.parse(text);
  if (!isRecord(message) || message.type !== 'message') throw new Error('not a Message');
  return JSON.stringify(chatCompletionOf(message));
}

/** Anthropic's `{type: 'error', error: {type, message}}` in OpenAI's shape, the type kept as the code. */
function chatErrorText(text: string, status: number): string {
  const body: unknown = JSON.parse(text);
  const error = isRecord(body) && isRecord(body.error) ? body.error : {};
  return JSON.stringify({
    error: {
      message: str(error.message),
      type: chatErrorType(status),
      param: null,
      code: typeof error.type === 'string' ? error.type : null,
    },
  });
}

/** finish_reason, and the matched stop sequence in vLLM's `stop_reason` field. */
function finish(stop: Json): Json {
  return {
    finish_reason: finishReasonOf(stop.stop_reason),
    ...(stop.stop_reason === 'stop_sequence' && typeof stop.stop_sequence === 'string'
      ? { stop_reason: stop.stop_sequence }
      : {}),
  };
}

/** A Message (https://docs.claude.com/en/api/messages, the response) -> a chat.completion. */
export function chatCompletionOf(message: Json, created = Math.floor(Date.now() / 1000)): Json {
  let text = '';
  let reasoning = '';
  const calls: Json[] = [];
  for (const block of Array.isArray(message.content) ? message.content : []) {
    if (!isRecord(block)) continue;
    if (block.type === 'text') text += str(block.text);
    else if (block.type === 'thinking') reasoning += str(block.thinking);
    else if (block.type === 'tool_use')
      calls.push({
        id: str(block.id),
        type: 'function',
        function: { name: str(block.name), arguments: JSON.stringify(block.input ?? {}) },
      });
  }
  return {
    id: `chatcmpl-${str(message.id).replace(/^msg_/, '')}`,
    object: 'chat.completion',
    created,
    model: message.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (calls.length ? null : ''),
          ...(reasoning ? { reasoning_content: reasoning } : {}),
          ...(calls.length ? { tool_calls: calls } : {}),
        },
        ...finish(message),
      },
    ],
    usage: chatUsageOf(isRecord(message.usage) ? message.usage : {}),
  };
}

/** Messages events -> canonical SSE events, one event at a time. */
export class ChatChunks {
  private id = 'chatcmpl-anthropic';
  private model: unknown;
  private usage: Json = {};
  /** The canonical tool call index of each tool_use block, by the block's index. */
  private readonly calls = new Map<number, number>();
  /** message_stop arrived: the answer is whole. */
  done = false;

  constructor(private readonly created = Math.floor(Date.now() / 1000)) {}

  /** One Messages event's data -> canonical `data:` events. Throws AnthropicStreamError on an `error` event. */
  event(data: Json): string[] {
    switch (data.type) {
      case 'message_start': {
        const message = isRecord(data.message) ? data.message : {};
        this.id = `chatcmpl-${str(message.id).replace(/^msg_/, '')}`;
        this.model = message.model;
        this.usage = isRecord(message.usage) ? { ...message.usage } : {};
        return [this.chunk({ role: 'assistant', content: '' })];
      }
      case 'content_block_start': {
        const block = isRecord(data.content_block) ? data.content_block : {};
        if (block.type === 'text' && str(block.text)) return [this.chunk({ content: block.text })];
        if (block.type !== 'tool_use') return [];
        const index = this.calls.size;
        this.calls.set(Number(data.index), index);
        const fn = { name: str(block.name), arguments: '' };
        return [this.chunk({ tool_calls: [{ index, id: str(block.id), type: 'function', function: fn }] })];
      }
      case 'content_block_delta':
        return this.delta(Number(data.index), isRecord(data.delta) ? data.delta : {});
      case 'message_delta': {
        // Cumulative: every figure present replaces the one before.
        if (isRecord(data.usage))
          for (const [k, v] of Object.entries(data.usage)) if (v !== null && v !== undefined) this.usage[k] = v;
        const delta = isRecord(data.delta) ? data.delta : {};
        return delta.stop_reason ? [this.chunk({}, finish(delta))] : [];
      }
      case 'message_stop':
        this.done = true;
        return [
          `data: ${JSON.stringify({ ...this.envelope(), choices: [], usage: chatUsageOf(this.usage) })}\n\n`,
          'data: [DONE]\n\n',
        ];
      case 'error': {
        const error = isRecord(data.error) ? data.error : {};
        throw new AnthropicStreamError(str(error.type) || 'api_error', str(error.message) || 'error event');
      }
      default:
        return []; // ping, content_block_stop, and events added later
    }
  }

  private delta(block: number, delta: Json): string[] {
    if (delta.type === 'text_delta' && str(delta.text)) return [this.chunk({ content: delta.text })];
    if (delta.type === 'thinking_delta' && str(delta.thinking))
      return [this.chunk({ reasoning_content: delta.thinking })];
    const index = this.calls.get(block);
    if (delta.type === 'input_json_delta' && index !== undefined && str(delta.partial_json))
      return [this.chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] })];
    return [];
  }

  private envelope(): Json {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model };
  }

  private chunk(delta: Json, end: Json = { finish_reason: null }): string {
    return `data: ${JSON.stringify({ ...this.envelope(), choices: [{ index: 0, delta, ...end }] })}\n\n`;
  }
}

/** An SSE event ends at a blank line (line ends CRLF, LF or CR). */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/;

/** The upstream's Messages event stream as the canonical one; fails as the module comment says. */
export function canonicalStream(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const chunks = new ChatChunks();
  let buffer = '';
  const events = (): string[] => {
    const out: string[] = [];
    for (let match = EVENT_END.exec(buffer); match; match = EVENT_END.exec(buffer)) {
      const event = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      const data = event
        .split(/\r\n|\n|\r/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n');
      if (!data) continue;
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch (err) {
        throw new AnthropicStreamError('unreadable_event', 'an upstream event is not JSON', { cause: err });
      }
      if (isRecord(json)) out.push(...chunks.event(json));
    }
    if (buffer.length > MAX_EVENT_BYTES) throw new EventTooLargeError();
    return out;
  };
  return new ReadableStream({
    async pull(controller) {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) {
            buffer += `${decoder.decode()}\n\n`;
            const rest = events();
            if (rest.length) controller.enqueue(encoder.encode(rest.join('')));
            if (!chunks.done)
              throw new AnthropicStreamError('incomplete_stream', 'the stream ended before message_stop');
            controller.close();
            return;
          }
          buffer += decoder.decode(value, { stream: true });
          const out = events();
          if (out.length) {
            controller.enqueue(encoder.encode(out.join('')));
            return;
          }
        }
      } catch (err) {
        controller.error(err);
        reader.cancel(err).catch(() => {});
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
