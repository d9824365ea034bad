/**
 * Byte-pair encoding in O(n log n) per piece. js-tiktoken's merge rescans every pair after each
 * merge (and joins the pair's bytes into a string key for every lookup), so one long piece (a run
 * of one letter, spaces, CJK text without punctuation) costs O(n^2) lookups: 20k 'a' took 35 s.
 * Here the pairs sit in a min-heap ordered by (rank, position) and a merge only re-ranks its two
 * neighbours. Popping the lowest rank, leftmost first, is exactly the order tiktoken merges in, so
 * the result is identical (tested against js-tiktoken on a corpus), only the cost differs.
 */

/** Rank of a byte sequence, or undefined when it is not a token. */
export type RankOf = (bytes: Buffer, start: number, end: number) => number | undefined;

/**
 * A binary heap of pair candidates packed into one Float64Array: rank * 2^21 + position, so one
 * number compares by rank and then by position. Positions are < 2^21 (pieces are capped below).
 */
class PairHeap {
  private data = new Float64Array(64);
  size = 0;

  push(value: number): void {
    if (this.size === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    let i = this.size++;
    const d = this.data;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (d[parent]! <= value) break;
      d[i] = d[parent]!;
      i = parent;
    }
    d[i] = value;
  }

  pop(): number {
    const d = this.data;
    const top = d[0]!;
    const last = d[--this.size]!;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= this.size) break;
      const right = left + 1;
      const child = right < this.size && d[right]! < d[left]! ? right : left;
      if (d[child]! >= last) break;
      d[i] = d[child]!;
      i = child;
    }
    if (this.size > 0) d[i] = last;
    return top;
  }
}

/** Positions per rank in a packed heap entry: rank * POSITION_SPAN + position. */
const POSITION_SPAN = 2 ** 21;
/** Longest piece merged exactly; a longer one (2 MiB of one kind of character) counts a token per byte. */
const MAX_PIECE_BYTES = POSITION_SPAN - 1;

/**
 * Number of tokens byte-pair encoding gives `bytes[0, length)`. `maxTokenBytes` (the longest token
 * of the encoding) skips lookups of pairs that cannot be a token.
 */
export function countPiece(bytes: Buffer, length: number, rankOf: RankOf, maxTokenBytes: number): number {
  if (length <= 1) return length;
  // Every token is at least one byte, so a token per byte never under-counts.
  if (length > MAX_PIECE_BYTES) return length;
  // Parts as a linked list of start offsets; a part ends where the next one starts.
  const next = new Int32Array(length + 1);
  const prev = new Int32Array(length + 1);
  const alive = new Uint8Array(length + 1);
  for (let i = 0; i <= length; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
    alive[i] = 1;
  }
  const heap = new PairHeap();
  // The rank a pair was pushed with is re-checked on pop: a pair changed by a merge since is stale.
  const pairRank = new Float64Array(length).fill(-1);
  const rankPair = (i: number): void => {
    const j = next[i]!;
    if (j >= length) {
      pairRank[i] = -1;
      return;
    }
    const end = next[j]!;
    if (end - i > maxTokenBytes) {
      pairRank[i] = -1;
      return;
    }
    const rank = rankOf(bytes, i, end);
    pairRank[i] = rank === undefined ? -1 : rank;
    if (rank !== undefined) heap.push(rank * POSITION_SPAN + i);
  };
  for (let i = 0; i < length - 1; i++) rankPair(i);
  let parts = length;
  while (heap.size > 0) {
    const top = heap.pop();
    const i = top % POSITION_SPAN;
    const rank = (top - i) / POSITION_SPAN;
    if (!alive[i] || pairRank[i] !== rank) continue;
    // Merge part i with the part after it.
    const j = next[i]!;
    alive[j] = 0;
    next[i] = next[j]!;
    prev[next[j]!] = i;
    parts--;
    rankPair(i);
    if (prev[i]! >= 0) rankPair(prev[i]!);
  }
  return parts;
}
