export {};
/**
 * Run in a fresh process: how long the first count takes on a cold container, for one tokenizer.
 * argv: fast | stock | gpt-tokenizer. Prints {"ms": ...}.
 */
const which = process.argv[2];
const prompt = 'You are a helpful assistant. Summarise the following report in three bullet points. '.repeat(8);
const started = performance.now();
let tokens = 0;
if (which === 'fast') {
  const { countText } = await import('../lambda/proxy/tokenizer');
  tokens = countText(prompt, 'o200k_base');
} else if (which === 'stock') {
  const { Tiktoken } = await import('js-tiktoken/lite');
  const ranks = (await import('js-tiktoken/ranks/o200k_base')).default;
  tokens = new Tiktoken(ranks).encode(prompt).length;
} else {
  const { encode } = await import('gpt-tokenizer/encoding/o200k_base');
  tokens = encode(prompt).length;
}
process.stdout.write(JSON.stringify({ ms: performance.now() - started, tokens }));
