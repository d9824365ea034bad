/**
 * The mappings between Anthropic's Messages API and the canonical chat form that hold in both
 * directions: the client dialect (lambda/proxy/dialects/messages.ts) reads them one way, the
 * Anthropic upstream (lambda/proxy/anthropic-upstream.ts) the other, so each is written once.
 *
 * Sources: https://docs.claude.com/en/api/messages (request and answer fields),
 * https://docs.claude.com/en/api/errors (error types per status),
 * https://docs.claude.com/en/docs/build-with-claude/handling-stop-reasons (stop reasons).
 */
import type { ProxyError } from '../dialect';

export type Json = Record<string, unknown>;
export const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * Anthropic's stop_reason for each canonical finish_reason, and back. `stop` is `end_turn` unless
 * the choice names the stop sequence that matched (vLLM's `stop_reason` field, which the
 * Anthropic upstream sets too): then `stop_sequence`.
 */
const STOP_REASONS = [
  ['stop', 'end_turn'],
  ['length', 'max_tokens'],
  ['tool_calls', 'tool_use'],
  ['content_filter', 'refusal'],
] as const;

/** Anthropic's reasons without a canonical twin, read as the nearest one (never sent: the proxy asks for no server tools). */
const ONLY_ANTHROPIC: Readonly<Record<string, string>> = {
  stop_sequence: 'stop',
  pause_turn: 'stop',
  model_context_window_exceeded: 'length',
};

export function stopReasonOf(finishReason: unknown, stopSequence: unknown): string {
  if (finishReason === 'stop' && typeof stopSequence === 'string') return 'stop_sequence';
  if (finishReason === 'function_call') return 'tool_use';
  return STOP_REASONS.find(([chat]) => chat === finishReason)?.[1] ?? 'end_turn';
}

export function finishReasonOf(stopReason: unknown): string {
  return STOP_REASONS.find(([, messages]) => messages === stopReason)?.[0] ?? ONLY_ANTHROPIC[str(stopReason)] ?? 'stop';
}

/** Anthropic's tool_choice types and the canonical tool_choice strings. `tool` is `{type: 'function', function: {name}}`. */
const TOOL_CHOICES = [
  ['auto', 'auto'],
  ['any', 'required'],
  ['none', 'none'],
] as const;

export const chatToolChoiceOf = (type: string): string | undefined => TOOL_CHOICES.find(([m]) => m === type)?.[1];
export const messagesToolChoiceOf = (choice: string): string | undefined =>
  TOOL_CHOICES.find(([, c]) => c === choice)?.[0];

/**
 * Anthropic's error type for each status (https://docs.claude.com/en/api/errors): other 4xx are
 * invalid_request_error, as Anthropic says it may answer them; other 5xx are api_error. 503 (the
 * brake, a provider that is down) reads as Anthropic's overloaded_error, which its SDKs retry.
 */
const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  503: 'overloaded_error',
  529: 'overloaded_error',
};

export const anthropicErrorType = (status: number): string =>
  ERROR_TYPES[status] ?? (status >= 400 && status < 500 ? 'invalid_request_error' : 'api_error');

/** The status each of the proxy's error types (OpenAI's) stands for, to name an error inside a stream. */
const PROXY_TYPE_STATUS: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  rate_limit_exceeded: 429,
  api_error: 500,
  service_unavailable: 503,
};

export const statusOfProxyError = (error: Pick<ProxyError, 'type'>): number => PROXY_TYPE_STATUS[error.type] ?? 500;

/** The canonical (OpenAI) error type for an upstream's status: the shape the proxy reads an upstream's error in. */
export function chatErrorType(status: number): string {
  const type = Object.entries(PROXY_TYPE_STATUS).find(([, s]) => s === status)?.[0];
  return type ?? (status >= 400 && status < 500 ? 'invalid_request_error' : 'api_error');
}

/**
 * Usage in both forms. Anthropic's `input_tokens` excludes cache reads and writes (the total input
 * is their sum: https://docs.claude.com/en/docs/build-with-claude/prompt-caching#tracking-cache-performance);
 * OpenAI's `prompt_tokens` includes cached tokens and names them in prompt_tokens_details.cached_tokens.
 * Cache writes have no canonical field: they are input at the full rate (the proxy never asks
 * for one, so an Anthropic upstream reports none).
 */
export interface MessagesUsage {
  readonly input_tokens: number;
  readonly output_tokens: number;
  readonly cache_creation_input_tokens?: number;
  readonly cache_read_input_tokens?: number;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

export function chatUsageOf(usage: Json): Json {
  const read = count(usage.cache_read_input_tokens);
  const prompt = count(usage.input_tokens) + count(usage.cache_creation_input_tokens) + read;
  const completion = count(usage.output_tokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    ...(read ? { prompt_tokens_details: { cached_tokens: read } } : {}),
  };
}

export function messagesUsageOf(usage: Json): MessagesUsage {
  const details = isRecord(usage.prompt_tokens_details) ? usage.prompt_tokens_details : {};
  const read = count(details.cached_tokens);
  return {
    input_tokens: Math.max(0, count(usage.prompt_tokens) - read),
    output_tokens: count(usage.completion_tokens),
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: read,
  };
}

/** An image's source as Anthropic states it, from a canonical image_url part's url, and back. */
const DATA_URL = /^data:([^;,]+);base64,(.*)$/s;

export function imageSourceOf(url: string): Json {
  const data = DATA_URL.exec(url);
  return data ? { type: 'base64', media_type: data[1], data: data[2] } : { type: 'url', url };
}

export function imageUrlOf(source: Json): string | undefined {
  if (source.type === 'base64' && typeof source.media_type === 'string' && typeof source.data === 'string')
    return `data:${source.media_type};base64,${source.data}`;
  if (source.type === 'url' && typeof source.url === 'string') return source.url;
  return undefined;
}

/** A tool's input object from a call's JSON arguments (an unreadable or cut argument string reads as `{}`). */
export function toolInputOf(args: unknown): Json {
  try {
    const input: unknown = JSON.parse(str(args));
    return isRecord(input) ? input : {};
  } catch {
    return {};
  }
}
