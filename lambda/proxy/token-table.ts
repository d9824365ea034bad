/**
 * The ranks of an encoding's tokens, looked up by their bytes without making a string or a key:
 * the token bytes sit in one pool and an open-addressing table of token indexes is probed by an
 * FNV-1a hash of the bytes, then the bytes are compared. Built in one pass over js-tiktoken's rank
 * file (`<first> <offset> <base64 token> <base64 token> ...` per line, ranks counting up from the
 * offset), decoding base64 by hand, so no substring or Buffer is made per token.
 */
export const NOT_A_TOKEN = -1;

const SEXTET = new Int8Array(128).fill(-1);
const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < BASE64.length; i++) SEXTET[BASE64.charCodeAt(i)] = i;
const SPACE = 32;
const NEWLINE = 10;

function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

export class TokenTable {
  /** Every token's bytes, one after another; token t is pool[offsets[t], offsets[t + 1]). */
  private pool: Uint8Array;
  private offsets: Int32Array;
  private ranks: Int32Array;
  /** Token index + 1 per slot (0: empty). */
  private readonly slots: Int32Array;
  private readonly mask: number;
  readonly size: number;
  /** Bytes in the longest token: a longer pair is never looked up. */
  readonly longest: number;

  constructor(rankFile: string) {
    this.pool = new Uint8Array(rankFile.length);
    this.offsets = new Int32Array(1 << 18);
    this.ranks = new Int32Array(1 << 18);
    let count = 0;
    let at = 0;
    let longest = 0;
    let i = 0;
    const n = rankFile.length;
    while (i < n) {
      // <first> <offset>, then tokens up to the end of the line.
      while (i < n && rankFile.charCodeAt(i) !== SPACE) i++;
      i++;
      let rank = 0;
      for (let c = rankFile.charCodeAt(i); c >= 48 && c <= 57; c = rankFile.charCodeAt(++i))
        rank = rank * 10 + (c - 48);
      while (i < n && rankFile.charCodeAt(i) !== NEWLINE) {
        i++; // the space before a token
        if (count + 1 >= this.offsets.length) this.growIndex();
        this.offsets[count] = at;
        this.ranks[count] = rank++;
        let bits = 0;
        let acc = 0;
        for (let c = rankFile.charCodeAt(i); i < n && c !== SPACE && c !== NEWLINE; c = rankFile.charCodeAt(++i)) {
          const v = c < 128 ? SEXTET[c]! : -1;
          if (v < 0) continue; // '=' padding
          acc = ((acc << 6) | v) & 0xffffff;
          bits += 6;
          if (bits >= 8) {
            bits -= 8;
            this.pool[at++] = (acc >> bits) & 0xff;
          }
        }
        longest = Math.max(longest, at - this.offsets[count]!);
        count++;
      }
      i++; // the newline
    }
    this.offsets[count] = at;
    this.size = count;
    this.longest = longest;
    let slots = 1;
    while (slots < count * 2) slots *= 2;
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
    for (let t = 0; t < count; t++) {
      let h = hashBytes(this.pool, this.offsets[t]!, this.offsets[t + 1]!) & this.mask;
      while (this.slots[h] !== 0) h = (h + 1) & this.mask;
      this.slots[h] = t + 1;
    }
  }

  private growIndex(): void {
    const offsets = new Int32Array(this.offsets.length * 2);
    offsets.set(this.offsets);
    this.offsets = offsets;
    const ranks = new Int32Array(this.ranks.length * 2);
    ranks.set(this.ranks);
    this.ranks = ranks;
  }

  /** Rank of `bytes[start, end)`, or NOT_A_TOKEN. */
  rank(bytes: Uint8Array, start: number, end: number): number {
    const length = end - start;
    const { pool, offsets, slots, mask } = this;
    for (let h = hashBytes(bytes, start, end) & mask; ; h = (h + 1) & mask) {
      const t = slots[h]! - 1;
      if (t < 0) return NOT_A_TOKEN;
      const from = offsets[t]!;
      if (offsets[t + 1]! - from !== length) continue;
      let k = 0;
      while (k < length && pool[from + k] === bytes[start + k]) k++;
      if (k === length) return this.ranks[t]!;
    }
  }

  /** Calls `each` with every token's bytes and rank. */
  forEach(each: (bytes: Uint8Array, rank: number) => void): void {
    for (let t = 0; t < this.size; t++)
      each(this.pool.subarray(this.offsets[t]!, this.offsets[t + 1]!), this.ranks[t]!);
  }
}
