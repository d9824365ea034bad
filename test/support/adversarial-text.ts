/**
 * Text built to make a byte-pair tokenizer slow or to under-count: long runs of one kind of
 * character (one pre-tokenizer piece each), whitespace, CJK and emoji without punctuation.
 * Each builder returns about `bytes` bytes of UTF-8.
 */
const run = (unit: string) => (bytes: number) => unit.repeat(Math.max(1, Math.floor(bytes / Buffer.byteLength(unit))));

export const ADVERSARIAL_CORPORA: Readonly<Record<string, (bytes: number) => string>> = {
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
  base64_blob: (bytes) => Buffer.from(Array.from({ length: Math.floor((bytes * 3) / 4) }, (_, i) => (i * 2654435761) % 251)).toString('base64'),
};
