/**
 * The Bedrock stand-in's model: what it bills for a Converse input (its own tokenizer, o200k by
 * gpt-tokenizer, independent of the proxy's counter) and what it generates for a request: hidden
 * or streamed reasoning, then text or a tool call, within `inferenceConfig.maxTokens` unless told
 * to ignore it. Output comes in pieces of 8 tokens (' hi' is one token), each billed as generated.
 */
import { encode } from 'gpt-tokenizer/encoding/o200k_base';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isRecord) : []);
const noSpecials = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
export const tokens = (text: string): number => encode(text, noSpecials).length;

/** What one image is billed (the stand-in does not decode images). */
export const IMAGE_TOKENS = 1_600;
/** Per message, and once to prime the reply (as OpenAI's chat format). */
const PER_MESSAGE = 3;
/** Around tool definitions. */
const TOOL_FRAMING = 12;
const EVENT_TOKENS = 8;

function blockTokens(block: Json): number {
  if (typeof block.text === 'string') return tokens(block.text);
  if (isRecord(block.image)) return IMAGE_TOKENS;
  if (isRecord(block.toolUse)) return tokens(String(block.toolUse.name)) + tokens(JSON.stringify(block.toolUse.input));
  if (isRecord(block.toolResult))
    return PER_MESSAGE + list(block.toolResult.content).reduce((n, b) => n + blockTokens(b), 0);
  return tokens(JSON.stringify(block));
}

/** The input tokens a Converse input (messages, system, toolConfig) is billed. */
export function inputTokens(input: Json): number {
  let total = PER_MESSAGE;
  const system = list(input.system);
  if (system.length) total += PER_MESSAGE + system.reduce((n, b) => n + blockTokens(b), 0);
  for (const m of list(input.messages)) total += PER_MESSAGE + list(m.content).reduce((n, b) => n + blockTokens(b), 0);
  if (isRecord(input.toolConfig)) total += TOOL_FRAMING + tokens(JSON.stringify(input.toolConfig.tools ?? []));
  return total;
}

export interface Generation {
  /** 8 tokens at most each, in order; a block index per content block. */
  readonly pieces: readonly Piece[];
  readonly stopReason: string;
}

interface Written {
  readonly block: number;
  readonly text: string;
  readonly tokens: number;
}
export type Piece =
  | (Written & { readonly kind: 'reasoning' })
  | (Written & { readonly kind: 'text' })
  | { readonly kind: 'tool'; readonly block: number; readonly toolUseId: string; readonly name: string }
  | { readonly kind: 'toolInput'; readonly block: number; readonly input: string; readonly tokens: number };

export interface ModelBehaviour {
  /** Output tokens the model writes when nothing stops it. @default 24 */
  readonly natural?: number;
  /** Reasoning tokens generated first (billed as output, within the cap), streamed as reasoningContent. @default 0 */
  readonly reasoning?: number;
  /** Calls a tool offered (the one toolChoice names, else the first) with this input instead of writing text. */
  readonly toolInput?: Json;
  /** Writes `natural` tokens whatever maxTokens says. */
  readonly ignoreMaxTokens?: boolean;
}

const pieces = (kind: 'reasoning' | 'text', block: number, count: number): Piece[] =>
  Array.from({ length: Math.ceil(count / EVENT_TOKENS) }, (_, i) => {
    const n = Math.min(EVENT_TOKENS, count - i * EVENT_TOKENS);
    return { kind, block, text: ' hi'.repeat(n), tokens: n };
  });

/** What the model writes for a Converse request. */
export function generate(request: Json, b: ModelBehaviour): Generation {
  const maxTokens = (request.inferenceConfig as { maxTokens?: unknown } | undefined)?.maxTokens;
  const cap = !b.ignoreMaxTokens && typeof maxTokens === 'number' ? maxTokens : Number.POSITIVE_INFINITY;
  const reasoning = Math.min(b.reasoning ?? 0, cap);
  const out: Piece[] = pieces('reasoning', 0, reasoning);
  const budget = cap - reasoning;
  const block = reasoning ? 1 : 0;
  const toolConfig = isRecord(request.toolConfig) ? request.toolConfig : undefined;
  const named =
    isRecord(toolConfig?.toolChoice) && isRecord(toolConfig.toolChoice.tool)
      ? toolConfig.toolChoice.tool.name
      : undefined;
  const offered = list(toolConfig?.tools).map((t) => (isRecord(t.toolSpec) ? String(t.toolSpec.name) : ''));
  if (b.toolInput && offered.length) {
    const name = typeof named === 'string' ? named : (offered[0] ?? '');
    const input = JSON.stringify(b.toolInput);
    const cost = tokens(name) + tokens(input);
    if (cost > budget) return { pieces: out, stopReason: 'max_tokens' };
    const head = input.slice(0, Math.floor(input.length / 2));
    const first = tokens(name) + tokens(head);
    out.push(
      { kind: 'tool', block, toolUseId: `tooluse_standin${block}`, name },
      { kind: 'toolInput', block, input: head, tokens: first },
      { kind: 'toolInput', block, input: input.slice(head.length), tokens: cost - first },
    );
    return { pieces: out, stopReason: 'tool_use' };
  }
  const natural = b.natural ?? 24;
  const text = Math.max(0, Math.min(natural, budget));
  out.push(...pieces('text', block, text));
  return { pieces: out, stopReason: text < natural ? 'max_tokens' : 'end_turn' };
}

/** Converse's validation of a request, the part a translation can get wrong (ValidationException's text). */
export function invalidRequest(request: Json): string | undefined {
  const messages = list(request.messages);
  if (messages.length === 0) return 'A conversation must have at least one message.';
  if (messages[0]?.role !== 'user')
    return 'A conversation must start with a user message. Try again with a conversation that starts with a user message.';
  for (const [i, m] of messages.entries()) {
    if (i > 0 && m.role === messages[i - 1]?.role)
      return (
        'A conversation must alternate between user and assistant roles. ' +
        'Make sure the conversation alternates between user and assistant roles and try again.'
      );
    for (const [j, b] of list(m.content).entries())
      if (typeof b.text === 'string' && !b.text.trim())
        return `The text field in the ContentBlock object at messages.${i}.content.${j} is blank. Add text to the text field, and try again.`;
  }
  const maxTokens = (request.inferenceConfig as { maxTokens?: unknown } | undefined)?.maxTokens;
  if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && (maxTokens as number) >= 1))
    return 'The maximum tokens you requested must be at least 1.';
  return undefined;
}
