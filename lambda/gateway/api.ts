/**
 * The API's shape, defined once: the construct deploys it and the local gateway serves it, so the
 * two cannot drift (a test compares the synthesised template with this).
 */
import {
  CHOICE_SETTINGS,
  FLAG_SETTINGS,
  NUMBER_SETTINGS,
  type SettingValues,
  settingsEnvironment,
} from '../runtime/settings';

export type Integration = 'proxy' | 'limits';

export interface ApiRoute {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly integration: Integration;
  /** Response streaming (the proxy) or a buffered Lambda proxy integration. */
  readonly streaming: boolean;
  /** Through the authorizer (every route but the usage page, which is a static page that holds no data). */
  readonly authorized: boolean;
}

/** The route that tells a caller its limits and usage (`GET /v1/limits` with its key). */
export const LIMITS_ROUTE = '/v1/limits';
/** OpenAI's model list, which many tools call first: served by the limits function from the configuration. */
export const MODELS_ROUTE = '/v1/models';
/**
 * The usage page for people: static HTML with no data in it, so it needs no key. A person pastes
 * a key and the page asks GET /v1/limits with it in the Authorization header.
 */
export const USAGE_PAGE_ROUTE = '/v1/usage';
/** Requests per second (and burst) the unauthenticated usage page may take, over the whole stage. */
export const USAGE_PAGE_THROTTLE = { rateLimit: 5, burstLimit: 10 } as const;

/** Every AI endpoint is a streaming POST to the proxy; GET /v1/limits, /v1/models and the usage page are buffered. */
export function apiRoutes(endpoints: Readonly<Record<string, unknown>>): ApiRoute[] {
  // Anthropic's token count comes with its Messages route (the proxy serves it, free of upstream cost).
  const paths = Object.keys(endpoints);
  if (paths.includes('/v1/messages')) paths.push('/v1/messages/count_tokens');
  return [
    ...paths.map((path) => ({
      method: 'POST' as const,
      path,
      integration: 'proxy' as const,
      streaming: true,
      authorized: true,
    })),
    { method: 'GET', path: LIMITS_ROUTE, integration: 'limits', streaming: false, authorized: true },
    { method: 'GET', path: MODELS_ROUTE, integration: 'limits', streaming: false, authorized: true },
    { method: 'GET', path: USAGE_PAGE_ROUTE, integration: 'limits', streaming: false, authorized: false },
  ];
}

/** Memory (MB) and timeout (s) per function; the proxy's timeout is the stream timeout. */
export const FUNCTION_SETTINGS = {
  authorizer: { memorySize: 512, timeoutSeconds: 10 },
  // Measured peak ~200 MB (bench footprint); CPU for the input count is the trade-off (LlmRateLimiterProps.proxyMemorySize).
  proxy: { memorySize: 512 },
  limits: { memorySize: 256, timeoutSeconds: 10 },
} as const;

export interface EnvironmentSettings {
  readonly tableName: string;
  readonly brakeParameterName: string;
  /** The usage ledger's table (lambda/engine/ledger.ts). */
  readonly ledgerTableName: string;
  /** The runtime settings (lambda/runtime/settings.ts); each one left out is its default. */
  readonly settings: Pick<
    SettingValues,
    | 'ledgerFlushSeconds'
    | 'ledgerRetentionDays'
    | 'keyCacheTtlSeconds'
    | 'brakeCacheTtlSeconds'
    | 'brakeColdStart'
    | 'brakeRetryAfterSeconds'
    | 'clockSkewMs'
    | 'metricsByTenant'
  >;
}

/** The environment every function gets (the proxy adds its upstream's). No secret is ever in it. */
export function functionEnvironment(s: EnvironmentSettings): Record<string, string> {
  return {
    NODE_OPTIONS: '--enable-source-maps',
    TABLE_NAME: s.tableName,
    BRAKE_PARAMETER_NAME: s.brakeParameterName,
    LEDGER_TABLE_NAME: s.ledgerTableName,
    // The brake is read from the table's mirror of the parameter (lambda/brake-mirror).
    BRAKE_SOURCE: 'mirror',
    ...settingsEnvironment({
      keyCacheTtlSeconds: NUMBER_SETTINGS.keyCacheTtlSeconds.default,
      brakeCacheTtlSeconds: NUMBER_SETTINGS.brakeCacheTtlSeconds.default,
      brakeColdStart: CHOICE_SETTINGS.brakeColdStart.default,
      brakeRetryAfterSeconds: NUMBER_SETTINGS.brakeRetryAfterSeconds.default,
      clockSkewMs: NUMBER_SETTINGS.clockSkewMs.default,
      metricsByTenant: FLAG_SETTINGS.metricsByTenant.default,
      ...s.settings,
    }),
  };
}

/** The upstreams the proxy speaks to: an OpenAI-compatible API, an Anthropic-compatible one, or Bedrock. */
export const UPSTREAM_KINDS = ['openai', 'anthropic', 'bedrock'] as const;
/** Which kind of upstream an {@link Upstream} is: `openai` (OpenAI-compatible), `anthropic` or `bedrock`. */
export type UpstreamKind = (typeof UPSTREAM_KINDS)[number];

/**
 * Where the proxy's upstream is: an HTTP API with a key (its base URL and the id of the secret that
 * holds the key, never the key), or Bedrock in a region, called with the proxy role's credentials.
 */
export type UpstreamTarget =
  | { readonly kind: 'openai' | 'anthropic'; readonly baseUrl: string; readonly apiKeySecret: string }
  | { readonly kind: 'bedrock'; readonly region: string };

/** The proxy's upstream variables: the construct writes them, the proxy reads them (upstreamFromEnvironment). */
export const UPSTREAM_ENV = {
  kind: 'UPSTREAM_KIND',
  baseUrl: 'UPSTREAM_BASE_URL',
  apiKeySecret: 'UPSTREAM_API_KEY_SECRET',
  bedrockRegion: 'BEDROCK_REGION',
} as const;

/** The OpenAI-compatible shorthand: a base URL and the secret's id. */
interface KeyedShorthand {
  upstreamBaseUrl: string;
  upstreamApiKeySecret: string;
}

/** What the proxy adds: its upstream (for a keyed one, the id of the secret with its key, never the key), its timeout. */
export function proxyEnvironment(
  p: (KeyedShorthand | { upstream: UpstreamTarget }) & { upstreamTimeoutMs?: number },
): Record<string, string> {
  const upstream: UpstreamTarget =
    'upstream' in p ? p.upstream : { kind: 'openai', baseUrl: p.upstreamBaseUrl, apiKeySecret: p.upstreamApiKeySecret };
  return {
    [UPSTREAM_ENV.kind]: upstream.kind,
    ...(upstream.kind === 'bedrock'
      ? { [UPSTREAM_ENV.bedrockRegion]: upstream.region }
      : { [UPSTREAM_ENV.baseUrl]: upstream.baseUrl, [UPSTREAM_ENV.apiKeySecret]: upstream.apiKeySecret }),
    ...settingsEnvironment({ upstreamTimeoutMs: p.upstreamTimeoutMs ?? NUMBER_SETTINGS.upstreamTimeoutMs.default }),
  };
}

/**
 * The upstream the proxy's environment names; UPSTREAM_KIND unset is 'openai' (environments written
 * before it existed). A missing or unknown variable throws, naming it.
 */
export function upstreamFromEnvironment(env: Readonly<Record<string, string | undefined>>): UpstreamTarget {
  const need = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
  };
  const kind = env[UPSTREAM_ENV.kind] ?? 'openai';
  if (!(UPSTREAM_KINDS as readonly string[]).includes(kind))
    throw new Error(`${UPSTREAM_ENV.kind} is ${JSON.stringify(kind)}; expected ${UPSTREAM_KINDS.join(', ')}`);
  if (kind === 'bedrock') return { kind, region: need(UPSTREAM_ENV.bedrockRegion) };
  return {
    kind: kind as 'openai' | 'anthropic',
    baseUrl: need(UPSTREAM_ENV.baseUrl),
    apiKeySecret: need(UPSTREAM_ENV.apiKeySecret),
  };
}
