import { countText, encoding } from '../lambda/proxy/tokenizer';
let t = performance.now(); encoding('o200k_base'); console.log('load', performance.now() - t);
const corpora: Record<string,string> = {
  a: 'a'.repeat(100_000), spaces: ' '.repeat(100_000), newlines: '\n'.repeat(100_000), cjk: '中'.repeat(33_000), emoji: '🎉'.repeat(25_000), A: 'A'.repeat(100_000), punct: '!'.repeat(100000), tabs: '\t'.repeat(100000),
  ordinary: 'The quick brown fox jumps over the lazy dog. Function add(a, b) { return a + b; } '.repeat(1200),
};
for (let round = 0; round < 3; round++) for (const [name, text] of Object.entries(corpora)) {
  const bytes = Buffer.byteLength(text);
  t = performance.now(); const n = countText(text, 'o200k_base'); const ms = performance.now() - t;
  if (round === 2) console.log(name, n, (ms / bytes * 100_000).toFixed(1), 'ms/100KB');
}
