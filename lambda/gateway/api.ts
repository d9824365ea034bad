/**
 * The API's shape, defined once: the construct deploys it and the local gateway serves it, so the
 * two cannot drift (a test compares the synthesised template with this).
 */
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
  return [
    ...Object.keys(endpoints).map((path) => ({
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
  proxy: { memorySize: 1024 },
  limits: { memorySize: 256, timeoutSeconds: 10 },
} as const;

export interface EnvironmentSettings {
  readonly tableName: string;
  readonly brakeParameterName: string;
  readonly keyCacheTtlSeconds: number;
  readonly brakeCacheTtlSeconds: number;
  readonly brakeColdStart: 'released' | 'braked';
  readonly brakeRetryAfterSeconds: number;
  readonly clockSkewMs: number;
  /** Tenant as a metric dimension (one billed set of custom metrics per tenant). */
  readonly metricsByTenant: boolean;
}

/** The environment every function gets (the proxy adds its upstream's). No secret is ever in it. */
export function functionEnvironment(s: EnvironmentSettings): Record<string, string> {
  return {
    NODE_OPTIONS: '--enable-source-maps',
    TABLE_NAME: s.tableName,
    BRAKE_PARAMETER_NAME: s.brakeParameterName,
    // The brake is read from the table's mirror of the parameter (lambda/brake-mirror).
    BRAKE_SOURCE: 'mirror',
    KEY_CACHE_TTL_SECONDS: String(s.keyCacheTtlSeconds),
    BRAKE_CACHE_TTL_SECONDS: String(s.brakeCacheTtlSeconds),
    BRAKE_COLD_START: s.brakeColdStart,
    BRAKE_RETRY_AFTER_SECONDS: String(s.brakeRetryAfterSeconds),
    CLOCK_SKEW_MS: String(s.clockSkewMs),
    METRICS_BY_TENANT: String(s.metricsByTenant),
  };
}

export function proxyEnvironment(
  upstreamBaseUrl: string,
  upstreamApiKeySecret: string,
  upstreamTimeoutMs: number,
): Record<string, string> {
  return {
    UPSTREAM_BASE_URL: upstreamBaseUrl,
    UPSTREAM_API_KEY_SECRET: upstreamApiKeySecret,
    UPSTREAM_TIMEOUT_MS: String(upstreamTimeoutMs),
  };
}
