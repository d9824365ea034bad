import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { type LimitOutcome, mostConstraining, rateLimitHeaders, retryAfterSeconds } from '../engine/contract';
import { InvalidLimitError, LayerUnavailableError, LimiterError, UnknownPlanError } from '../engine/errors';
import type { Identity, Limiter, TenantRecord, Verdict } from '../engine/limiter';
import type { LimiterConfig } from '../engine/plans';
import { type Ledger, ledgerZone, NO_MODEL } from '../engine/ledger';
import { type Brake, brakeWaitMs, isBraked } from '../runtime/brake';
import { type Directory, extractApiKey, hashKey } from '../runtime/directory';
import { type MetricEvent, putMetrics } from '../runtime/metrics';
import { NUMBER_SETTINGS } from '../runtime/settings';

export interface AuthorizerDeps {
  readonly config: LimiterConfig;
  readonly limiter: Limiter;
  readonly directory: Directory;
  readonly brake: Brake;
  /** Retry-After while braked without an `until`. @default NUMBER_SETTINGS.brakeRetryAfterSeconds (60) */
  readonly brakeRetryAfterSeconds?: number;
  readonly clock?: () => number;
  readonly log: (entry: Record<string, unknown>) => void;
  /** Where EMF metric lines go. @default putMetrics (stdout, which CloudWatch reads) */
  readonly metrics?: (event: MetricEvent) => void;
  /** The usage ledger: denials by code are counted in it (lambda/engine/ledger.ts). */
  readonly ledger?: Ledger;
}

/** One metric line per decision: outcome (and, for a denial, the layer and code that decided it). */
function count(
  deps: AuthorizerDeps,
  outcome: string,
  extra: Record<string, string> = {},
  properties: Record<string, string> = {},
): void {
  (deps.metrics ?? putMetrics)({
    dimensions: { Function: 'authorizer', Outcome: outcome, ...extra },
    metrics: { Decisions: { value: 1, unit: 'Count' } },
    properties,
  });
}

type Context = Record<string, string | number | boolean>;

/** Thrown with exactly this message, API Gateway answers 401 (the UNAUTHORIZED gateway response). */
export const unauthorized = (): Error => new Error('Unauthorized');

/** Context values are strings in gateway-response templates: keep a message JSON-safe. */
const jsonSafe = (text: string): string => JSON.stringify(text).slice(1, -1);

function policy(
  effect: 'Allow' | 'Deny',
  event: APIGatewayRequestAuthorizerEvent,
  principal: string,
  context: Context,
): APIGatewayAuthorizerResult {
  return {
    principalId: principal,
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: event.methodArn }],
    },
    context,
  };
}

function limitContext(limits: readonly LimitOutcome[], focus?: LimitOutcome): Context {
  const headers = rateLimitHeaders(limits, focus ?? mostConstraining(limits));
  // The most constraining request limit, for OpenAI's x-ratelimit-*-requests headers.
  const requests = mostConstraining(limits.filter((l) => l.spec.counts === 'requests'));
  return {
    requestsLimit: requests?.decision.limit ?? '',
    requestsRemaining: requests?.decision.remaining ?? '',
    requestsResetMs: requests ? Math.ceil(requests.decision.resetMs) : '',
    limit: headers['X-RateLimit-Limit'] ?? '',
    remaining: headers['X-RateLimit-Remaining'] ?? '',
    reset: headers['X-RateLimit-Reset'] ?? '',
    policy: headers['RateLimit-Policy'] ?? '',
    rateLimit: headers.RateLimit ?? '',
  };
}

function deny(
  event: APIGatewayRequestAuthorizerEvent,
  identity: Identity,
  code: string,
  message: string,
  retryAfterMs: number,
  extra: Context = {},
): APIGatewayAuthorizerResult {
  return policy('Deny', event, `${identity.tenant}:${identity.user}`, {
    limit: '',
    remaining: '',
    reset: '',
    policy: '',
    rateLimit: '',
    ...extra,
    code,
    // Anthropic's clients on /v1/messages read `rate_limit_error`; OpenAI's, `rate_limit_exceeded`.
    type: (event.resource ?? event.path ?? '').startsWith('/v1/messages') ? 'rate_limit_error' : 'rate_limit_exceeded',
    message: jsonSafe(message),
    retryAfter: retryAfterSeconds(retryAfterMs),
  });
}

/** Step 1, identify: the key from Authorization or x-api-key, looked up by its hash; anything else is 401. */
async function identify(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  base: Record<string, unknown>,
): Promise<Identity> {
  const credential = extractApiKey(event.headers, event.multiValueHeaders);
  if ('problem' in credential) {
    deps.log({ ...base, outcome: 'unauthorized', reason: credential.problem });
    count(deps, 'unauthorized');
    throw unauthorized();
  }
  const record = await deps.directory.key(hashKey(credential.key));
  if (record?.status !== 'active') {
    deps.log({ ...base, outcome: 'unauthorized', reason: record ? 'revoked key' : 'unknown key' });
    count(deps, 'unauthorized');
    throw unauthorized();
  }
  return { tenant: record.tenant, user: record.user };
}

/** Step 2, the brake: while it is on, every AI route is denied before any bucket. */
async function braked(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  identity: Identity,
  who: Record<string, unknown>,
  brakeRead: ReturnType<Brake['state']>,
): Promise<APIGatewayAuthorizerResult | undefined> {
  const now = (deps.clock ?? Date.now)();
  const brake = await brakeRead;
  if (!isBraked(brake, now)) return undefined;
  const waitMs = brakeWaitMs(brake, now, deps.brakeRetryAfterSeconds ?? NUMBER_SETTINGS.brakeRetryAfterSeconds.default);
  deps.log({ ...who, outcome: 'denied', code: 'brake', brakeSource: brake.source });
  count(deps, 'denied', { Layer: 'brake', Code: 'brake' });
  return deny(
    event,
    identity,
    'brake',
    `Service paused by the operators${brake.reason ? `: ${brake.reason}` : ''}. Retry after the time given in Retry-After.`,
    waitMs,
  );
}

/** Step 3, the tenant: a missing or broken one is the operators' problem (answered 500 downstream, alarmed), never a 429. */
async function tenantOf(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  identity: Identity,
  who: Record<string, unknown>,
): Promise<{ tenant: TenantRecord } | APIGatewayAuthorizerResult> {
  let tenant: TenantRecord | undefined;
  try {
    tenant = await deps.directory.tenant(identity.tenant);
  } catch (err) {
    if (!(err instanceof InvalidLimitError)) throw err;
    return misconfigured(event, deps, identity, who, 'tenant_config_invalid', err.message);
  }
  if (tenant) return { tenant };
  return misconfigured(
    event,
    deps,
    identity,
    who,
    'tenant_unknown',
    `key belongs to tenant ${identity.tenant}, which does not exist`,
  );
}

/** Step 4's answer: Allow with the context the proxy and the headers need, or Deny with the 429's. */
function answerVerdict(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  identity: Identity,
  tenant: TenantRecord,
  route: string,
  who: Record<string, unknown>,
  verdict: Verdict,
): APIGatewayAuthorizerResult {
  const shadowDenied = verdict.limits.filter((l) => l.spec.shadow && !l.decision.allowed).map((l) => l.code);
  for (const code of shadowDenied)
    deps.log({ ...who, outcome: 'shadow_denied', code, message: 'a shadow limit would have denied this request' });
  const common = {
    plan: tenant.plan,
    shard: verdict.shard,
    shadow: shadowDenied.join(','),
    failedOpen: verdict.failedOpen.join(','),
  };
  for (const layer of verdict.failedOpen)
    (deps.metrics ?? putMetrics)({
      dimensions: { Function: 'authorizer', Layer: layer, FailureMode: 'open' },
      metrics: { StoreFailures: { value: 1, unit: 'Count' } },
    });
  for (const code of shadowDenied) count(deps, 'shadow_denied', { Code: code });
  if (verdict.allowed) {
    deps.log({ ...who, outcome: 'allowed', ...(verdict.failedOpen.length ? { failedOpen: verdict.failedOpen } : {}) });
    count(deps, 'allowed', { Tenant: identity.tenant }, { user: identity.user });
    return policy('Allow', event, `${identity.tenant}:${identity.user}`, {
      tenant: identity.tenant,
      user: identity.user,
      endpoint: route,
      ...common,
      ...limitContext(verdict.limits),
    });
  }
  const code = verdict.code ?? 'rate_limited';
  const seconds = retryAfterSeconds(verdict.retryAfterMs ?? 1000);
  const message = verdict.penalized
    ? `Rate limit exceeded (${code}), and requests kept coming while limited: retry after ${seconds} s.`
    : `Rate limit exceeded (${code}): retry after ${seconds} s.`;
  deps.log({ ...who, outcome: 'denied', code, retryAfter: seconds, penalized: verdict.penalized ?? false });
  // The body (and its model) is the proxy's to read: the authorizer's denials are counted under no model.
  deps.ledger?.recordDenial(
    { ...identity, model: NO_MODEL, timeZone: ledgerZone(deps.limiter.planOf(tenant)) },
    (deps.clock ?? Date.now)(),
    code,
  );
  count(
    deps,
    'denied',
    { Layer: verdict.denied?.layer ?? verdict.throttled ?? 'penalty', Code: code },
    { tenant: identity.tenant, user: identity.user },
  );
  const headers = limitContext(verdict.limits, verdict.denied ?? verdict.limits.find((l) => l.code === code));
  // In the penalty box nothing is left until Retry-After, whatever the buckets say: the headers say so too.
  const penalty: Context = verdict.penalized
    ? { remaining: 0, reset: seconds, rateLimit: `"${code}";r=0;t=${seconds}` }
    : {};
  return deny(event, identity, code, message, verdict.retryAfterMs ?? 1000, { ...common, ...headers, ...penalty });
}

/**
 * The front door, as named steps: identify, the brake (read while the key is looked up), the
 * tenant, then the layered limits (tenant, user, endpoint, global, first hit wins).
 */
export async function authorize(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  requestId: string,
): Promise<APIGatewayAuthorizerResult> {
  const route = event.resource ?? event.path ?? '';
  const base = { requestId, route };
  // The brake is read while the key is looked up (both are needed, neither depends on the other).
  const brakeRead = deps.config.endpoints[route] ? deps.brake.state() : undefined;
  brakeRead?.catch(() => {});
  const identity = await identify(event, deps, base);
  const who = { ...base, tenant: identity.tenant, user: identity.user };
  // Not an AI route (GET /v1/limits, /v1/models): no brake, and a small budget of its own per user (each call is a DynamoDB read).
  if (!deps.config.endpoints[route]) return limitsRead(event, deps, identity, who);
  const brake = await braked(event, deps, identity, who, brakeRead ?? deps.brake.state());
  if (brake) return brake;
  const found = await tenantOf(event, deps, identity, who);
  if (!('tenant' in found)) return found;
  try {
    return answerVerdict(
      event,
      deps,
      identity,
      found.tenant,
      route,
      who,
      await deps.limiter.admit(identity, found.tenant, route),
    );
  } catch (err) {
    if (err instanceof UnknownPlanError) return misconfigured(event, deps, identity, who, 'plan_unknown', err.message);
    if (err instanceof LayerUnavailableError) {
      deps.log({ ...who, level: 'error', outcome: 'unavailable', layer: err.layer, message: err.message });
      (deps.metrics ?? putMetrics)({
        dimensions: { Function: 'authorizer', Layer: err.layer, FailureMode: 'closed' },
        metrics: { StoreFailures: { value: 1, unit: 'Count' } },
      });
    }
    throw err;
  }
}

/**
 * A tenant whose configuration is broken (no such tenant, an unknown plan, invalid overrides) is
 * the operators' problem, not a rate limit: a 429 would invite clients to retry forever. The
 * request goes on to the function, which answers 500 in OpenAI's error shape with `code` and calls
 * nothing upstream; the authorizer logs it loudly and counts it (TenantMisconfigured, alarmed).
 */
function misconfigured(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  identity: Identity,
  who: Record<string, unknown>,
  code: 'tenant_config_invalid' | 'tenant_unknown' | 'plan_unknown',
  message: string,
): APIGatewayAuthorizerResult {
  deps.log({ ...who, level: 'error', outcome: 'misconfigured', code, message });
  (deps.metrics ?? putMetrics)({
    dimensions: { Function: 'authorizer' },
    metrics: { TenantMisconfigured: { value: 1, unit: 'Count' } },
    properties: { code, tenant: identity.tenant },
  });
  return policy('Allow', event, `${identity.tenant}:${identity.user}`, {
    tenant: identity.tenant,
    user: identity.user,
    endpoint: String(who.route),
    configError: code,
  });
}

/** GET /v1/limits: allowed within the user's own per-minute budget; logged either way. */
async function limitsRead(
  event: APIGatewayRequestAuthorizerEvent,
  deps: AuthorizerDeps,
  identity: Identity,
  who: Record<string, unknown>,
): Promise<APIGatewayAuthorizerResult> {
  const principal = `${identity.tenant}:${identity.user}`;
  const context = { tenant: identity.tenant, user: identity.user, endpoint: String(who.route) };
  let outcome: LimitOutcome;
  try {
    outcome = await deps.limiter.admitLimitsRead(identity);
  } catch (err) {
    if (!(err instanceof LimiterError)) throw err;
    // Reading one's limits never spends anything: let it through (failure mode open), loudly.
    deps.log({ ...who, level: 'error', outcome: 'allowed', failedOpen: ['limits_reads'], error: err.name });
    return policy('Allow', event, principal, context);
  }
  if (outcome.decision.allowed) {
    deps.log({ ...who, outcome: 'allowed' });
    return policy('Allow', event, principal, { ...context, ...limitContext([outcome]) });
  }
  const seconds = retryAfterSeconds(outcome.decision.retryAfterMs);
  deps.log({ ...who, outcome: 'denied', code: outcome.code, retryAfter: seconds });
  count(deps, 'denied', { Layer: 'user', Code: outcome.code });
  return deny(
    event,
    identity,
    outcome.code,
    `Too many requests for your limits (${outcome.code}): retry after ${seconds} s.`,
    outcome.decision.retryAfterMs,
    limitContext([outcome], outcome),
  );
}
