import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { encode as cl100kEncode } from 'gpt-tokenizer/encoding/cl100k_base';
import { encode as o200kEncode } from 'gpt-tokenizer/encoding/o200k_base';
import { encodeChat as encodeChatGpt4 } from 'gpt-tokenizer/model/gpt-4';
import { encodeChat as encodeChatGpt4o } from 'gpt-tokenizer/model/gpt-4o';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chatInputBound, countMessages } from '../../lambda/proxy/input-bound';
import {
  countBudget,
  countText,
  encodingFor,
  LONG_PIECE_BYTES,
  LONGEST_TOKEN_BYTES,
  UNKNOWN_TOKENIZER_FRAMING,
} from '../../lambda/proxy/tokenizer';
import { settledUsage } from '../../lambda/proxy/usage';
import { ADVERSARIAL_CORPORA } from '../support/adversarial-text';

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
] as const)('%s counter', (name, ranks) => {
  const stock = new Tiktoken(ranks);
  it.each(corpus.map((text, i) => [i, text]))('counts text %i exactly as stock js-tiktoken does', (_i, text) => {
    expect(countText(text as string, name)).toBe(stock.encode(text as string, [], []).length);
  });
});

// gpt-tokenizer is an independent implementation of the same encodings: the reference here.
const reference = { o200k_base: o200kEncode, cl100k_base: cl100kEncode } as const;
const noSpecials = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

describe.each(['o200k_base', 'cl100k_base'] as const)('%s on text built to be slow or to under-count', (name) => {
  it.each(Object.keys(ADVERSARIAL_CORPORA))('counts %s exactly (3 KB)', (corpusName) => {
    const text = ADVERSARIAL_CORPORA[corpusName]!(3_000);
    expect(countText(text, name)).toBe(reference[name](text, noSpecials).length);
  });

  it('counts a mixture of every corpus exactly', () => {
    const text = Object.values(ADVERSARIAL_CORPORA)
      .map((make) => `${make(700)} word ${make(300)}\n`)
      .join('');
    expect(countText(text, name)).toBe(reference[name](text, noSpecials).length);
  });

  // Text from a few characters makes long pieces whose merges mix sweeps, the switch to the heap
  // (a merge that makes a lower-ranked pair, or sweeps that stop paying) and the heap itself.
  it('counts random long pieces exactly, whichever way each is merged', () => {
    const alphabet = fc.constantFrom('a', 'b', 'e', 'n', 't', ' ', '\n', '中', '文', 'é', '🎉', '!', '=');
    fc.assert(
      fc.property(fc.array(alphabet, { minLength: 1, maxLength: 400 }), (chars) => {
        const text = chars.join('');
        expect(countText(text, name)).toBe(reference[name](text, noSpecials).length);
      }),
      { numRuns: 300, seed: 20261128 },
    );
  });

  it('counts long pieces exactly up to the long-piece budget, and a token per byte after it', () => {
    const piece = ` ${'a'.repeat(LONG_PIECE_BYTES)}`; // one piece, longer than LONG_PIECE_BYTES
    const exactOne = reference[name](piece, noSpecials).length;
    const budget = countBudget(undefined, 2 * (LONG_PIECE_BYTES + 1));
    // Two fit in the budget and count exactly; the third does not and counts its bytes.
    expect(countText(piece + piece, name, budget)).toBe(reference[name](piece + piece, noSpecials).length);
    expect(countText(piece, name, budget)).toBe(Buffer.byteLength(piece));
    expect(Buffer.byteLength(piece)).toBeGreaterThan(exactOne);
    // Short pieces are not held to that budget.
    expect(countText('hello world', name, budget)).toBe(2);
  });

  it('never under-counts past the per-request work budget: the rest counts a token per byte', () => {
    const text = `${'hello world '.repeat(50)}${ADVERSARIAL_CORPORA.letter_run!(2_000)}${' tail'.repeat(100)}`;
    const exact = reference[name](text, noSpecials).length;
    const budget = countBudget(600);
    const counted = countText(text, name, budget);
    expect(budget.charsLeft).toBeLessThanOrEqual(0);
    expect(counted).toBeGreaterThan(exact);
    // The budget's share is exact; only the rest is bounded by bytes.
    expect(counted).toBeLessThanOrEqual(Buffer.byteLength(text));
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
    ['llama-3-70b', 'utf8_bytes'],
    ['anthropic.claude-3-5-haiku-20241022-v1:0', 'utf8_bytes'],
    ['us.amazon.nova-lite-v1:0', 'utf8_bytes'],
  ])('%s uses %s', (model, encoding) => {
    expect(encodingFor(model)).toBe(encoding);
  });

  // gpt-tokenizer's own chat encoding (<|im_start|>role<|im_sep|>content<|im_end|> per message, and
  // the reply primed) is the reference: an independent implementation of OpenAI's format.
  const chat = fc.array(
    fc.record({
      role: fc.constantFrom('system', 'user', 'assistant'),
      content: fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 40 })),
    }),
    { minLength: 1, maxLength: 6 },
  );

  it.each([
    ['o200k_base', encodeChatGpt4o],
    ['cl100k_base', encodeChatGpt4],
  ] as const)('counts a chat in %s exactly as gpt-tokenizer encodes it', (encoding, reference) => {
    fc.assert(
      fc.property(chat, (messages) => {
        expect(countMessages(messages, encoding)).toBe(reference(messages as never).length);
      }),
    );
    // OpenAI's cookbook example conversation, literally.
    const example = [
      {
        role: 'system',
        content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.',
      },
      {
        role: 'user',
        content: "This late pivot means we don't have time to boil the ocean for the client deliverable.",
      },
    ];
    expect(countMessages(example, encoding)).toBe(reference(example as never).length);
  });

  it("counts a name on top of it (the cookbook's 1 per name plus the name): never fewer than the reference", () => {
    const messages = [{ role: 'user', content: 'Hi', name: 'bob' }];
    const reference = encodeChatGpt4o(messages as never).length;
    expect(countMessages(messages, 'o200k_base')).toBe(reference + 1 + o200kEncode('bob').length);
  });
});

describe('utf8_bytes, the bound for tokenizers not known here', () => {
  // Other families' tokenizers are byte-level BPEs too (Llama 3's is tiktoken-based with a 128k
  // vocabulary; the smallest token is a byte): real encodings stand in for them here.
  const cl100k = new Tiktoken(cl100kBase);
  const others = [o200kEncode, cl100kEncode, (t: string) => cl100k.encode(t)];
  it('is never below what a byte-level tokenizer counts, on any text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' })), (text) => {
        const bound = countText(text, 'utf8_bytes');
        expect(bound).toBe(Buffer.byteLength(text, 'utf8'));
        for (const encode of others) expect(bound).toBeGreaterThanOrEqual(encode(text).length);
      }),
    );
  });

  it('adds framing per request, per message and for tools on top of the bytes', () => {
    const price = { inputPerMillion: 1, outputPerMillion: 1 };
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
    ];
    const plain = chatInputBound({ model: 'm', messages }, 'utf8_bytes', price).inputTokens;
    const f = UNKNOWN_TOKENIZER_FRAMING;
    expect(plain).toBe(countMessages(messages, 'utf8_bytes') + f.request + 2 * f.perMessage);
    expect(countMessages(messages, 'utf8_bytes')).toBeGreaterThanOrEqual(Buffer.byteLength('systemBe brief.userHi'));
    const tools = [{ type: 'function', function: { name: 'f', parameters: {} } }];
    const withTools = chatInputBound({ model: 'm', messages, tools }, 'utf8_bytes', price).inputTokens;
    const sameToolsCounted = chatInputBound({ model: 'm', messages, tools }, 'o200k_base', price).inputTokens;
    const framingOfTools = sameToolsCounted - chatInputBound({ model: 'm', messages }, 'o200k_base', price).inputTokens;
    expect(withTools - plain).toBe(framingOfTools + f.tools);
  });
});

describe('the floor under reported output for tokenizers not known here', () => {
  it('LONGEST_TOKEN_BYTES is the longest token of both encodings', () => {
    for (const ranks of [o200kBase, cl100kBase]) {
      let longest = 0;
      for (const line of ranks.bpe_ranks.split('\n'))
        for (const token of line.split(' ').slice(2)) longest = Math.max(longest, Buffer.from(token, 'base64').length);
      expect(longest).toBe(LONGEST_TOKEN_BYTES);
    }
  });

  const bounds = {
    input: 50,
    output: 400,
    outputMax: 4_000,
    outputless: false,
    audio: { input: false, output: false },
  };
  it('believes a reported count between the bytes seen / 128 and the bytes seen', () => {
    // 300 bytes seen: the upstream's 100 tokens stand (a bytes floor would have charged 300).
    const usage = settledUsage(
      { prompt_tokens: 20, completion_tokens: 100 },
      { output: 300, floor: 3, provesOutput: true },
      bounds,
    );
    expect(usage).toMatchObject({ input: 20, output: 100, rejected: [] });
  });

  it('never settles below the floor, and settles at what was seen when no usage came', () => {
    const seen = { output: 12_800, floor: 100, provesOutput: true };
    expect(settledUsage({ prompt_tokens: 20, completion_tokens: 0 }, seen, bounds).output).toBe(100);
    expect(settledUsage(undefined, seen, bounds).output).toBe(4_000);
    expect(settledUsage(undefined, { ...seen, output: 300, floor: 3 }, bounds).output).toBe(300);
  });
});
