/**
 * Anthropic's Messages API as a client dialect (POST /v1/messages and /v1/messages/count_tokens):
 * requests are read into the canonical chat form (messages-request.ts says field by field what is
 * translated, dropped or refused), answers and streams written back as Anthropic writes them,
 * errors in Anthropic's shape and types, and the proxy's limits as anthropic-ratelimit-* headers.
 *
 * Each part of the canonical answer -> what it becomes in the Messages answer:
 *
 * - chat.completion id -> `msg_` + the id without its `chatcmpl-`
 * - message.content, refusal -> a text block
 * - message.tool_calls -> tool_use blocks: id, name, input parsed from the arguments (unreadable: `{}`)
 * - reasoning_content -> dropped: a thinking block needs Anthropic's signature
 * - finish_reason stop / length / tool_calls / content_filter -> stop_reason end_turn (stop_sequence when the
 *   choice names the sequence, as vLLM and the Anthropic upstream do) / max_tokens / tool_use / refusal
 * - usage prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens -> input_tokens (without the
 *   cached ones), output_tokens, cache_read_input_tokens
 */
import type { ChatChunk, ClientDialect, ProxyError, StreamTranslator } from '../dialect';
import { messagesToChat } from './messages-request';
import {
  anthropicErrorType,
  isRecord,
  type Json,
  messagesUsageOf,
  statusOfProxyError,
  str,
  stopReasonOf,
  toolInputOf,
} from './messages-shapes';
import { MessagesStream, sseEvent } from './messages-stream';

export { countTokensToChat as countTokensRequest } from './messages-request';

/** count_tokens' answer (https://docs.claude.com/en/api/messages-count-tokens). */
export const countTokensAnswer = (inputTokens: number): Json => ({ input_tokens: inputTokens });

const errorObject = (status: number, error: Pick<ProxyError, 'message'>): Json => ({
  type: 'error',
  error: { type: anthropicErrorType(status), message: error.message },
});

function fromChat(completion: Json, request: Json): Json {
  const choice = (Array.isArray(completion.choices) ? completion.choices : []).find(isRecord) ?? {};
  const message = isRecord(choice.message) ? choice.message : {};
  const content: Json[] = [];
  const text = str(message.content) + str(message.refusal);
  if (text) content.push({ type: 'text', text });
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    if (!isRecord(call)) continue;
    const fn = isRecord(call.function) ? call.function : {};
    content.push({ type: 'tool_use', id: str(call.id), name: str(fn.name), input: toolInputOf(fn.arguments) });
  }
  const stopSequence = typeof choice.stop_reason === 'string' ? choice.stop_reason : null;
  return {
    id: `msg_${str(completion.id).replace(/^chatcmpl-/, '') || crypto.randomUUID().replaceAll('-', '')}`,
    type: 'message',
    role: 'assistant',
    model: request.model,
    content,
    stop_reason: stopReasonOf(choice.finish_reason, stopSequence),
    stop_sequence: stopSequence,
    usage: messagesUsageOf(isRecord(completion.usage) ? completion.usage : {}),
  };
}

function errorEvent(error: ProxyError): string {
  return sseEvent('error', errorObject(statusOfProxyError(error), error));
}

export const messagesDialect: ClientDialect = {
  name: 'messages',
  toChat: messagesToChat,
  fromChat,
  stream(request: Json, inputTokens: number): StreamTranslator {
    return new MessagesStream(String(request.model), inputTokens, (e: ChatChunk) =>
      errorEvent({ message: str(e.message) || 'The model provider reported an error.', type: str(e.type), code: null }),
    );
  },
  errorBody: (status, error) => JSON.stringify(errorObject(status, error)),
  errorEvent,
  headers: (headers) => anthropicRateLimitHeaders(headers),
};

/** The proxy's header names are spelt in several cases: read them without regard to it. */
function reader(headers: Readonly<Record<string, string>>): (name: string) => string | undefined {
  const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return (name) => lower.get(name.toLowerCase());
}

/** OpenAI's reset durations (1h2m3s, 6m0s, 20ms), as the proxy writes them (headers.ts), in ms. */
export function durationMs(text: string): number | undefined {
  const match = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$/.exec(text.trim());
  if (!match || !text.trim()) return undefined;
  const [, h = '0', m = '0', s = '0', ms = '0'] = match;
  return ((Number(h) * 60 + Number(m)) * 60 + Number(s)) * 1000 + Number(ms);
}

/** RFC 3339 at whole seconds, as Anthropic writes its resets. */
const rfc3339 = (ms: number): string => new Date(Math.ceil(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/**
 * anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} from the proxy's headers
 * (https://docs.claude.com/en/api/rate-limits#response-headers): the OpenAI-style
 * x-ratelimit-*-requests / -tokens where the proxy set them, else X-RateLimit-* when the limit
 * it describes (named in the RateLimit field, `<layer>_<counts>_<name>`) counts requests or
 * tokens. Resets are RFC 3339 times; Retry-After passes as it is.
 */
export function anthropicRateLimitHeaders(
  headers: Readonly<Record<string, string>>,
  now = Date.now(),
): Record<string, string> {
  const get = reader(headers);
  const out: Record<string, string> = {};
  const focus = /^"[a-z]+_([a-z]+)_/.exec(get('RateLimit') ?? '')?.[1];
  for (const kind of ['requests', 'tokens']) {
    const limit = get(`x-ratelimit-limit-${kind}`);
    const remaining = get(`x-ratelimit-remaining-${kind}`);
    let resetMs = durationMs(get(`x-ratelimit-reset-${kind}`) ?? '');
    let figures = limit !== undefined && remaining !== undefined ? { limit, remaining } : undefined;
    if (!figures && focus === kind) {
      const [l, r, reset] = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'].map(get);
      if (l !== undefined && r !== undefined) figures = { limit: l, remaining: r };
      resetMs = reset === undefined ? undefined : Number(reset) * 1000;
    }
    if (!figures) continue;
    out[`anthropic-ratelimit-${kind}-limit`] = figures.limit;
    out[`anthropic-ratelimit-${kind}-remaining`] = figures.remaining;
    if (resetMs !== undefined && Number.isFinite(resetMs))
      out[`anthropic-ratelimit-${kind}-reset`] = rfc3339(now + resetMs);
  }
  const retryAfter = get('Retry-After');
  if (retryAfter !== undefined) out['retry-after'] = retryAfter;
  return out;
}
