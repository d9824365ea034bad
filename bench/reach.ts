/**
 * Reach (issue 24): what the proxy's other upstream kinds and client dialects cost, and how close
 * its input pre-count comes to what each model family is billed. Time to first chunk through the
 * proxy handler with Bedrock behind it, against the Bedrock stand-in called with the SDK directly;
 * a streamed POST /v1/messages against the same request on /v1/chat/completions through the same
 * handler; the pre-count over the bill of a fixed corpus (bench/precount-corpus.ts), per family.
 */
import {
  BedrockRuntimeClient,
  type ConverseStreamCommandInput,
  ConverseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { encode as cl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import type { EndpointConfig } from '../lambda/engine/plans';
import { callBedrock } from '../lambda/proxy/bedrock/upstream';
import { createProxyHandler } from '../lambda/proxy/handler';
import { chatInputBound } from '../lambda/proxy/input-bound';
import { encodingFor } from '../lambda/proxy/tokenizer';
import { parseRequest } from '../lambda/proxy/validate';
import { type BedrockStandIn, startBedrockStandIn } from '../local/bedrock-standin';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { honestInputBill, noSpecials, o200kTokens } from '../test/support/honest-bill';
import { lambdaContext, proxyEvent } from '../test/support/events';
import type { PRECOUNT_FAMILIES } from './figures';
import { precountCorpus } from './precount-corpus';
import { BENCH_CALLER, benchProxyDeps } from './proxy-deps';
import { percentile, report } from './report';
import { size } from './smoke';

const CHAT = '/v1/chat/completions';
const MESSAGES = '/v1/messages';
const SAMPLES = size(200, 5);
const WARM_UP = size(50, 2);
const price = (inputPerMillion: number, outputPerMillion: number) => ({ inputPerMillion, outputPerMillion });

/** The families the pre-count is measured for: a model of each, and who says what it is billed. */
const FAMILIES = {
  openai_o200k: { model: 'gpt-4o-mini', price: price(0.15, 0.6), bill: 'openai' },
  openai_cl100k: { model: 'gpt-4', price: price(30, 60), bill: 'openai' },
  claude: { model: 'anthropic.claude-3-5-haiku-20241022-v1:0', price: price(0.8, 4), bill: 'bedrock' },
  llama: { model: 'meta.llama3-1-8b-instruct-v1:0', price: price(0.22, 0.22), bill: 'bedrock' },
  nova: { model: 'amazon.nova-lite-v1:0', price: price(0.06, 0.24), bill: 'bedrock' },
} as const satisfies Record<
  (typeof PRECOUNT_FAMILIES)[number],
  { model: string; price: { inputPerMillion: number; outputPerMillion: number }; bill: 'openai' | 'bedrock' }
>;
const BEDROCK_MODEL = FAMILIES.claude.model;

/** A p50 of each of two measures, taken in turns (so a busy moment of the machine falls on both). */
async function pairedMedians(
  measures: readonly [() => Promise<number>, () => Promise<number>],
): Promise<[number, number]> {
  for (let i = 0; i < WARM_UP; i++) for (const measure of measures) await measure();
  const samples = measures.map(() => [] as number[]);
  for (let i = 0; i < SAMPLES; i++) for (const [j, measure] of measures.entries()) samples[j]!.push(await measure());
  const [a, b] = samples.map((s) =>
    percentile(
      s.sort((x, y) => x - y),
      50,
    ),
  );
  return [a!, b!];
}

/** Milliseconds to the first body chunk that holds `marker`, the handler invoked as the streaming runtime does. */
async function firstChunkMs(handler: unknown, route: string, body: unknown, marker: string): Promise<number> {
  const res = await invokeStreaming(
    handler,
    proxyEvent({ route, body, authorizer: BENCH_CALLER }),
    lambdaContext('proxy'),
  );
  const first = res.chunks.find((c) => c.text.includes(marker));
  if (!first) throw new Error(`no chunk with ${marker} in ${route}'s answer (status ${res.statusCode}): ${res.body}`);
  return first.atMs;
}

/** Milliseconds to the first contentBlockDelta of ConverseStream, the stream then read to its end. */
async function converseStreamTtft(client: BedrockRuntimeClient, input: ConverseStreamCommandInput): Promise<number> {
  const started = performance.now();
  const answer = await client.send(new ConverseStreamCommand(input));
  let first = Number.NaN;
  for await (const event of answer.stream ?? [])
    if (Number.isNaN(first) && event.contentBlockDelta) first = performance.now() - started;
  return first;
}

export async function benchReach(dynamoEndpoint: string): Promise<void> {
  installLambdaStreamingGlobals();
  const standIn = await startBedrockStandIn();
  const upstream = await startUpstreamStandIn({
    words: ['Hello', ' there', '!'],
    usage: { prompt_tokens: 8, completion_tokens: 3 },
  });
  const models = Object.fromEntries(Object.values(FAMILIES).map((f) => [f.model, f.price]));
  const bench = await benchProxyDeps(dynamoEndpoint, 'bench-reach', {
    [CHAT]: { models },
    [MESSAGES]: { models: { 'gpt-4o-mini': FAMILIES.openai_o200k.price } },
  });
  const bedrock = {
    kind: 'bedrock' as const,
    region: standIn.region,
    endpoint: standIn.endpoint,
    credentials: standIn.credentials,
    modelId: (m: string) => m,
  };

  // Bedrock: the proxy handler (its adapter signs and sends ConverseStream) against the SDK's own
  // ConverseStream to the same stand-in, on the HTTP/1.1 keep-alive handler the adapter uses.
  const viaBedrock = createProxyHandler({ ...bench.deps, upstream: bedrock });
  const sdk = new BedrockRuntimeClient({
    region: standIn.region,
    endpoint: standIn.endpoint,
    credentials: standIn.credentials,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler(),
  });
  const hi = { model: BEDROCK_MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true };
  const [bedrockProxyMs, bedrockDirectMs] = await pairedMedians([
    () => firstChunkMs(viaBedrock, CHAT, hi, '"content":" hi'),
    () =>
      converseStreamTtft(sdk, {
        modelId: BEDROCK_MODEL,
        messages: [{ role: 'user', content: [{ text: 'hi' }] }],
        inferenceConfig: { maxTokens: 4_096 },
      }),
  ]);
  report(
    'proxy.bedrock.ttft_overhead_ms',
    bedrockProxyMs - bedrockDirectMs,
    'ms (p50, proxy handler with the Bedrock upstream minus the SDK ConverseStream to the stand-in directly)',
  );
  report('proxy.bedrock.ttft_p50_ms', bedrockProxyMs, 'ms (baseline: the SDK directly)', bedrockDirectMs);
  sdk.destroy();

  // Messages: the same request through the same handler on the two routes; the difference is the dialect's.
  const viaOpenAi = createProxyHandler({
    ...bench.deps,
    upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-upstream' },
  });
  const request = { model: 'gpt-4o-mini', max_tokens: 256, messages: [{ role: 'user', content: 'hi' }], stream: true };
  const [messagesMs, chatMs] = await pairedMedians([
    () => firstChunkMs(viaOpenAi, MESSAGES, request, '"text_delta"'),
    () => firstChunkMs(viaOpenAi, CHAT, request, '"content":"Hello"'),
  ]);
  report(
    'proxy.messages.ttft_overhead_ms',
    messagesMs - chatMs,
    'ms (p50, POST /v1/messages minus the same request on /v1/chat/completions, one handler)',
  );
  report('proxy.messages.ttft_p50_ms', messagesMs, 'ms (baseline: /v1/chat/completions)', chatMs);

  await reportPrecount(bench.config.endpoints[CHAT]!, standIn, bedrock);
  await upstream.stop();
  await standIn.close();
  await bench.stop();
}

/**
 * Per family: the proxy's input bound (what it reserves) over the input billed, summed over the
 * corpus, and the smallest ratio of one request. Billed, for the OpenAI families: the honest bill
 * (test/support/honest-bill.ts) in the family's encoding by gpt-tokenizer; for the Bedrock
 * families: what the Bedrock stand-in's ledger bills for the request sent through the adapter.
 */
async function reportPrecount(
  endpoint: EndpointConfig,
  standIn: BedrockStandIn,
  bedrock: Parameters<typeof callBedrock>[0],
): Promise<void> {
  const corpus = precountCorpus(size(16, 1));
  for (const [family, { model, bill }] of Object.entries(FAMILIES)) {
    let bound = 0;
    let billed = 0;
    let least = Number.POSITIVE_INFINITY;
    for (const { body } of corpus) {
      const raw = JSON.stringify({ model, max_tokens: 16, ...body });
      const request = parseRequest(CHAT, raw, false, endpoint);
      const price = endpoint.models[model]!;
      const reserved = chatInputBound(request.body, price.encoding ?? encodingFor(model), price).inputTokens;
      let charged: number;
      if (bill === 'openai')
        charged = honestInputBill(
          request.body,
          {},
          model === 'gpt-4' ? (t) => cl100k(t, noSpecials).length : o200kTokens,
        );
      else {
        const answer = await callBedrock(bedrock, request.body, new AbortController());
        if (!answer.ok) throw new Error(`the Bedrock stand-in refused a corpus request: ${await answer.text()}`);
        await answer.text();
        charged = standIn.ledger.at(-1)!.input;
      }
      bound += reserved;
      billed += charged;
      least = Math.min(least, reserved / charged);
    }
    const billedBy =
      bill === 'openai'
        ? `an honest OpenAI bill in ${encodingFor(model)} by gpt-tokenizer`
        : "the Bedrock stand-in's bill through the adapter, its tokenizer o200k by gpt-tokenizer (not the model's own)";
    report(
      `proxy.precount_error_ratio.${family}`,
      bound / billed,
      `reserved input / billed input over ${corpus.length} requests (pre-count ${encodingFor(model)}; billed: ` +
        `${billedBy}; >= 1: never under-reserved)`,
    );
    report(
      `proxy.precount_min_ratio.${family}`,
      least,
      `reserved / billed input of the least covered request (${corpus.length}; target >= 1)`,
    );
  }
}
