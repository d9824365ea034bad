import { Tiktoken, type TiktokenBPE } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import o200kBase from 'js-tiktoken/ranks/o200k_base';

export type EncodingName = 'o200k_base' | 'cl100k_base';
const RANKS: Record<EncodingName, TiktokenBPE> = { o200k_base: o200kBase, cl100k_base: cl100kBase };

/** o200k_base for the gpt-4o / 4.1 / 5 and o-series families, cl100k_base for older models. */
export function encodingFor(model: string): EncodingName {
  const m = model.toLowerCase().replace(/^.*\//, ''); // azure/openrouter style prefixes
  if (/^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss)/.test(m)) return 'o200k_base';
  if (/^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada-002)/.test(m)) return 'cl100k_base';
  return 'o200k_base';
}

/**
 * js-tiktoken's constructor turns every one of ~200k ranks into a base64-decoded byte string key
 * (about 0.6–0.9 s for o200k_base here). Encoding only ever looks ranks up, so this builds a plain
 * Map from each rank's base64 text (one split, ~60 ms) and answers the encoder's lookups (keyed by
 * comma-joined bytes) through it, memoising what it has seen. Output is identical to the stock
 * constructor's (tested on a corpus); decode() is not supported (nothing here needs it).
 */
class FastRanks {
  private readonly byBase64 = new Map<string, number>();
  private readonly seen = new Map<string, number | undefined>();

  constructor(bpeRanks: string) {
    for (const line of bpeRanks.split('\n')) {
      if (!line) continue;
      const parts = line.split(' ');
      const offset = Number.parseInt(parts[1]!, 10);
      for (let i = 2; i < parts.length; i++) this.byBase64.set(parts[i]!, offset + i - 2);
    }
  }

  get(key: string): number | undefined {
    if (this.seen.has(key)) return this.seen.get(key);
    const rank = this.byBase64.get(Buffer.from(key.split(',').map(Number)).toString('base64'));
    if (this.seen.size > 500_000) this.seen.clear();
    this.seen.set(key, rank);
    return rank;
  }
}

const encoders = new Map<EncodingName, Tiktoken>();

/** One encoder per encoding per container, built on first use. */
export function encoder(name: EncodingName): Tiktoken {
  let enc = encoders.get(name);
  if (!enc) {
    const ranks = RANKS[name];
    enc = new Tiktoken({ ...ranks, bpe_ranks: '' });
    // The lookup table js-tiktoken keeps internally (the only field encode() reads ranks from).
    (enc as unknown as { rankMap: Pick<Map<string, number>, 'get'> }).rankMap = new FastRanks(ranks.bpe_ranks);
    encoders.set(name, enc);
  }
  return enc;
}

/** Tokens in `text`; special-token text is counted as ordinary text, never rejected. */
export const countText = (text: string, name: EncodingName): number => (text ? encoder(name).encode(text, [], []).length : 0);

export interface ChatMessage {
  readonly role: string;
  readonly content?: string | readonly { type: string; text?: string }[] | null;
  readonly name?: string;
  readonly tool_calls?: unknown;
}

/** Tokens an image part is reserved at (OpenAI's high-detail 1024 x 1024 figure), since pixels are not seen here. */
export const IMAGE_TOKENS = 765;

/**
 * Input tokens of a chat request as OpenAI counts them for current models: 3 per message, 1 more
 * for a name, 3 to prime the reply; tools and tool calls as their JSON text.
 */
export function countChat(messages: readonly ChatMessage[], name: EncodingName, tools?: unknown): number {
  let total = 3;
  for (const m of messages) {
    total += 3 + countText(m.role, name);
    if (typeof m.content === 'string') total += countText(m.content, name);
    else if (Array.isArray(m.content)) for (const part of m.content) total += part.type === 'text' ? countText(part.text ?? '', name) : IMAGE_TOKENS;
    if (m.name) total += 1 + countText(m.name, name);
    if (m.tool_calls) total += countText(JSON.stringify(m.tool_calls), name);
  }
  if (tools) total += countText(JSON.stringify(tools), name);
  return total;
}

/** Input tokens of an embeddings request (strings, or arrays of token ids already counted). */
export function countEmbeddingInput(input: string | readonly string[] | readonly number[] | readonly (readonly number[])[], name: EncodingName): number {
  if (typeof input === 'string') return countText(input, name);
  let total = 0;
  for (const item of input) total += typeof item === 'string' ? countText(item, name) : typeof item === 'number' ? 1 : item.length;
  return total;
}
