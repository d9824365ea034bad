import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { describe, expect, it } from 'vitest';
import { countChat, countText, encoder, encodingFor } from '../../lambda/proxy/tokenizer';

const corpus = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog. '.repeat(20),
  'function add(a: number, b: number): number {\n  return a + b; // sum\n}\n',
  'Ünïcödé têxt, 日本語のテキスト, 中文文本, العربية, emoji 🎉🚀👩‍💻',
  'Special-looking text is counted as text: <|endoftext|> <|im_start|>',
  '    indented\t\ttabs\r\nand CRLF lines\n\n\n',
  '1234567890 3.14159 -42 1e10 0xFF',
  'a'.repeat(500),
];

describe.each([
  ['o200k_base', o200kBase],
  ['cl100k_base', cl100kBase],
] as const)('%s fast loader', (name, ranks) => {
  const stock = new Tiktoken(ranks);
  it.each(corpus.map((text, i) => [i, text]))('encodes text %i exactly like the stock constructor', (_i, text) => {
    expect(encoder(name).encode(text as string, [], [])).toEqual(stock.encode(text as string, [], []));
  });
});

describe('encodings and counts', () => {
  it.each([
    ['gpt-4o-mini', 'o200k_base'],
    ['gpt-4.1', 'o200k_base'],
    ['gpt-5-mini', 'o200k_base'],
    ['o3-mini', 'o200k_base'],
    ['azure/gpt-4o', 'o200k_base'],
    ['gpt-4-turbo', 'cl100k_base'],
    ['gpt-3.5-turbo', 'cl100k_base'],
    ['text-embedding-3-small', 'cl100k_base'],
    ['llama-3-70b', 'o200k_base'],
  ])('%s uses %s', (model, encoding) => {
    expect(encodingFor(model)).toBe(encoding);
  });

  it('counts a chat as OpenAI does: 3 per message, 1 per name, 3 to prime the reply', () => {
    const text = (s: string) => countText(s, 'o200k_base');
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'Hi', name: 'bob' },
    ];
    expect(countChat(messages, 'o200k_base')).toBe(3 + (3 + text('system') + text('You are terse.')) + (3 + text('user') + text('Hi') + 1 + text('bob')));
  });
});
