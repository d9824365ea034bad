/**
 * The input tokens a request can be billed for, as an upper bound: the reservation must cover
 * whatever the upstream bills for any body a client can send (a bound that is low by one hidden
 * field is a bill nobody capped). Fields the counter models are counted exactly as OpenAI counts
 * them (message text, roles, names); every other field counts one token per byte of its JSON
 * (every token is at least one byte, and a provider's rendering of a JSON value, such as a tool
 * schema, is shorter than the JSON); non-text parts count what the operators priced them at.
 */
import type { ModelPrice } from '../engine/plans';
import { type CountBudget, countBudget, countText, type EncodingName, UNKNOWN_TOKENIZER_FRAMING } from './tokenizer';

/** Top-level chat parameters that steer sampling and are never billed as input. */
export const CHAT_PARAMETERS: ReadonlySet<string> = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'n',
  'temperature',
  'top_p',
  'frequency_penalty',
  'presence_penalty',
  'seed',
  'logprobs',
  'top_logprobs',
  'logit_bias',
  'stop',
  'parallel_tool_calls',
  'store',
  'service_tier',
  'reasoning_effort',
  'verbosity',
  'user',
  'safety_identifier',
  'prompt_cache_key',
  'metadata',
  'modalities',
  'prediction',
]);

/** Embeddings parameters that are never billed as input. */
const EMBEDDING_PARAMETERS = new Set(['model', 'input', 'encoding_format', 'dimensions', 'user']);

/** Fields of a message the counter models exactly. */
const MESSAGE_FIELDS = new Set(['role', 'content', 'name']);

/** Top-level fields a provider renders as tool definitions (TypeScript-like types in a namespace), not as JSON. */
const TOOL_FIELDS = ['tools', 'functions'] as const;

/**
 * Tokens a provider adds around tool definitions, for each of `tools` and `functions` present, an empty list too:
 * the header and footer it renders them in ("# Tools", "## functions", "namespace functions {", "} // namespace
 * functions": 13 tokens in o200k and cl100k) and the 9 more a request with functions is billed (measured against
 * the API by openai-chat-tokens), with a margin. The definitions themselves count by their JSON bytes.
 */
const TOOLS_FRAMING_TOKENS = 32;

/** Top-level fields not counted as unmodelled bytes: the parameters and the tool fields (counted apart). */
const NOT_UNMODELLED = new Set<string>([...CHAT_PARAMETERS, ...TOOL_FIELDS]);

/** Tokens OpenAI adds per message, per name, and once to prime the reply. */
const PER_MESSAGE = 3;
const PER_NAME = 1;
const REPLY_PRIMING = 3;

/** One token per byte of a value's JSON (the bound for everything not counted exactly). */
const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');

export interface ChatMessage {
  readonly role: string;
  readonly content?: string | readonly ContentPart[] | null;
  readonly name?: string;
  readonly [field: string]: unknown;
}

export interface ContentPart {
  readonly type: string;
  readonly text?: string;
  readonly [field: string]: unknown;
}

/** Part types a provider bills by what they hold, not by their JSON: each must be priced to be accepted. */
export const PRICED_PARTS = { image_url: 'image', input_audio: 'audio', file: 'file' } as const;

/** Tokens reserved for a non-text part, or undefined when the model has no price for it (refused). */
export function partTokens(part: ContentPart, price: ModelPrice): number | undefined {
  const kind = PRICED_PARTS[part.type as keyof typeof PRICED_PARTS];
  if (!kind) return undefined;
  const prices = price.partTokens ?? {};
  if (kind === 'image') {
    const detail = (part.image_url as { detail?: unknown } | undefined)?.detail;
    return detail === 'low' ? (prices.imageLowDetail ?? prices.image) : prices.image;
  }
  return prices[kind];
}

function countPart(part: ContentPart, encoding: EncodingName, price: ModelPrice, budget: CountBudget): number {
  const { type, text, refusal, ...rest } = part;
  if (type === 'text') return countText(text ?? '', encoding, budget) + fieldsBound(rest);
  if (type === 'refusal')
    return countText(typeof refusal === 'string' ? refusal : '', encoding, budget) + fieldsBound(rest);
  // Validation refuses unpriced parts before anything is counted; bytes keep the bound if one slips through.
  return partTokens(part, price) ?? jsonBytes(part);
}

/** Every field of `record` as its JSON bytes (key, value and separators). */
function fieldsBound(record: Readonly<Record<string, unknown>>, skip?: ReadonlySet<string>): number {
  let total = 0;
  for (const [key, value] of Object.entries(record))
    if (!skip?.has(key) && value !== undefined) total += jsonBytes(key) + 1 + jsonBytes(value) + 1;
  return total;
}

/** Messages as OpenAI counts them (3 per message, 1 per name, 3 to prime the reply), other message fields by their bytes. */
export function countMessages(
  messages: readonly ChatMessage[],
  encoding: EncodingName,
  price: ModelPrice = { inputPerMillion: 0, outputPerMillion: 0 },
  budget = countBudget(),
): number {
  let total = REPLY_PRIMING;
  for (const m of messages) {
    total += PER_MESSAGE + countText(m.role, encoding, budget);
    if (typeof m.content === 'string') total += countText(m.content, encoding, budget);
    else if (Array.isArray(m.content)) for (const part of m.content) total += countPart(part, encoding, price, budget);
    if (typeof m.name === 'string' && m.name) total += PER_NAME + countText(m.name, encoding, budget);
    // An earlier audio answer referenced by id is billed again, as audio input.
    if (m.audio !== undefined && m.audio !== null) total += price.partTokens?.audio ?? 0;
    total += fieldsBound(m, MESSAGE_FIELDS);
  }
  return total;
}

export interface InputBound {
  /** Upper bound of the input tokens the upstream can bill. */
  readonly inputTokens: number;
  /** Tokens the upstream may bill as output beyond the completions themselves (a `prediction`). */
  readonly extraOutputTokens: number;
}

/** The bound for a validated chat body. */
export function chatInputBound(
  body: Readonly<Record<string, unknown>>,
  encoding: EncodingName,
  price: ModelPrice,
  budget = countBudget(),
): InputBound {
  const messages = body.messages as readonly ChatMessage[];
  let input = countMessages(messages, encoding, price, budget) + fieldsBound(body, NOT_UNMODELLED);
  for (const field of TOOL_FIELDS)
    if (body[field] !== undefined) input += TOOLS_FRAMING_TOKENS + jsonBytes(body[field]);
  if (encoding === 'utf8_bytes') {
    // A tokenizer not known here: the framing its provider may add, which the bytes do not hold.
    const f = UNKNOWN_TOKENIZER_FRAMING;
    input += f.request + f.perMessage * messages.length;
    if (TOOL_FIELDS.some((field) => body[field] !== undefined)) input += f.tools;
  }
  // Rejected prediction tokens are billed as completion tokens.
  const extraOutputTokens = body.prediction === undefined || body.prediction === null ? 0 : jsonBytes(body.prediction);
  return { inputTokens: input, extraOutputTokens };
}

/** The bound for a validated embeddings body: strings counted, token ids one each, other fields by bytes. */
export function embeddingsInputBound(
  body: Readonly<Record<string, unknown>>,
  encoding: EncodingName,
  budget = countBudget(),
): InputBound {
  const input = body.input as string | readonly (string | number | readonly number[])[];
  let total = 0;
  if (typeof input === 'string') total = countText(input, encoding, budget);
  else
    for (const item of input)
      total +=
        typeof item === 'string' ? countText(item, encoding, budget) : typeof item === 'number' ? 1 : item.length;
  return { inputTokens: total + fieldsBound(body, EMBEDDING_PARAMETERS), extraOutputTokens: 0 };
}
