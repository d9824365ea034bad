/**
 * What the stack costs and how much memory its proxy needs: the idle bill and the per-request bill
 * of the README's sample (bench/cost-tables.ts), and the proxy's peak resident memory serving a
 * large prompt with a long stream, measured in a fresh Node process running the proxy bundle the
 * package ships (dist/lambda/proxy), as Lambda would, against DynamoDB Local and the stand-ins.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createHandler, depsFromEnvironment } from '../lambda/authorizer/handler';
import { requestsPerMinute, tokensPerDay } from '../lambda/engine/plans';
import { ensureTable } from '../lambda/engine/store';
import { putApiKey, putTenant } from '../lambda/runtime/directory';
import { localClient } from '../local/dynamodb-local';
import { startSsmLocal } from '../local/ssm-local';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { authorizerEvent, lambdaContext, proxyEvent } from '../test/support/events';
import { localFunctionEnvironment } from '../test/support/function-environment';
import { costTables, readmeTemplate, requestShape, STREAM_SECONDS } from './cost-tables';
import { idleCost, perRequestCost, total } from './prices';
import { report } from './report';
import { size } from './smoke';

const run = promisify(execFile);
const TABLE = 'bench-footprint';
const CHAT = '/v1/chat/completions';
const BUNDLE = fileURLToPath(new URL('../dist/lambda/proxy/index.js', import.meta.url));
const CONFIG = {
  plans: { team: { tenant: [tokensPerDay(1_000_000_000)], user: [requestsPerMinute(1_000)] } },
  endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
};

/**
 * Runs in the child: Lambda's streaming globals, the bundle loaded, one invocation whose answer goes
 * nowhere; prints the process's peak RSS (the OS's own count) and how long the invocation took.
 */
const CHILD = `
globalThis.awslambda = { streamifyResponse: (h) => h, HttpResponseStream: { from: (s) => s } };
const { Writable } = require('node:stream');
const event = JSON.parse(require('node:fs').readFileSync(process.argv[2], 'utf8'));
const { handler } = require(process.argv[1]);
const initRssMb = process.memoryUsage.rss() / 1048576;
const sink = new Writable({ write(chunk, enc, cb) { this.bytes = (this.bytes || 0) + chunk.length; cb(); } });
const context = { awsRequestId: 'footprint', getRemainingTimeInMillis: () => 900000 };
const started = performance.now();
Promise.resolve(handler(event, sink, context)).then(() => {
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ peakRssMb, initRssMb, ms: performance.now() - started, bytes: sink.bytes }));
});
`;

/** A prompt of about `bytes` of prose: what the tokenizer counts before anything is reserved. */
const prompt = (bytes: number): string => {
  const sentence = 'The limiter counts every token of this prompt before it reserves the answer, exactly. ';
  return sentence.repeat(Math.ceil(bytes / sentence.length)).slice(0, bytes);
};

export interface Footprint {
  readonly peakRssMb: number;
  readonly initRssMb: number;
  readonly ms: number;
}

/** The proxy bundle serving one request of `promptBytes` whose answer streams `words` chunks. */
export async function proxyFootprint(
  dynamoEndpoint: string,
  o: { promptBytes: number; words: number; delayMs: number },
): Promise<Footprint> {
  await ensureTable(localClient(dynamoEndpoint), TABLE);
  const ssm = await startSsmLocal();
  const upstream = await startUpstreamStandIn({
    words: Array.from({ length: o.words }, (_, i) => ` word${i}`),
    usage: { prompt_tokens: Math.ceil(o.promptBytes / 4), completion_tokens: o.words },
    delayMs: o.delayMs,
  });
  const dir = mkdtempSync(join(tmpdir(), 'llm-limiter-footprint-'));
  const saved = { ...process.env };
  try {
    const brake = '/bench-footprint/brake';
    ssm.parameters.set(brake, { value: 'off', version: 1, modified: Date.now() });
    ssm.secrets.set('bench-footprint-key', 'sk-upstream');
    const environment = {
      ...localFunctionEnvironment({
        tableName: TABLE,
        brakeParameterName: brake,
        config: CONFIG,
        dynamoEndpoint,
        ssmEndpoint: ssm.endpoint,
      }),
      UPSTREAM_BASE_URL: upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: 'bench-footprint-key',
    };
    Object.assign(process.env, environment);
    const client = localClient(dynamoEndpoint);
    const tenant = `tenant-${crypto.randomUUID()}`;
    const apiKey = `sk-bench-${crypto.randomUUID()}`;
    await putTenant(client, TABLE, { id: tenant, plan: 'team' });
    await putApiKey(client, TABLE, apiKey, { tenant, user: 'user', status: 'active' });
    const decision = await createHandler(depsFromEnvironment())(
      authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } }),
      lambdaContext(),
    );
    const event = proxyEvent({
      route: CHAT,
      body: {
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: prompt(o.promptBytes) }],
        stream: true,
        max_tokens: o.words + 100,
      },
      authorizer: decision.context as Record<string, string>,
    });
    const eventFile = join(dir, 'event.json');
    writeFileSync(eventFile, JSON.stringify(event));
    const { stdout } = await run(process.execPath, ['-e', CHILD, BUNDLE, eventFile], {
      env: { PATH: process.env.PATH ?? '', LAMBDA_TASK_ROOT: dir, ...environment },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 300_000,
    });
    const out = JSON.parse(stdout) as Footprint & { bytes: number };
    if (!(out.bytes > o.words * 5)) throw new Error(`the footprint request streamed only ${out.bytes} bytes`);
    return out;
  } finally {
    process.env = saved;
    rmSync(dir, { recursive: true, force: true });
    await upstream.stop();
    await ssm.stop();
  }
}

export async function benchFootprint(dynamoEndpoint: string): Promise<void> {
  const template = await readmeTemplate();
  report(
    'package.idle_usd_per_month',
    total(idleCost(template)),
    "USD a month for the README's sample with no traffic, us-east-1 list prices (README, What it costs)",
  );
  const shape = requestShape(template.Resources);
  for (const seconds of STREAM_SECONDS)
    report(
      `cost.usd_per_million_streamed_requests.${seconds}s`,
      total(perRequestCost(seconds, shape)),
      `USD per million ${seconds} s streamed requests, every component (API Gateway, authorizer, proxy at ` +
        `${shape.proxyMemoryMb} MB, DynamoDB), list prices`,
    );
  await costTables(); // the README's tables compute (test/docs/cost.test.ts compares them)
  const f = await proxyFootprint(dynamoEndpoint, {
    promptBytes: size(1_000_000, 100_000),
    words: size(3_000, 100),
    delayMs: size(3, 1),
  });
  report(
    'proxy.peak_rss_mb',
    f.peakRssMb,
    `MB peak resident memory of the proxy bundle in a fresh Node process: a ${size(1_000_000, 100_000) / 1000} ` +
      `KB prompt, a ${size(3_000, 100)}-chunk stream (${(f.ms / 1000).toFixed(1)} s; ${f.initRssMb.toFixed(0)} MB ` +
      `after init)`,
  );
}
