/**
 * Text built to make a byte-pair tokenizer slow or to under-count: long runs of one kind of
 * character (one pre-tokenizer piece each), whitespace, CJK and emoji without punctuation.
 * Each builder returns about `bytes` bytes of UTF-8.
 */
import { LONG_PIECE_BYTES } from '../../lambda/proxy/tokenizer';

const run = (unit: string) => (bytes: number) => unit.repeat(Math.max(1, Math.floor(bytes / Buffer.byteLength(unit))));

/** `count` characters of `alphabet` in a fixed pseudo-random order that differs with `seed`. */
const letters = (alphabet: string, count: number, seed: number) => {
  const chars = [...alphabet];
  let state = (seed * 2654435761 + 1) >>> 0;
  let out = '';
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    out += chars[(state >>> 16) % chars.length];
  }
  return out;
};
/** Distinct pieces (the piece cache never helps) until `bytes` bytes. */
const pieces = (bytes: number, seed: number, piece: (i: number) => string) => {
  let out = '';
  for (let i = seed * 1_000_003; Buffer.byteLength(out) < bytes; i++) out += piece(i);
  return out;
};

/** Builders of about `bytes` bytes; those made of distinct pieces differ with `seed`. */
export const ADVERSARIAL_CORPORA: Readonly<Record<string, (bytes: number, seed?: number) => string>> = {
  letter_run: run('a'),
  capital_run: run('A'),
  two_letter_run: run('ab'),
  spaces: run(' '),
  newlines: run('\n'),
  tabs: run('\t'),
  space_newline: run(' \n'),
  punctuation_run: run('!'),
  digits: run('7'),
  cjk: run('中'),
  cjk_mixed: run('日本語のテキスト中文文本'),
  emoji: run('🎉'),
  zwj_emoji: run('👩‍💻'),
  combining_marks: run('e\u0301'),
  // Runs just short enough to be counted exactly (lambda/proxy/tokenizer.ts LONG_PIECE_BYTES).
  short_letter_runs: run(` ${'a'.repeat(LONG_PIECE_BYTES - 1)}`),
  short_space_runs: run(`${' '.repeat(LONG_PIECE_BYTES)}x`),
  short_cjk_runs: run(`${'中'.repeat(Math.floor(LONG_PIECE_BYTES / 3))}。`),
  short_random_letter_runs: (bytes, seed = 0) =>
    pieces(bytes, seed, (i) => ` ${letters('abcdefghijklmnopqrstuvwxyz', LONG_PIECE_BYTES - 1, i)}`),
  short_random_cjk_runs: (bytes, seed = 0) =>
    pieces(bytes, seed, (i) => `${letters('日本語のテキスト中文文本漢字仮名', Math.floor(LONG_PIECE_BYTES / 3), i)}。`),
  base64_blob: (bytes) =>
    Buffer.from(Array.from({ length: Math.floor((bytes * 3) / 4) }, (_, i) => (i * 2654435761) % 251)).toString(
      'base64',
    ),
};
