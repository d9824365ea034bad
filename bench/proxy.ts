/**
 * The proxy: time to first chunk through the proxy handler (and through the whole local gateway)
 * against the stand-in directly; the tokenizer's cold start and speed against the stock
 * js-tiktoken constructor and gpt-tokenizer; settlement round-trips.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encode as gptEncode } from 'gpt-tokenizer/encoding/o200k_base';
import { Tiktoken } from 'js-tiktoken/lite';
import o200kRanks from 'js-tiktoken/ranks/o200k_base';
import { createHandler } from '../lambda/authorizer/handler';
import { type LocalRoute, startLocalGateway } from '../local/gateway';
import { createProxyHandler } from '../lambda/proxy/handler';
import { countText, Encoding } from '../lambda/proxy/tokenizer';
import { ADVERSARIAL_CORPORA } from '../test/support/adversarial-text';
import { lambdaContext, proxyEvent } from '../test/support/events';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { BENCH_CALLER, benchProxyDeps, median } from './proxy-deps';
import { percentile, report } from './report';
import { size } from './smoke';

const run = promisify(execFile);
const CHAT = '/v1/chat/completions';
const SAMPLES = size(200, 5);

/** Milliseconds until the first content chunk of a streamed completion arrives over HTTP. */
async function ttft(url: string, headers: Record<string, string>): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let seen = '';
  let first = Number.NaN;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += decoder.decode(value, { stream: true });
    if (Number.isNaN(first) && seen.includes('"content":"Hello"')) first = performance.now() - started;
  }
  return first;
}

export async function benchProxy(endpoint: string): Promise<void> {
  installLambdaStreamingGlobals();
  const upstream = await startUpstreamStandIn({
    words: ['Hello', ' there', '!'],
    usage: { prompt_tokens: 8, completion_tokens: 3 },
  });
  const bench = await benchProxyDeps(endpoint, 'bench-proxy', {
    [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
  });
  const { client, apiKey } = bench;
  const { limiter } = bench.deps;
  const calls: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      calls.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'count' },
  );
  const proxy = createProxyHandler({
    ...bench.deps,
    upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-upstream' },
  });
  const authorizer = createHandler(bench.deps);
  const gateway = await startLocalGateway({
    authorizer,
    routes: [
      {
        method: 'POST',
        path: CHAT,
        streaming: true,
        handler: proxy as unknown as Extract<LocalRoute, { streaming: true }>['handler'],
      },
    ],
  });

  // The proxy handler alone (invoked as the streaming runtime does) vs the stand-in over HTTP.
  const viaProxy = async () => {
    const res = await invokeStreaming(
      proxy,
      proxyEvent({
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true },
        authorizer: BENCH_CALLER,
      }),
      lambdaContext('proxy'),
    );
    return res.chunks.find((c) => c.text.includes('"content":"Hello"'))!.atMs;
  };
  const direct = () => ttft(`${upstream.baseUrl}/chat/completions`, {});
  for (let i = 0; i < size(50, 2); i++) {
    await viaProxy();
    await direct();
    await ttft(`${gateway.url}/v1/chat/completions`, { authorization: `Bearer ${apiKey}` });
  }
  const directMs = await median(SAMPLES, direct);
  const proxyMs = await median(SAMPLES, viaProxy);
  const gatewayMs = await median(SAMPLES, () =>
    ttft(`${gateway.url}/v1/chat/completions`, { authorization: `Bearer ${apiKey}` }),
  );
  report('proxy.ttft_overhead_ms', proxyMs - directMs, 'ms (p50, proxy handler minus direct)');
  report('proxy.ttft_p50_ms', proxyMs, 'ms', directMs);
  report(
    'gateway.ttft_overhead_ms',
    gatewayMs - directMs,
    'ms (p50, authorizer + proxy through the local gateway, minus direct)',
  );

  // Settlement: the DynamoDB requests one settlement makes.
  calls.length = 0;
  await limiter.settle(
    `bench-${Date.now()}`,
    {
      identity: { tenant: 'bench', user: 'u' },
      tenant: { id: 'bench', plan: 'team' },
      route: CHAT,
      shard: 0,
      reserved: { tokens: 100, microUsd: 0 },
      failedOpen: [],
      admittedAt: Date.now(),
    },
    { tokens: 42, microUsd: 0 },
  );
  report('proxy.settle.round_trips', calls.length, 'requests (one TransactWriteItems)');

  // Tokenizer cold start: a fresh Node process each, first count of a 150-token prompt.
  const script = fileURLToPath(new URL('./tokenizer-cold.ts', import.meta.url));
  const cold = async (which: string) => {
    const values: number[] = [];
    for (let i = 0; i < size(5, 1); i++)
      values.push(
        (JSON.parse((await run(process.execPath, ['--import', 'tsx', script, which])).stdout) as { ms: number }).ms,
      );
    return percentile(
      values.sort((a, b) => a - b),
      50,
    );
  };
  const fastCold = await cold('fast');
  const stockCold = await cold('stock');
  const gptCold = await cold('gpt-tokenizer');
  report('proxy.tokenizer.init_ms', fastCold, 'ms (fresh process: load + first count)', stockCold);
  report('proxy.tokenizer.init_ms_vs_gpt_tokenizer', fastCold, 'ms', gptCold);

  // Throughput on a mixed corpus, warm.
  const corpus = [
    'The quick brown fox jumps over the lazy dog. ',
    'function add(a, b) { return a + b; }\n',
    'Ünïcödé 日本語 🎉 ',
    'Lorem ipsum dolor sit amet, consectetur adipiscing elit. ',
  ]
    .join('')
    .repeat(400);
  const speed = (encodeOnce: () => number) => {
    encodeOnce();
    let total = 0;
    const started = performance.now();
    while (performance.now() - started < size(2_000, 100)) total += encodeOnce();
    return total / ((performance.now() - started) / 1000);
  };
  const fastSpeed = speed(() => countText(corpus, 'o200k_base'));
  const gptSpeed = speed(() => gptEncode(corpus).length);
  const stock = new Tiktoken(o200kRanks);
  const stockSpeed = speed(() => stock.encode(corpus, [], []).length);
  report(
    'proxy.tokenizer.tokens_per_s',
    fastSpeed,
    'tokens/s (js-tiktoken, fast loader; baseline gpt-tokenizer)',
    gptSpeed,
  );
  report('proxy.tokenizer.tokens_per_s_vs_stock_js_tiktoken', fastSpeed, 'tokens/s', stockSpeed);

  // Worst case: 100 KB of each corpus built to make byte-pair merging slow, against 100 KB of
  // ordinary text: this repository's README and docs (English prose with code and tables). Every
  // run counts with a fresh encoder (empty piece and pair caches) and, for corpora made of distinct
  // pieces, fresh text, so neither side is flattered by what an earlier run left in a cache.
  const msPer100kb = (make: (run: number) => string) => {
    const runs: number[] = [];
    for (let i = 0; i < size(7, 1); i++) {
      const text = make(i);
      const fresh = new Encoding(o200kRanks);
      fresh.count('warm up');
      const started = performance.now();
      fresh.count(text);
      runs.push(((performance.now() - started) / Buffer.byteLength(text)) * 100_000);
    }
    return percentile(
      runs.sort((a, b) => a - b),
      50,
    );
  };
  const docsDir = fileURLToPath(new URL('../docs/', import.meta.url));
  const prose = [
    fileURLToPath(new URL('../README.md', import.meta.url)),
    ...readdirSync(docsDir)
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(docsDir, f)),
  ]
    .map((file) => readFileSync(file, 'utf8'))
    .join('\n')
    .repeat(4)
    .slice(0, 100_000);
  const ordinaryMs = msPer100kb((i) => prose + i);
  let worst = { name: '', ms: 0 };
  for (const [name, make] of Object.entries(ADVERSARIAL_CORPORA)) {
    const ms = msPer100kb((i) => make(100_000, i + 1) + i);
    if (ms > worst.ms) worst = { name, ms };
  }
  report(
    'proxy.tokenizer.adversarial_ms_per_100kb',
    worst.ms,
    `ms per 100 KB (worst corpus: ${worst.name}; baseline the README and docs as ordinary text)`,
    ordinaryMs,
  );
  // The same worst case against text that is nothing but repeats of four sentences (every piece
  // after the first few hundred bytes comes from the cache): the cheapest text there is.
  const repeated = msPer100kb((i) => corpus.repeat(Math.ceil(100_000 / corpus.length)).slice(0, 100_000) + i);
  report(
    'proxy.tokenizer.adversarial_ms_per_100kb_vs_repeated_text',
    worst.ms,
    'ms per 100 KB (baseline four sentences repeated)',
    repeated,
  );

  await gateway.stop();
  await upstream.stop();
  await bench.stop();
}
