import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PieceCounter } from '../../lambda/proxy/bpe';

/**
 * The merge order tiktoken defines, for any ranks: merge the lowest-ranked adjacent pair that is a
 * token, leftmost first, until none is. Quadratic, and obviously so: the reference.
 */
function referenceCount(text: string, ranks: ReadonlyMap<string, number>): number {
  const parts = [...text];
  for (;;) {
    let best = -1;
    let at = -1;
    for (let i = 0; i + 1 < parts.length; i++) {
      const rank = ranks.get(parts[i]! + parts[i + 1]!);
      if (rank !== undefined && (best < 0 || rank < best)) {
        best = rank;
        at = i;
      }
    }
    if (at < 0) return parts.length;
    parts.splice(at, 2, parts[at]! + parts[at + 1]!);
  }
}

/** A counter over one-byte ASCII text with the given ranks (every byte is a token, as in tiktoken). */
function counterFor(ranks: ReadonlyMap<string, number>): PieceCounter {
  const all = new Map(ranks);
  for (let b = 0; b < 256; b++) if (!all.has(String.fromCharCode(b))) all.set(String.fromCharCode(b), 1_000_000 + b);
  const longest = Math.max(...[...all.keys()].map((k) => k.length));
  return new PieceCounter((bytes, start, end) => all.get(bytes.toString('latin1', start, end)) ?? -1, longest);
}

const count = (counter: PieceCounter, text: string) => counter.count(Buffer.from(text, 'latin1'), text.length);

describe('byte-pair merge order', () => {
  // Merging "ab" makes the pair "aba", ranked below "ab": tiktoken merges it before the next "ab".
  // A sweep that went on merging every "ab" first would end with 3 tokens + padding, not 2.
  it('merges a pair ranked below the current sweep before the rest of that sweep', () => {
    const ranks = new Map([
      ['ab', 10],
      ['aba', 5],
      ['bx', 30],
    ]);
    const text = `ababx${'z'.repeat(60)}`; // long enough to be merged in sweeps, not scanned
    expect(referenceCount(text, ranks)).toBe(2 + 60);
    expect(count(counterFor(ranks), text)).toBe(2 + 60);
  });

  // Random ranks over a three-letter alphabet make every kind of merge: sweeps, lower-ranked pairs
  // that end a sweep, the heap, and pieces short enough to be scanned.
  it('counts exactly as the reference does for random ranks and texts of every length', () => {
    const alphabet = ['a', 'b', 'c'];
    const strings: string[] = [];
    const grow = (prefix: string) => {
      if (prefix.length >= 2) strings.push(prefix);
      if (prefix.length < 5) for (const c of alphabet) grow(prefix + c);
    };
    grow('');
    fc.assert(
      fc.property(
        fc.array(fc.option(fc.nat(500), { freq: 2 }), { minLength: strings.length, maxLength: strings.length }),
        fc.array(fc.constantFrom(...alphabet), { minLength: 2, maxLength: 300 }),
        (rankOrNone, chars) => {
          const ranks = new Map<string, number>();
          strings.forEach((s, i) => {
            const rank = rankOrNone[i];
            if (rank !== null && rank !== undefined) ranks.set(s, rank * strings.length + i); // distinct ranks
          });
          const text = chars.join('');
          expect(count(counterFor(ranks), text)).toBe(referenceCount(text, ranks));
        },
      ),
      { numRuns: 400, seed: 11282026 },
    );
  });
});
