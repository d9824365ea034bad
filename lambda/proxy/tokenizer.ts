import type { TiktokenBPE } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { countPiece } from './bpe';

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
 * How many characters of text one request may have tokenized exactly. Past it, the rest counts
 * one token per UTF-8 byte (an upper bound: every token is at least one byte), so a request's
 * counting work is bounded whatever it sends. 4 Mi characters is more text than any body the proxy
 * accepts holds (maxBodyBytes <= 6 MB of JSON), so honest requests never reach it.
 */
const DEFAULT_COUNT_BUDGET_CHARS = 4 * 1024 * 1024;

/** Characters a request may still have tokenized exactly (see DEFAULT_COUNT_BUDGET_CHARS). */
export interface CountBudget {
  charsLeft: number;
}

export const countBudget = (chars = DEFAULT_COUNT_BUDGET_CHARS): CountBudget => ({ charsLeft: chars });

/** Up to 6 bytes as one exact number: a 1 before the bytes keeps lengths apart. */
function shortKey(bytes: Uint8Array, start: number, end: number): number {
  let key = 1;
  for (let i = start; i < end; i++) key = key * 256 + bytes[i]!;
  return key;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const SEXTET = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) SEXTET[BASE64.charCodeAt(i)] = i;

/** shortKey of the bytes a base64 token of at most 8 characters stands for, without a Buffer. */
function shortKeyOfBase64(token: string): number {
  let key = 1;
  let bits = 0;
  let acc = 0;
  for (let i = 0; i < token.length; i++) {
    const v = SEXTET[token.charCodeAt(i)]!;
    if (v < 0) break; // '=' padding
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      key = key * 256 + ((acc >> bits) & 0xff);
    }
  }
  return key;
}

const PIECE_CACHE_SIZE = 50_000;
const PIECE_CACHE_MAX_CHARS = 32;

/**
 * One of js-tiktoken's encodings (its ranks and pre-tokenizer pattern), counted with the
 * O(n log n) merge in bpe.ts. The ranks are kept as a Map keyed by each token's base64 text: one
 * split of js-tiktoken's rank file (~60 ms), instead of its constructor's decode of ~200k keys
 * (0.6-0.9 s). Only counts: nothing here needs token ids.
 */
export class Encoding {
  private readonly byBase64 = new Map<string, number>();
  /** Tokens of up to 6 bytes keyed by their bytes as one number: most lookups, no string made. */
  private readonly short = new Map<number, number>();
  /** Ranks of the two-byte tokens, indexed by the two bytes (-1: not a token): the first lookup of every pair. */
  private readonly pairs = new Int32Array(65_536).fill(-1);
  private readonly maxTokenBytes: number;
  private readonly pattern: RegExp;
  private readonly pieces = new Map<string, number>();
  private buffer = Buffer.alloc(4096);

  constructor(ranks: TiktokenBPE) {
    let longest = 0;
    for (const line of ranks.bpe_ranks.split('\n')) {
      if (!line) continue;
      const parts = line.split(' ');
      const offset = Number.parseInt(parts[1]!, 10);
      for (let i = 2; i < parts.length; i++) {
        const token = parts[i]!;
        const rank = offset + i - 2;
        if (token.length <= 8) {
          const key = shortKeyOfBase64(token);
          this.short.set(key, rank);
          if (key >= 0x10000 && key < 0x20000) this.pairs[key - 0x10000] = rank; // two bytes
        }
        else this.byBase64.set(token, rank);
        if (token.length > longest) longest = token.length;
      }
    }
    this.maxTokenBytes = Math.ceil((longest * 3) / 4);
    this.pattern = new RegExp(ranks.pat_str, 'gu');
  }

  private readonly rankOf = (bytes: Buffer, start: number, end: number): number | undefined => {
    const length = end - start;
    if (length === 2) {
      const rank = this.pairs[(bytes[start]! << 8) | bytes[start + 1]!]!;
      return rank < 0 ? undefined : rank;
    }
    return length <= 6 ? this.short.get(shortKey(bytes, start, end)) : this.byBase64.get(bytes.toString('base64', start, end));
  };

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
      const n = this.countPiece(piece);
      total += n;
      if (piece.length <= PIECE_CACHE_MAX_CHARS) {
        if (this.pieces.size >= PIECE_CACHE_SIZE) this.pieces.clear();
        this.pieces.set(piece, n);
      }
    }
    return total;
  }

  private countPiece(piece: string): number {
    const needed = piece.length * 3;
    if (this.buffer.length < needed) this.buffer = Buffer.alloc(Math.max(needed, this.buffer.length * 2));
    const length = this.buffer.write(piece, 0, 'utf8');
    if (this.rankOf(this.buffer, 0, length) !== undefined) return 1;
    return countPiece(this.buffer, length, this.rankOf, this.maxTokenBytes);
  }
}

const encodings = new Map<EncodingName, Encoding>();

/** One encoding per name per container, built on first use. */
export function encoding(name: EncodingName): Encoding {
  let enc = encodings.get(name);
  if (!enc) {
    enc = new Encoding(RANKS[name]);
    encodings.set(name, enc);
  }
  return enc;
}

/** Tokens in `text`; special-token text is counted as ordinary text, never rejected. */
export const countText = (text: string, name: EncodingName, budget?: CountBudget): number => encoding(name).count(text, budget);
