/**
 * Byte-pair encoding counts, never worse than O(n log n) per piece. js-tiktoken's merge rescans
 * every pair after each merge (and joins the pair's bytes into a string key for every lookup), so
 * one long piece (a run of one letter, spaces, CJK text without punctuation) costs O(n^2) lookups:
 * 20k 'a' took 35 s. Here:
 * - a short piece (a word) scans its few pairs for the lowest rank, the fastest way at that size;
 * - a longer one merges in sweeps (every pair of the lowest rank, left to right), which finishes
 *   a run of one character in a few linear passes;
 * - and, when sweeps stop paying, goes on with a min-heap ordered by (rank, position) in which a
 *   merge only re-ranks its two neighbours.
 * All three merge the lowest rank first, leftmost among equals: exactly the order tiktoken merges
 * in, so the counts are identical (tested against js-tiktoken and gpt-tokenizer), only the cost
 * differs. Scratch arrays are kept between pieces: a piece allocates nothing.
 */

/** Rank of a byte sequence, or -1 when it is not a token. */
export type RankOf = (bytes: Buffer, start: number, end: number) => number;

/** Positions per rank in a packed heap entry: rank * POSITION_SPAN + position. */
const POSITION_SPAN = 2 ** 21;
/** Longest piece merged exactly; a longer one (2 MiB of one kind of character) counts a token per byte. */
const MAX_PIECE_BYTES = POSITION_SPAN - 1;
/** Pieces up to this many bytes scan their pairs (O(n^2), small constant); longer ones sweep, then use the heap. */
const SCAN_MAX_BYTES = 32;
const NO_RANK = -1;
/** Ranks are below 2^18 (o200k_base has ~200k tokens): two of them make one exact number key. */
const RANK_SPAN = 2 ** 18;
export const MAX_TOKENS = RANK_SPAN;
/** Pairs this short are looked up by their bytes directly (as cheap as the cache). */
const PAIR_CACHE_MIN_BYTES = 6;
const PAIR_CACHE_SIZE = 100_000;
/**
 * Sweeps go on while they have cost at most this many pair visits per byte of the piece plus
 * SWEEP_VISITS_PER_MERGE per merge made: a run of one character merges about half its parts per
 * sweep and stays; text with many different ranks merges a pair or two per sweep and moves to the
 * heap after a few sweeps.
 */
const SWEEP_VISITS_PER_BYTE = 4;
const SWEEP_VISITS_PER_MERGE = 8;

export class PieceCounter {
  private next = new Int32Array(256);
  private prev = new Int32Array(256);
  private pairRank = new Float64Array(256);
  /** Rank of the token each part is (every part of a byte-pair merge is a token). */
  private partRank = new Int32Array(256);
  /** Rank of each single byte. */
  private readonly byteRank = new Int32Array(256);
  /**
   * Rank of the concatenation of two tokens, keyed by their ranks (NO_RANK: not a token). A pair
   * of long parts costs one byte lookup, O(its length), the first time and O(1) after: a run of
   * spaces or letters re-asks the same few pairs at every doubling.
   */
  private readonly pairs = new Map<number, number>();
  /** A binary heap of rank * 2^21 + position: one number compares by rank, then by position. */
  private heap = new Float64Array(256);
  private heapSize = 0;

  constructor(
    private readonly rankOf: RankOf,
    private readonly maxTokenBytes: number,
  ) {
    const one = Buffer.alloc(1);
    for (let b = 0; b < 256; b++) {
      one[0] = b;
      this.byteRank[b] = rankOf(one, 0, 1);
    }
  }

  /** Number of tokens byte-pair encoding gives `bytes[0, length)`. */
  count(bytes: Buffer, length: number): number {
    if (length <= 1) return length;
    // Every token is at least one byte, so a token per byte never under-counts.
    if (length > MAX_PIECE_BYTES) return length;
    if (this.next.length <= length) this.grow(length + 1);
    return length <= SCAN_MAX_BYTES ? this.scan(bytes, length) : this.merge(bytes, length);
  }

  private grow(size: number): void {
    const n = Math.max(size, this.next.length * 2);
    this.next = new Int32Array(n);
    this.prev = new Int32Array(n);
    this.pairRank = new Float64Array(n);
    this.partRank = new Int32Array(n);
  }

  /** Rank of the pair starting at part `i` (NO_RANK when it is not a token). */
  private rankAt(bytes: Buffer, i: number, length: number): number {
    const j = this.next[i]!;
    if (j >= length) return NO_RANK;
    const end = this.next[j]!;
    if (end - i > this.maxTokenBytes) return NO_RANK;
    if (end - i <= PAIR_CACHE_MIN_BYTES) return this.rankOf(bytes, i, end);
    const key = this.partRank[i]! * RANK_SPAN + this.partRank[j]!;
    let rank = this.pairs.get(key);
    if (rank === undefined) {
      rank = this.rankOf(bytes, i, end);
      if (this.pairs.size >= PAIR_CACHE_SIZE) this.pairs.clear();
      this.pairs.set(key, rank);
    }
    return rank;
  }

  /** Short pieces: find the lowest pair by scanning, merge it, re-rank its neighbours. */
  private scan(bytes: Buffer, length: number): number {
    const { next, prev, pairRank } = this;
    this.start(bytes, length);
    for (let i = 0; i < length; i++) pairRank[i] = this.rankAt(bytes, i, length);
    let parts = length;
    for (;;) {
      let best = NO_RANK;
      let at = -1;
      for (let i = 0; i < length; i = next[i]!) {
        const rank = pairRank[i]!;
        if (rank !== NO_RANK && (best === NO_RANK || rank < best)) {
          best = rank;
          at = i;
        }
      }
      if (at < 0) return parts;
      this.join(at);
      parts--;
      pairRank[at] = this.rankAt(bytes, at, length);
      if (prev[at]! >= 0) pairRank[prev[at]!] = this.rankAt(bytes, prev[at]!, length);
    }
  }

  /**
   * Long pieces, first in sweeps: take the lowest rank r among the pairs and merge every pair of
   * rank r from left to right. That is tiktoken's order as long as no merge makes a pair ranked
   * below r (a merge never makes another pair of rank r: the new pairs are longer byte strings).
   * Runs of one character (the slow case for a heap: every pair has the same rank) finish in a
   * few sweeps. When a merge makes a lower-ranked pair, or the sweeps have cost SWEEP_WORK_PER_BYTE
   * visits per byte (text with many different ranks), the merge goes on from the same state with
   * a heap, so the worst case stays O(n log n) and the count stays exact.
   */
  private merge(bytes: Buffer, length: number): number {
    const { next, prev, pairRank } = this;
    this.start(bytes, length);
    for (let i = 0; i < length; i++) pairRank[i] = this.rankAt(bytes, i, length);
    let parts = length;
    let work = 0;
    for (;;) {
      let lowest = NO_RANK;
      for (let i = 0; i < length; i = next[i]!) {
        const rank = pairRank[i]!;
        if (rank !== NO_RANK && (lowest === NO_RANK || rank < lowest)) lowest = rank;
      }
      if (lowest === NO_RANK) return parts;
      work += 2 * parts;
      if (work > SWEEP_VISITS_PER_BYTE * length + SWEEP_VISITS_PER_MERGE * (length - parts))
        return this.mergeWithHeap(bytes, length, parts);
      for (let i = 0; i < length; i = next[i]!) {
        if (pairRank[i] !== lowest) continue;
        this.join(i);
        parts--;
        const rank = this.rankAt(bytes, i, length);
        pairRank[i] = rank;
        const p = prev[i]!;
        const left = p >= 0 ? this.rankAt(bytes, p, length) : NO_RANK;
        if (p >= 0) pairRank[p] = left;
        if ((rank !== NO_RANK && rank < lowest) || (left !== NO_RANK && left < lowest))
          return this.mergeWithHeap(bytes, length, parts);
      }
    }
  }

  /** Goes on merging `parts` parts from their current pair ranks, lowest rank (leftmost) first, with a heap. */
  private mergeWithHeap(bytes: Buffer, length: number, parts: number): number {
    const { next, prev, pairRank } = this;
    this.heapSize = 0;
    for (let i = 0; i < length; i = next[i]!) if (pairRank[i] !== NO_RANK) this.push(pairRank[i]! * POSITION_SPAN + i);
    while (this.heapSize > 0) {
      const top = this.pop();
      const i = top % POSITION_SPAN;
      const rank = (top - i) / POSITION_SPAN;
      // A merged-away part has no pair rank; a re-ranked pair has a different one.
      if (pairRank[i] !== rank) continue;
      pairRank[next[i]!] = NO_RANK;
      this.join(i);
      parts--;
      this.rerank(bytes, i, length);
      if (prev[i]! >= 0) this.rerank(bytes, prev[i]!, length);
    }
    return parts;
  }

  /** One part per byte. */
  private start(bytes: Buffer, length: number): void {
    const { next, prev, partRank, byteRank } = this;
    for (let i = 0; i <= length; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
      if (i < length) partRank[i] = byteRank[bytes[i]!]!;
    }
  }

  /** Merge part `i` with the part after it into the token the pair's rank names. */
  private join(i: number): void {
    const j = this.next[i]!;
    const k = this.next[j]!;
    this.next[i] = k;
    this.prev[k] = i;
    this.partRank[i] = this.pairRank[i]!;
  }

  private rerank(bytes: Buffer, i: number, length: number): void {
    const rank = this.rankAt(bytes, i, length);
    this.pairRank[i] = rank;
    if (rank !== NO_RANK) this.push(rank * POSITION_SPAN + i);
  }

  private push(value: number): void {
    if (this.heapSize === this.heap.length) {
      const bigger = new Float64Array(this.heap.length * 2);
      bigger.set(this.heap);
      this.heap = bigger;
    }
    const d = this.heap;
    let i = this.heapSize++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (d[parent]! <= value) break;
      d[i] = d[parent]!;
      i = parent;
    }
    d[i] = value;
  }

  /**
   * Removes the least entry: the hole walks down the smaller children to a leaf, then the last entry sifts up
   * into it (fewer compares than a plain sift-down: the last entry usually belongs near the bottom).
   */
  private pop(): number {
    const d = this.heap;
    const top = d[0]!;
    const size = --this.heapSize;
    if (size === 0) return top;
    const last = d[size]!;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && d[right]! < d[left]! ? right : left;
      d[i] = d[child]!;
      i = child;
    }
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (d[parent]! <= last) break;
      d[i] = d[parent]!;
      i = parent;
    }
    d[i] = last;
    return top;
  }
}
