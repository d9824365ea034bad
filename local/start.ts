import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { createHandler, depsFromEnvironment } from '../lambda/authorizer/handler';
import { putApiKey, putTenant } from '../lambda/runtime/directory';
import {
  type LimiterConfig,
  parseConfig,
  requestsPerMinute,
  tokensPerDay,
  tokensPerMinute,
  usdPerDay,
} from '../lambda/engine/plans';
import { publishConfig } from '../lambda/engine/published-config';
import { ensureTable } from '../lambda/engine/store';
import { ensureLedgerTable } from '../lambda/engine/ledger';
import {
  apiRoutes,
  functionEnvironment,
  proxyEnvironment,
  type UpstreamKind,
  type UpstreamTarget,
} from '../lambda/gateway/api';
import { type AnthropicStandIn, startAnthropicStandIn } from './anthropic-standin';
import { type BedrockStandIn, startBedrockStandIn } from './bedrock-standin';
import { createLimitsHandler, limitsDepsFromEnvironment } from '../lambda/limits/handler';
import { createProxyHandler, proxyDepsFromEnvironment } from '../lambda/proxy/handler';
import { countMessages } from '../lambda/proxy/input-bound';
import { countText } from '../lambda/proxy/tokenizer';
import { localClient, startDynamoDbLocal } from './dynamodb-local';
import { type LocalGateway, startLocalGateway } from './gateway';
import { installLambdaStreamingGlobals } from './lambda-streaming';
import { setMetricSink } from '../lambda/runtime/metrics';
import { type SsmLocal, startSsmLocal } from './ssm-local';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mirrorBrake } from '../lambda/brake-mirror/handler';
import { CLIENT_TIMEOUTS, clientConfig } from '../lambda/runtime/aws-clients';
import { startUpstreamStandIn } from './upstream-standin';

/** The demo's models, on every chat-like route: two OpenAI names and a Claude model as Bedrock names it. */
const DEMO_MODELS = {
  'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  'gpt-4o': { inputPerMillion: 2.5, outputPerMillion: 10 },
  'claude-3-5-haiku': {
    inputPerMillion: 0.8,
    outputPerMillion: 4,
    upstreamModel: 'us.anthropic.claude-3-5-haiku-20241022-v1:0',
  },
};

/**
 * The demo configuration: small enough that a person sees a 429 within 100 quick requests
 * (60 requests a minute per user).
 */
export const DEMO_CONFIG: LimiterConfig = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: {
        demo: {
          tenant: [tokensPerDay(200_000), requestsPerMinute(600)],
          user: [requestsPerMinute(60), tokensPerMinute(20_000)],
          outputReservation: 256,
        },
        pro: {
          tenant: [tokensPerDay(2_000_000), requestsPerMinute(6_000)],
          user: [requestsPerMinute(600), tokensPerMinute(200_000)],
          outputReservation: 256,
        },
      },
      endpoints: {
        '/v1/chat/completions': { models: DEMO_MODELS },
        '/v1/responses': { models: DEMO_MODELS },
        '/v1/messages': { models: DEMO_MODELS },
        '/v1/embeddings': { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
      },
      global: { limits: [usdPerDay(50)], shards: 4 },
    }),
  ),
);

export interface LocalOptions {
  readonly port?: number;
  /** Keep DynamoDB Local's data in this folder. @default in memory */
  readonly persistDir?: string;
  /** The demo key. @default a new random key, printed */
  readonly apiKey?: string;
  /** The upstream's API: the built-in stand-in speaks it (Bedrock's: Converse over SigV4). @default 'openai' */
  readonly upstreamKind?: UpstreamKind;
  /** A real upstream of that kind (openai or anthropic) instead of the built-in stand-in. */
  readonly upstreamBaseUrl?: string;
  readonly upstreamApiKey?: string;
  readonly config?: LimiterConfig;
  /** Brake cache TTL in seconds (the deployed default is 5). */
  readonly brakeCacheTtlSeconds?: number;
  /** Prints a one-line summary of the metrics (admitted, denied by code, tokens, spend) this often. @default 5000 */
  readonly summaryEveryMs?: number;
  /** Where the summary lines go. @default stdout */
  readonly summary?: (line: string) => void;
}

/** Adds up the metric lines the functions emit, for a person watching `npm start`. */
export class MetricsSummary {
  private admitted = 0;
  private denied = new Map<string, number>();
  private tokens = 0;
  private microUsd = 0;
  private changed = false;

  add(line: string): void {
    const m = JSON.parse(line) as Record<string, unknown>;
    if (m.Function === 'authorizer' && m.Outcome === 'allowed') this.admitted += Number(m.Decisions ?? 0);
    if (m.Outcome === 'denied')
      this.denied.set(String(m.Code), (this.denied.get(String(m.Code)) ?? 0) + Number(m.Decisions ?? 0));
    if (typeof m.TokensSettled === 'number') this.tokens += m.TokensSettled;
    if (typeof m.MicroUsdSettled === 'number') this.microUsd += m.MicroUsdSettled;
    this.changed = true;
  }

  /** The line to print, or undefined when nothing happened since the last one. */
  line(): string | undefined {
    if (!this.changed) return undefined;
    this.changed = false;
    const denied = [...this.denied.values()].reduce((a, b) => a + b, 0);
    const byCode = [...this.denied.entries()].map(([code, n]) => `${code}: ${n}`).join(', ');
    const spent = (this.microUsd / 1_000_000).toFixed(6);
    return `[limiter] ${this.admitted} admitted, ${denied} denied${byCode ? ` (${byCode})` : ''}, ${this.tokens} tokens settled, $${spent} spent`;
  }
}

export interface LocalStack {
  readonly url: string;
  readonly baseUrl: string;
  readonly apiKey: string;
  readonly tenant: string;
  readonly user: string;
  readonly tableName: string;
  /** The usage ledger's table. */
  readonly ledgerTableName: string;
  readonly brakeParameterName: string;
  readonly dynamoEndpoint: string;
  readonly ssmEndpoint: string;
  /** The local SSM / Secrets Manager endpoint itself (the bench injects throttling through it). */
  readonly ssm: SsmLocal;
  readonly config: LimiterConfig;
  readonly upstreamBaseUrl: string;
  /** Requests the built-in upstream stand-in has answered (undefined with a real upstream). */
  readonly upstreamRequests?: () => number;
  /** The Bedrock stand-in, with `upstreamKind: 'bedrock'` (its ledger and behaviour, for tests). */
  readonly bedrock?: BedrockStandIn;
  /** The Anthropic stand-in, with `upstreamKind: 'anthropic'` and no UPSTREAM_BASE_URL. */
  readonly anthropic?: AnthropicStandIn;
  stop(): Promise<void>;
}

/** The CLI's flags that point it at this stack's table, brake and endpoints (what `--local` reads from .data/). */
export const cliTargets = (local: LocalStack): string[] => [
  '--table',
  local.tableName,
  '--ledger-table',
  local.ledgerTableName,
  '--brake-parameter',
  local.brakeParameterName,
  '--dynamodb-endpoint',
  local.dynamoEndpoint,
  '--ssm-endpoint',
  local.ssmEndpoint,
];

const TABLE = 'llm-rate-limiter-local';
const LEDGER = 'llm-rate-limiter-local-ledger';
const BRAKE = '/llm-rate-limiter/local/brake';
const SECRET = 'llm-rate-limiter/local/upstream-api-key';

/** The stand-in's answer: a short greeting that quotes the prompt, with honest usage. */
function standInReply(body: Record<string, unknown>) {
  const messages = (body.messages as { role: string; content?: string }[] | undefined) ?? [];
  const last = [...messages].reverse().find((m) => m.role === 'user');
  const said = typeof last?.content === 'string' ? last.content.slice(0, 80) : '';
  const words = `Hello from the local stand-in. You said: "${said}"`.split(/(?=\s)/);
  const promptTokens = messages.length
    ? countMessages(messages, 'o200k_base')
    : countText(String(body.input ?? ''), 'o200k_base');
  return { words, usage: { prompt_tokens: promptTokens, completion_tokens: countText(words.join(''), 'o200k_base') } };
}

type Stops = (() => Promise<void>)[];

/** Step 1: the SSM/Secrets Manager endpoint with the brake, mirrored into the table as deployed. */
async function startBrake(client: DynamoDBClient, stops: Stops): Promise<SsmLocal> {
  // The brake as deployed: the functions read the table's mirror of the parameter, which the
  // mirror refreshes on every change of it (EventBridge's event, here the endpoint's hook) and
  // once a minute.
  let mirror = async () => {};
  const aws = await startSsmLocal({ onParameterChange: (name) => void (name === BRAKE && mirror()) });
  stops.push(() => aws.stop());
  aws.parameters.set(BRAKE, { value: 'off', version: 1, modified: Date.now() });
  const mirrorDeps = {
    // The deployed mirror's client (lambda/brake-mirror/handler.ts), pointed at the local endpoint.
    ssm: new SSMClient({
      ...clientConfig(CLIENT_TIMEOUTS.ssm),
      endpoint: aws.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    }),
    doc: DynamoDBDocumentClient.from(client),
    tableName: TABLE,
    parameterName: BRAKE,
    log: () => {},
  };
  mirror = () =>
    mirrorBrake(mirrorDeps).then(
      () => {},
      (err: Error) =>
        console.error(JSON.stringify({ level: 'error', message: 'brake mirror failed', error: err.name })),
    );
  await mirror();
  const reconcile = setInterval(() => void mirror(), 60_000);
  reconcile.unref();
  stops.push(async () => clearInterval(reconcile));
  return aws;
}

/** Step 2: the upstream (a real one, or the built-in stand-in) and its key in the local Secrets Manager. */
async function startUpstream(options: LocalOptions, aws: SsmLocal, stops: Stops): Promise<StartedUpstream> {
  if (options.upstreamKind === 'bedrock') {
    // Signed with the credentials the stand-in accepts (it checks every signature), sent to it by the SDK's endpoint variable.
    const bedrock = await startBedrockStandIn({ behaviour: { natural: 24, eventMs: 15 } });
    stops.push(() => bedrock.close());
    return {
      bedrock,
      upstreamBaseUrl: bedrock.endpoint,
      upstreamRequests: () => bedrock.ledger.length,
      target: { kind: 'bedrock', region: bedrock.region },
      env: {
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME: bedrock.endpoint,
        AWS_ACCESS_KEY_ID: bedrock.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: bedrock.credentials.secretAccessKey,
      },
    };
  }
  const kind = options.upstreamKind ?? 'openai';
  const keyed = (upstreamBaseUrl: string, upstreamRequests?: () => number): StartedUpstream => ({
    upstreamBaseUrl,
    ...(upstreamRequests ? { upstreamRequests } : {}),
    target: { kind, baseUrl: upstreamBaseUrl, apiKeySecret: SECRET },
    env: {},
  });
  if (options.upstreamBaseUrl) {
    // No key given: an upstream without keys (vLLM, Ollama), said explicitly.
    aws.secrets.set(SECRET, options.upstreamApiKey ? options.upstreamApiKey : JSON.stringify({ apiKey: '' }));
    return keyed(options.upstreamBaseUrl);
  }
  aws.secrets.set(SECRET, 'sk-local-stand-in');
  if (kind === 'anthropic') {
    const anthropic = await startAnthropicStandIn();
    stops.push(() => anthropic.stop());
    return { ...keyed(anthropic.baseUrl, () => anthropic.ledger.length), anthropic };
  }
  const standIn = await startUpstreamStandIn({ reply: standInReply, delayMs: 15 });
  stops.push(() => standIn.stop());
  return keyed(standIn.baseUrl, () => standIn.requests.length);
}

interface StartedUpstream {
  readonly bedrock?: BedrockStandIn;
  readonly anthropic?: AnthropicStandIn;
  readonly upstreamBaseUrl: string;
  readonly upstreamRequests?: () => number;
  readonly target: UpstreamTarget;
  /** What the functions' environment needs besides (the Bedrock stand-in's endpoint and credentials). */
  readonly env: Record<string, string>;
}

/** Step 4: the summary line every few seconds, from the functions' metrics. */
function printSummaries(options: LocalOptions, stops: Stops): void {
  const summary = new MetricsSummary();
  setMetricSink((line) => summary.add(line));
  const print = options.summary ?? ((line: string) => process.stdout.write(`${line}\n`));
  const timer = setInterval(() => {
    const line = summary.line();
    if (line) print(line);
  }, options.summaryEveryMs ?? 5_000);
  timer.unref();
  stops.push(async () => clearInterval(timer));
}

/** Step 5: the real handlers, built from the environment, behind the local API Gateway. */
async function startGateway(config: LimiterConfig, options: LocalOptions, stops: Stops): Promise<LocalGateway> {
  installLambdaStreamingGlobals();
  const authorizer = createHandler(depsFromEnvironment());
  const proxy = createProxyHandler(proxyDepsFromEnvironment()) as unknown as (
    event: APIGatewayProxyEvent,
    stream: Writable,
    context: Context,
  ) => Promise<void>;
  const limits = createLimitsHandler(limitsDepsFromEnvironment());
  const routes = apiRoutes(config.endpoints).map((r) =>
    r.streaming
      ? { method: r.method, path: r.path, streaming: true as const, handler: proxy }
      : { method: r.method, path: r.path, streaming: false as const, authorized: r.authorized, handler: limits },
  );
  const gateway = await startLocalGateway({
    authorizer,
    routes,
    port: options.port ?? 8787,
    log: (e) => console.error(JSON.stringify(e)),
  });
  stops.push(() => gateway.stop());
  return gateway;
}

/**
 * The whole API on this machine: DynamoDB Local, a local SSM/Secrets Manager endpoint, an upstream
 * (the built-in stand-in unless a real one is given), and the real authorizer, proxy and limits
 * handlers built from the environment the construct gives them, behind the local API Gateway.
 */
export async function startLocal(options: LocalOptions = {}): Promise<LocalStack> {
  const stops: Stops = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  };
  try {
    if (options.persistDir) mkdirSync(options.persistDir, { recursive: true });
    const dynamo = await startDynamoDbLocal(options.persistDir ? { dbPath: options.persistDir } : {});
    stops.push(() => dynamo.stop());
    const client = localClient(dynamo.endpoint);
    await ensureTable(client, TABLE);
    await ensureLedgerTable(client, LEDGER);
    const aws = await startBrake(client, stops);
    const {
      upstreamBaseUrl,
      upstreamRequests,
      target,
      env: upstreamEnv,
      bedrock,
      anthropic,
    } = await startUpstream(options, aws, stops);

    // Step 3: the demo tenant and key, and the configuration published as a deploy does (the CLI
    // reads it from the table for plan checks and usage).
    const config = options.config ?? DEMO_CONFIG;
    const tenant = 'demo';
    const user = 'developer';
    const apiKey = options.apiKey ?? `sk-lrl-local-${randomBytes(18).toString('base64url')}`;
    await putTenant(client, TABLE, { id: tenant, plan: Object.keys(config.plans)[0]! });
    await publishConfig(client, TABLE, config);
    await putApiKey(client, TABLE, apiKey, { tenant, user, status: 'active' });

    // The same environment the construct gives the functions, pointed at the local services.
    Object.assign(process.env, {
      ...functionEnvironment({
        tableName: TABLE,
        ledgerTableName: LEDGER,
        brakeParameterName: BRAKE,
        settings:
          options.brakeCacheTtlSeconds !== undefined ? { brakeCacheTtlSeconds: options.brakeCacheTtlSeconds } : {},
      }),
      ...proxyEnvironment({ upstream: target }),
      LIMITER_CONFIG: JSON.stringify(config),
      AWS_REGION: process.env.AWS_REGION ?? 'us-east-1',
      AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'local',
      AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'local',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SSM: aws.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: aws.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: aws.endpoint,
      ...upstreamEnv,
    });
    printSummaries(options, stops);
    const gateway = await startGateway(config, options, stops);
    return {
      url: gateway.url,
      baseUrl: `${gateway.url}/v1`,
      upstreamBaseUrl,
      apiKey,
      tenant,
      user,
      tableName: TABLE,
      ledgerTableName: LEDGER,
      brakeParameterName: BRAKE,
      dynamoEndpoint: dynamo.endpoint,
      ssmEndpoint: aws.endpoint,
      ssm: aws,
      config,
      ...(upstreamRequests ? { upstreamRequests } : {}),
      ...(bedrock ? { bedrock } : {}),
      ...(anthropic ? { anthropic } : {}),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
