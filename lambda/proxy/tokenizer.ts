import type { TiktokenBPE } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { MAX_TOKENS, PieceCounter } from './bpe';
import { NOT_A_TOKEN, TokenTable } from './token-table';

/**
 * js-tiktoken's encodings, counted exactly, and `utf8_bytes`: a bound for models whose tokenizer
 * is not known here (Claude, Llama, Mistral, Nova, ...): one token per UTF-8 byte, never below the
 * real count of any byte-level tokenizer (every token is at least one byte), plus the framing of
 * UNKNOWN_TOKENIZER_FRAMING. Settlement corrects it to what the upstream reports.
 */
export type EncodingName = 'o200k_base' | 'cl100k_base' | 'utf8_bytes';
export const ENCODING_NAMES: readonly EncodingName[] = ['o200k_base', 'cl100k_base', 'utf8_bytes'];
type TiktokenName = Exclude<EncodingName, 'utf8_bytes'>;
const RANKS: Record<TiktokenName, TiktokenBPE> = { o200k_base: o200kBase, cl100k_base: cl100kBase };

/** The longest token of o200k_base and cl100k_base, in bytes: `utf8_bytes` / this is a floor of any count. */
export const LONGEST_TOKEN_BYTES = 128;

/**
 * Tokens a provider may add around a request whose tokenizer is not known: role markers and a
 * system preamble (Anthropic documents a tool-use system prompt of up to ~350 tokens), counted
 * once per request on top of the bytes (and `perMessage` for each message).
 */
export const UNKNOWN_TOKENIZER_FRAMING = { request: 32, tools: 512, perMessage: 8 } as const;

/**
 * o200k_base for the gpt-4o / 4.1 / 5 and o-series families, cl100k_base for older OpenAI models,
 * utf8_bytes (a bound) for every other model: counting Claude's or Llama's text with an OpenAI
 * encoding can come out below what their provider bills, and the reservation must not.
 */
export function encodingFor(model: string): EncodingName {
  const m = model.toLowerCase().replace(/^.*\//, ''); // azure/openrouter style prefixes
  if (/^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss)/.test(m)) return 'o200k_base';
  if (/^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada-002)/.test(m)) return 'cl100k_base';
  return 'utf8_bytes';
}

/**
 * How many characters of text one request may have tokenized exactly. Past it, the rest counts
 * one token per UTF-8 byte (an upper bound: every token is at least one byte), so a request's
 * counting work is bounded whatever it sends. 4 Mi characters is more text than any body the proxy
 * accepts holds (maxBodyBytes <= 6 MB of JSON), so honest requests never reach it.
 */
const DEFAULT_COUNT_BUDGET_CHARS = 4 * 1024 * 1024;
/**
 * A pre-tokenizer piece longer than this is "long": one run of letters, spaces or CJK characters
 * with no punctuation, digit or space to split it. Ordinary text has none (words, numbers and
 * CJK clauses are far shorter); hostile text is made of them, because merging a long piece costs
 * O(n log n) with a large constant where short pieces cost O(n) or hit the piece cache.
 */
export const LONG_PIECE_BYTES = 256;
/**
 * Bytes of long pieces one request may have tokenized exactly. A long piece that does not fit in
 * what is left counts a token per byte, so the worst body costs a small constant of ordinary
 * text (bench `proxy.tokenizer.adversarial_ms_per_100kb`) while a request with a few long pieces
 * (a DNA sequence, a punctuation-free paragraph) is still counted exactly.
 */
const DEFAULT_LONG_PIECE_BUDGET_BYTES = 16 * 1024;

/** Work a request may still spend on exact counts (see the two defaults above). */
export interface CountBudget {
  charsLeft: number;
  longBytesLeft: number;
}

export const countBudget = (
  chars = DEFAULT_COUNT_BUDGET_CHARS,
  longBytes = DEFAULT_LONG_PIECE_BUDGET_BYTES,
): CountBudget => ({
  charsLeft: chars,
  longBytesLeft: longBytes,
});

const PIECE_CACHE_SIZE = 50_000;
const PIECE_CACHE_MAX_CHARS = 32;

/**
 * One of js-tiktoken's encodings (its ranks and pre-tokenizer pattern), counted with the merge in
 * bpe.ts. The ranks sit in a TokenTable (bytes in one pool, probed by hash: no string made per
 * lookup), built in one pass over js-tiktoken's rank file (~45 ms) instead of its constructor's
 * decode of ~200k keys (0.6-0.9 s). Only counts: nothing here needs token ids.
 */
export class Encoding {
  private readonly table: TokenTable;
  /** Ranks of the two-byte tokens, indexed by the two bytes (-1: not a token): the first lookup of every pair. */
  private readonly pairs = new Int32Array(65_536).fill(NOT_A_TOKEN);
  private readonly pattern: RegExp;
  private readonly pieces = new Map<string, number>();
  private buffer = Buffer.alloc(4096);
  private readonly counter: PieceCounter;

  constructor(ranks: TiktokenBPE) {
    this.table = new TokenTable(ranks.bpe_ranks);
    if (this.table.size > MAX_TOKENS)
      throw new Error(
        `An encoding of ${this.table.size} tokens is more than the ${MAX_TOKENS} the pair cache keys hold`,
      );
    this.table.forEach((bytes, rank) => {
      if (bytes.length === 2) this.pairs[(bytes[0]! << 8) | bytes[1]!] = rank;
    });
    this.pattern = new RegExp(ranks.pat_str, 'gu');
    this.counter = new PieceCounter(this.rankOf, this.table.longest);
  }

  private readonly rankOf = (bytes: Buffer, start: number, end: number): number =>
    end - start === 2 ? this.pairs[(bytes[start]! << 8) | bytes[start + 1]!]! : this.table.rank(bytes, start, end);

  /** Tokens in `text`; special-token text is counted as ordinary text, never rejected. */
  count(text: string, budget: CountBudget = countBudget()): number {
    if (!text) return 0;
    let total = 0;
    for (const match of text.matchAll(this.pattern)) {
      const piece = match[0];
      if (budget.charsLeft <= 0) {
        total += Buffer.byteLength(piece, 'utf8');
        continue;
      }
      budget.charsLeft -= piece.length;
      const cached = piece.length <= PIECE_CACHE_MAX_CHARS ? this.pieces.get(piece) : undefined;
      if (cached !== undefined) {
        total += cached;
        continue;
      }
      const n = this.countPiece(piece, budget);
      total += n;
      if (piece.length <= PIECE_CACHE_MAX_CHARS) {
        if (this.pieces.size >= PIECE_CACHE_SIZE) this.pieces.clear();
        this.pieces.set(piece, n);
      }
    }
    return total;
  }

  private countPiece(piece: string, budget: CountBudget): number {
    const needed = piece.length * 3;
    if (this.buffer.length < needed) this.buffer = Buffer.alloc(Math.max(needed, this.buffer.length * 2));
    const length = this.buffer.write(piece, 0, 'utf8');
    if (length > LONG_PIECE_BYTES) {
      if (length > budget.longBytesLeft) return length; // a token per byte never under-counts
      budget.longBytesLeft -= length;
    }
    if (this.rankOf(this.buffer, 0, length) !== NOT_A_TOKEN) return 1;
    return this.counter.count(this.buffer, length);
  }
}

/** What counts text: an encoding, or the bound of one token per byte. */
export interface TextCounter {
  count(text: string, budget?: CountBudget): number;
}

const BYTES: TextCounter = { count: (text) => Buffer.byteLength(text, 'utf8') };

const encodings = new Map<TiktokenName, Encoding>();

/** One encoding per name per container, built on first use. */
export function encoding(name: EncodingName): TextCounter {
  if (name === 'utf8_bytes') return BYTES;
  let enc = encodings.get(name);
  if (!enc) {
    enc = new Encoding(RANKS[name]);
    encodings.set(name, enc);
  }
  return enc;
}

/** Tokens in `text`; special-token text is counted as ordinary text, never rejected. */
export const countText = (text: string, name: EncodingName, budget?: CountBudget): number =>
  encoding(name).count(text, budget);
