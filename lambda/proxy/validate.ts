import { DEFAULT_MAX_BODY_BYTES, type EndpointConfig } from '../engine/plans';
import { CHAT_PARAMETERS, type ChatMessage, PRICED_PARTS, partTokens } from './input-bound';
import type { AudioUse } from './pricing';

/**
 * Deepest nesting of arrays and objects a body may have. Real requests stay under ~15 (a tool
 * schema with nested objects); thousands of levels would overflow the stack of anything that
 * walks the body recursively (JSON.stringify included).
 */
export const MAX_JSON_DEPTH = 64;

/** A 4xx to show the client, in OpenAI's error shape, naming the field that is wrong. */
export class RequestError extends Error {
  readonly status: number;
  readonly param: string | null;
  readonly code: string;
  constructor(message: string, param: string | null, code: string, status = 400) {
    super(message);
    this.name = 'RequestError';
    this.param = param;
    this.code = code;
    this.status = status;
  }
}

export interface ChatRequest {
  readonly kind: 'chat';
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly stream: boolean;
  /** max_completion_tokens or max_tokens, when the client set one (both must then agree). */
  readonly maxTokens?: number;
  /** Completions asked for (`n`). */
  readonly n: number;
  /** The `service_tier` asked for, when it is not the standard one. */
  readonly serviceTier?: string;
  readonly audio: AudioUse;
  readonly body: Record<string, unknown>;
}

export interface EmbeddingsRequest {
  readonly kind: 'embeddings';
  readonly model: string;
  readonly input: string | readonly string[] | readonly number[] | readonly (readonly number[])[];
  readonly serviceTier?: undefined;
  readonly body: Record<string, unknown>;
}

export type ProxyRequest = ChatRequest | EmbeddingsRequest;

export const ROUTE_KINDS: Readonly<Record<string, ProxyRequest['kind']>> = {
  '/v1/chat/completions': 'chat',
  '/v1/embeddings': 'embeddings',
  // Other dialects, translated to chat first (lambda/proxy/dialect.ts).
  '/v1/responses': 'chat',
  '/v1/messages': 'chat',
};

/**
 * Fields other servers read as an output cap (llama.cpp's n_predict, Ollama's num_predict, TGI's
 * max_new_tokens, ...): the upstream would honour theirs, not the one reserved.
 */
const OTHER_CAPS = [
  'n_predict',
  'num_predict',
  'max_new_tokens',
  'max_output_tokens',
  'max_length',
  'max_gen_len',
  'max_tokens_to_sample',
  'maxTokens',
];
/** Fields gateways read to pick another model or add a paid feature (LiteLLM, OpenRouter), or a per-call fee (web search). */
const ROUTING = [
  'fallbacks',
  'models',
  'model_list',
  'provider',
  'route',
  'plugins',
  'transforms',
  'web_search_options',
];
const KNOWN = new Set([
  ...CHAT_PARAMETERS,
  'tools',
  'functions',
  'tool_choice',
  'function_call',
  'response_format',
  'audio',
]);

/** Fields that would change the model, the cap or the price behind the limiter's back: 400 naming the field. */
function checkSteering(body: Record<string, unknown>): void {
  const seen = new Map<string, string>();
  for (const key of Object.keys(body)) {
    if (OTHER_CAPS.includes(key))
      bad(key, `'${key}' sets another output cap: use max_completion_tokens or max_tokens.`, 'unsupported_parameter');
    if (ROUTING.includes(key))
      bad(key, `'${key}' would change the model or the price: it is not accepted here.`, 'unsupported_parameter');
    // Some servers match keys without regard to case (Go's encoding/json, the last match winning).
    const lower = key.toLowerCase();
    const twin = seen.get(lower) ?? (key !== lower && KNOWN.has(lower) ? lower : undefined);
    if (twin !== undefined)
      bad(
        key,
        `'${key}' differs from '${twin}' only in case: send each field once, spelt as OpenAI spells it.`,
        'duplicate_parameter',
      );
    seen.set(lower, key);
  }
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;

function bad(param: string | null, message: string, code = 'invalid_value'): never {
  throw new RequestError(message, param, code);
}

/** Does the JSON text nest arrays and objects deeper than MAX_JSON_DEPTH? One pass, before parsing. */
function nestsTooDeep(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Validates a request body before anything is counted or debited. */
export function parseRequest(
  route: string,
  rawBody: string | null | undefined,
  isBase64: boolean,
  endpoint: EndpointConfig,
  /** A route in another dialect: its body -> a canonical chat body (throws RequestError), before the chat rules. */
  translate?: (body: Record<string, unknown>) => Record<string, unknown>,
): ProxyRequest {
  const kind = ROUTE_KINDS[route];
  if (!kind) throw new RequestError(`No such endpoint: ${route}`, null, 'unknown_url', 404);
  const text = rawBody ? (isBase64 ? Buffer.from(rawBody, 'base64').toString('utf8') : rawBody) : '';
  const maxBytes = endpoint.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (Buffer.byteLength(text, 'utf8') > maxBytes)
    bad(null, `Request body is larger than ${maxBytes} bytes.`, 'request_too_large');
  if (!text.trim()) bad(null, 'Request body is empty: send a JSON object.', 'invalid_json');
  if (nestsTooDeep(text))
    bad(null, `Request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels.`, 'nesting_too_deep');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    bad(null, 'Request body is not valid JSON.', 'invalid_json');
  }
  if (!isRecord(parsed)) bad(null, 'Request body must be a JSON object.', 'invalid_json');
  const body = translate ? translate(parsed) : parsed;
  if (typeof body.model !== 'string' || !body.model)
    bad('model', 'you must provide a model parameter (a string).', 'missing_required_parameter');
  checkSteering(body);
  if (!Object.hasOwn(endpoint.models, body.model))
    bad(
      'model',
      `The model '${body.model}' is not allowed on ${route}. Allowed: ${Object.keys(endpoint.models).join(', ')}.`,
      'model_not_allowed',
    );
  const model = body.model;
  const price = endpoint.models[model]!;

  if (kind === 'embeddings') {
    const input = body.input;
    const ok =
      (typeof input === 'string' && input.length > 0) ||
      (Array.isArray(input) &&
        input.length > 0 &&
        (input.every((x) => typeof x === 'string') ||
          input.every((x) => Number.isInteger(x)) ||
          input.every((x) => Array.isArray(x) && x.length > 0 && x.every((y) => Number.isInteger(y)))));
    if (!ok)
      bad(
        'input',
        "'input' must be a non-empty string, array of strings, array of token ids, or array of arrays of token ids.",
      );
    return { kind, model, input: input as EmbeddingsRequest['input'], body };
  }

  if (!Array.isArray(body.messages) || body.messages.length === 0)
    bad('messages', "'messages' must be a non-empty array.", 'missing_required_parameter');
  body.messages.forEach((m, i) => {
    if (!isRecord(m)) bad(`messages[${i}]`, `'messages[${i}]' must be an object.`);
    if (typeof m.role !== 'string' || !ROLES.has(m.role))
      bad(`messages[${i}].role`, `'messages[${i}].role' must be one of ${[...ROLES].join(', ')}.`);
    const c = m.content;
    const contentOk =
      c === null ||
      c === undefined ||
      typeof c === 'string' ||
      (Array.isArray(c) && c.every((p) => isRecord(p) && typeof p.type === 'string'));
    if (!contentOk)
      bad(`messages[${i}].content`, `'messages[${i}].content' must be a string or an array of content parts.`);
    if (Array.isArray(c)) {
      c.forEach((p: Record<string, unknown>, j) => {
        checkPart(p, `messages[${i}].content[${j}]`, model, route, price);
      });
    }
    if (m.name !== undefined && typeof m.name !== 'string')
      bad(`messages[${i}].name`, `'messages[${i}].name' must be a string.`);
    const unpricedAudio = price.audioInputPerMillion === undefined || price.partTokens?.audio === undefined;
    if (m.audio !== undefined && m.audio !== null && unpricedAudio)
      bad(
        `messages[${i}].audio`,
        `An earlier audio answer is billed again as audio input, which the operators have not priced for ${model} on ${route}.`,
        'unsupported_content_part',
      );
  });
  if (body.stream !== undefined && typeof body.stream !== 'boolean') bad('stream', "'stream' must be true or false.");
  for (const field of ['max_tokens', 'max_completion_tokens']) {
    if (body[field] !== undefined && body[field] !== null && !isPositiveInt(body[field]))
      bad(field, `'${field}' must be a whole number >= 1.`);
  }
  if (body.n !== undefined && body.n !== null) {
    if (!isPositiveInt(body.n)) bad('n', "'n' must be a whole number >= 1.");
    if (body.n > 1 && !endpoint.allowN) bad('n', `'n' > 1 is not allowed on ${route}.`, 'n_not_allowed');
  }
  if (body.stream_options !== undefined && body.stream_options !== null && !isRecord(body.stream_options))
    bad('stream_options', "'stream_options' must be an object.");
  if (body.tools !== undefined && !Array.isArray(body.tools)) bad('tools', "'tools' must be an array.");
  const caps = [body.max_completion_tokens, body.max_tokens].filter((v): v is number => typeof v === 'number');
  if (caps.length === 2 && caps[0] !== caps[1])
    bad(
      'max_tokens',
      `max_completion_tokens (${caps[0]}) and max_tokens (${caps[1]}) differ: send one, or the same value in both.`,
      'conflicting_output_caps',
    );
  const serviceTier = checkServiceTier(body.service_tier, model, route, price);
  const audio = { input: hasAudioParts(body.messages), output: asksForAudio(body) };
  if (audio.output && price.audioOutputPerMillion === undefined)
    bad(
      'modalities',
      `Audio output is not accepted for ${model} on ${route}: the operators have not priced it. Ask for text only.`,
      'unsupported_modality',
    );
  return {
    kind,
    model,
    messages: body.messages as ChatMessage[],
    stream: body.stream === true,
    ...(caps.length ? { maxTokens: caps[0] } : {}),
    n: (body.n as number | null | undefined) ?? 1,
    ...(serviceTier ? { serviceTier } : {}),
    audio,
    body,
  };
}

/** The tier asked for when it is not the standard one; a tier without a price is refused. */
function checkServiceTier(
  tier: unknown,
  model: string,
  route: string,
  price: EndpointConfig['models'][string],
): string | undefined {
  if (tier === undefined || tier === null || tier === 'auto' || tier === 'default') return undefined;
  if (typeof tier !== 'string') bad('service_tier', "'service_tier' must be a string.");
  if (!price.serviceTiers || !Object.hasOwn(price.serviceTiers, tier))
    bad(
      'service_tier',
      `service_tier '${tier}' is not accepted for ${model} on ${route}: the operators have not priced it. ` +
        `Accepted: auto, default${Object.keys(price.serviceTiers ?? {})
          .map((t) => `, ${t}`)
          .join('')}.`,
      'unsupported_service_tier',
    );
  return tier;
}

const asksForAudio = (body: Record<string, unknown>): boolean =>
  (Array.isArray(body.modalities) && body.modalities.includes('audio')) ||
  (body.audio !== undefined && body.audio !== null);

/** Audio in: input_audio parts, or an earlier audio answer referenced by id (billed again as audio input). */
const hasAudioParts = (messages: unknown): boolean =>
  Array.isArray(messages) &&
  messages.some(
    (m) =>
      isRecord(m) &&
      ((m.audio !== undefined && m.audio !== null) ||
        (Array.isArray(m.content) && m.content.some((p) => isRecord(p) && p.type === 'input_audio'))),
  );

/** A content part is text, a refusal, or a part type the operators priced for this model. */
function checkPart(
  part: Record<string, unknown>,
  at: string,
  model: string,
  route: string,
  price: EndpointConfig['models'][string],
): void {
  const type = part.type as string;
  if (type === 'text' || type === 'refusal') {
    if (typeof part[type] !== 'string') bad(`${at}.${type}`, `'${at}.${type}' must be a string.`);
    return;
  }
  const kind = PRICED_PARTS[type as keyof typeof PRICED_PARTS];
  if (!kind)
    bad(
      `${at}.type`,
      `'${at}.type' is '${type}': content parts are text, refusal, ${Object.keys(PRICED_PARTS).join(', ')}.`,
      'unsupported_content_part',
    );
  const unpricedAudio = type === 'input_audio' && price.audioInputPerMillion === undefined;
  if (partTokens(part as { type: string }, price) === undefined || unpricedAudio) {
    bad(
      at,
      `${kind} parts are not accepted for ${model} on ${route} (${at}): the operators have not priced them. Send text only.`,
      'unsupported_content_part',
    );
  }
}
