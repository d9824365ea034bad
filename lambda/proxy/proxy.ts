import { Readable } from 'node:stream';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { errorBody, type ErrorType, retryAfterSeconds } from '../engine/contract';
import {
  InvalidLimitError,
  LayerUnavailableError,
  LimiterError,
  StoreUnavailableError,
  UnknownPlanError,
} from '../engine/errors';
import { MISCONFIGURED } from '../engine/contract';
import type { Amounts, Identity, Limiter, TenantRecord, Verdict } from '../engine/limiter';
import {
  DEFAULT_MAX_OUTPUT_TOKENS,
  DEFAULT_OUTPUT_RESERVATION,
  type EndpointConfig,
  type LimiterConfig,
  type ModelPrice,
  type Plan,
} from '../engine/plans';
import { type Brake, brakeWaitMs, isBraked } from '../runtime/brake';
import type { Directory } from '../runtime/directory';
import { type MetricEvent, putMetrics } from '../runtime/metrics';
import { NUMBER_SETTINGS } from '../runtime/settings';
import { type AuthorizerContext, proxyHeaders } from './headers';
import { SseRelay } from './relay';
import { UpstreamKeyError } from './secret';
import { chatInputBound, embeddingsInputBound, type InputBound } from './input-bound';
import { countBudget, countText, type EncodingName, encodingFor } from './tokenizer';
import {
  callUpstream,
  chunksOf,
  InvocationDeadlineError,
  readBody,
  UpstreamTimeoutError,
  type UpstreamOptions,
  UpstreamUnreachableError,
} from './upstream';
import { type ReportedUsage, settledUsage, type UsageBounds } from './usage';
import { type ChatRequest, parseRequest, type ProxyRequest, RequestError } from './validate';

export interface ProxyDeps {
  readonly config: LimiterConfig;
  readonly limiter: Limiter;
  readonly directory: Directory;
  readonly brake: Brake;
  readonly upstream: UpstreamOptions;
  readonly brakeRetryAfterSeconds?: number;
  /** Settlement attempts when DynamoDB hiccups, with exponential backoff from settleBackoffMs. @default 5, 100 */
  readonly settleAttempts?: number;
  readonly settleBackoffMs?: number;
  readonly clock?: () => number;
  readonly log: (entry: Record<string, unknown>) => void;
  /** Where EMF metric lines go. @default putMetrics (stdout, which CloudWatch reads) */
  readonly metrics?: (event: MetricEvent) => void;
}

export interface ProxyResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string | Readable;
  /** Resolves once the request is settled; the handler keeps the invocation alive until then. */
  readonly settlement?: Promise<void>;
}

function answer(
  status: number,
  headers: Record<string, string>,
  message: string,
  type: ErrorType,
  code: string,
  param: string | null = null,
): ProxyResponse {
  return {
    statusCode: status,
    headers: { ...headers, 'content-type': 'application/json' },
    body: errorBody(message, type, code, param),
  };
}

/** Used amounts in tokens and micro-dollars (price per million tokens x tokens = micro-dollars). */
function amounts(input: number, output: number, price: ModelPrice): Amounts {
  return { tokens: input + output, microUsd: input * price.inputPerMillion + output * price.outputPerMillion };
}

interface Reservation {
  readonly model: string;
  readonly identity: Identity;
  readonly tenant: TenantRecord;
  readonly route: string;
  readonly shard: number;
  readonly reserved: Amounts;
  readonly failedOpen: Verdict['failedOpen'];
  readonly admittedAt: number;
  readonly spending: Verdict['spending'];
}

/** Settles with retries and backoff; settlement is idempotent (keyed by the request id). */
async function settle(
  deps: ProxyDeps,
  requestId: string,
  reservation: Reservation,
  used: Amounts,
  why: string,
): Promise<void> {
  const attempts = deps.settleAttempts ?? 5;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const result = await deps.limiter.settle(requestId, reservation, used);
      if (result === 'settled') {
        (deps.metrics ?? putMetrics)({
          dimensions: {
            Function: 'proxy',
            Tenant: reservation.identity.tenant,
            Endpoint: reservation.route,
            Model: reservation.model,
          },
          metrics: {
            TokensSettled: { value: used.tokens, unit: 'Count' },
            MicroUsdSettled: { value: used.microUsd, unit: 'None' },
            ReservationError: { value: reservation.reserved.tokens - used.tokens, unit: 'Count' },
          },
          properties: { user: reservation.identity.user, requestId, why },
        });
      }
      deps.log({
        requestId,
        outcome: 'settled',
        why,
        result,
        tenant: reservation.identity.tenant,
        user: reservation.identity.user,
        reservedTokens: reservation.reserved.tokens,
        usedTokens: used.tokens,
        usedMicroUsd: used.microUsd,
        attempts: attempt,
      });
      return;
    } catch (err) {
      if (!(err instanceof LimiterError)) throw err;
      deps.log({
        requestId,
        level: attempt === attempts ? 'error' : 'warn',
        outcome: 'settle_retry',
        attempt,
        error: err.name,
        detail: err.message,
      });
      (deps.metrics ?? putMetrics)({
        dimensions: { Function: 'proxy' },
        metrics: { SettleRetries: { value: 1, unit: 'Count' } },
      });
      if (attempt < attempts)
        await new Promise((r) => setTimeout(r, (deps.settleBackoffMs ?? 100) * 2 ** (attempt - 1)));
    }
  }
  deps.log({
    requestId,
    level: 'error',
    outcome: 'settle_failed',
    message: 'settlement gave up: the reservation stands (conservative)',
  });
  (deps.metrics ?? putMetrics)({
    dimensions: { Function: 'proxy' },
    metrics: { SettleFailures: { value: 1, unit: 'Count' } },
  });
}

function inputBound(request: ProxyRequest, encoding: EncodingName, price: ModelPrice): InputBound {
  const budget = countBudget();
  return request.kind === 'chat'
    ? chatInputBound(request.body, encoding, price, budget)
    : embeddingsInputBound(request.body, encoding, budget);
}

/** The request as sent upstream: a stream always asks for the final usage chunk. */
function upstreamBody(request: ProxyRequest): Record<string, unknown> {
  if (request.kind !== 'chat' || !request.stream) return request.body;
  const options = (request.body.stream_options as Record<string, unknown> | undefined) ?? {};
  return { ...request.body, stream_options: { ...options, include_usage: true } };
}

/** Output tokens of a non-streamed answer, when the upstream reported no usage. */
function countAnswer(
  json: { choices?: { message?: { content?: unknown; tool_calls?: unknown } }[] },
  encoding: EncodingName,
): number {
  let total = 0;
  for (const c of json.choices ?? []) {
    if (typeof c.message?.content === 'string') total += countText(c.message.content, encoding);
    if (c.message?.tool_calls) total += countText(JSON.stringify(c.message.tool_calls), encoding);
  }
  return total;
}

/**
 * One request through the proxy: validate (400, nothing debited), count input tokens, reserve
 * input + expected output on every token limit (429 if short, no upstream call), call the
 * upstream, stream its answer through, and settle exactly once what was really used.
 */
export async function handleProxy(
  event: APIGatewayProxyEvent,
  deps: ProxyDeps,
  requestId: string,
  deadlineAt = Number.POSITIVE_INFINITY,
): Promise<ProxyResponse> {
  try {
    return await proxyRequest(event, deps, requestId, deadlineAt);
  } catch (err) {
    // DynamoDB failed or passed its deadline where a layer fails closed: nothing was spent, retry shortly.
    if (!(err instanceof LayerUnavailableError || err instanceof StoreUnavailableError)) throw err;
    deps.log({
      requestId,
      level: 'error',
      outcome: 'unavailable',
      error: err.name,
      ...(err instanceof LayerUnavailableError ? { layer: err.layer } : {}),
    });
    return answer(
      503,
      { 'Retry-After': '1' },
      'The rate limiter could not check this request’s limits; retry shortly.',
      'api_error',
      'limiter_unavailable',
    );
  }
}

/** A step's answer to the client, ending the request there. */
/** Who a log line is about. */
type Who = { readonly requestId: string; readonly route: string; readonly tenant: string; readonly user: string };

const isAnswer = (x: unknown): x is ProxyResponse =>
  typeof x === 'object' && x !== null && 'statusCode' in x && 'body' in x;

/** Step 1, identify: the caller the authorizer admitted (its context), or a 401 if none reached the proxy. */
function identify(
  auth: AuthorizerContext,
  deps: ProxyDeps,
  requestId: string,
  route: string,
  base: Record<string, string>,
): Identity | ProxyResponse {
  if (typeof auth.tenant !== 'string' || typeof auth.user !== 'string') {
    deps.log({ requestId, level: 'error', outcome: 'no_identity', route });
    return answer(401, base, 'No caller identity reached the proxy.', 'authentication_error', 'no_identity');
  }
  return { tenant: auth.tenant, user: auth.user };
}

/** Step 2, the brake, again: the authorizer checked it already; check before spending money (defense in depth). */
async function braked(
  deps: ProxyDeps,
  now: number,
  base: Record<string, string>,
  who: Who,
): Promise<ProxyResponse | undefined> {
  const brake = await deps.brake.state();
  if (!isBraked(brake, now)) return undefined;
  const wait = retryAfterSeconds(
    brakeWaitMs(brake, now, deps.brakeRetryAfterSeconds ?? NUMBER_SETTINGS.brakeRetryAfterSeconds.default),
  );
  deps.log({ ...who, outcome: 'denied', code: 'brake', where: 'proxy' });
  return answer(
    429,
    { ...base, 'Retry-After': String(wait) },
    `Service paused by the operators${brake.reason ? `: ${brake.reason}` : ''}.`,
    'rate_limit_exceeded',
    'brake',
  );
}

/** Step 3, parse: the body as OpenAI defines it, for this endpoint's models, or a 4xx naming the field. */
function parse(
  event: APIGatewayProxyEvent,
  route: string,
  deps: ProxyDeps,
  base: Record<string, string>,
  who: Who,
): { request: ProxyRequest; endpoint: EndpointConfig } | ProxyResponse {
  const endpoint = deps.config.endpoints[route];
  if (!endpoint) return answer(404, base, `No such endpoint: ${route}`, 'invalid_request_error', 'unknown_url');
  try {
    return { request: parseRequest(route, event.body, event.isBase64Encoded, endpoint), endpoint };
  } catch (err) {
    if (!(err instanceof RequestError)) throw err;
    deps.log({ ...who, outcome: 'invalid_request', param: err.param, code: err.code });
    return answer(err.status, base, err.message, 'invalid_request_error', err.code, err.param);
  }
}

/** Step 4, the tenant's plan. A broken configuration is a server-side problem: 500 with a code, never a 429 to retry. */
async function tenantPlan(
  deps: ProxyDeps,
  identity: Identity,
  base: Record<string, string>,
): Promise<{ tenant: TenantRecord; plan: Plan } | ProxyResponse> {
  let tenant: TenantRecord | undefined;
  try {
    tenant = await deps.directory.tenant(identity.tenant);
  } catch (err) {
    if (!(err instanceof InvalidLimitError)) throw err;
    return answer(500, base, MISCONFIGURED.tenant_config_invalid, 'api_error', 'tenant_config_invalid');
  }
  if (!tenant) return answer(500, base, MISCONFIGURED.tenant_unknown, 'api_error', 'tenant_unknown');
  try {
    return { tenant, plan: deps.limiter.planOf(tenant) };
  } catch (err) {
    if (!(err instanceof UnknownPlanError)) throw err;
    return answer(500, base, MISCONFIGURED.plan_unknown, 'api_error', 'plan_unknown');
  }
}

/**
 * Step 5's amounts: what to reserve (the input, counted here, plus the output the plan expects,
 * at most max_tokens, per choice) and the most the upstream can truthfully report.
 */
function reservationOf(
  request: ProxyRequest,
  plan: Plan,
  price: ModelPrice,
  bound: InputBound,
): { reserved: Amounts; bounds: UsageBounds } {
  const input = bound.inputTokens;
  const n = request.kind === 'chat' ? request.n : 1;
  const expectedOutput =
    request.kind === 'chat'
      ? n *
          Math.min(
            request.maxTokens ?? Number.POSITIVE_INFINITY,
            plan.outputReservation ?? DEFAULT_OUTPUT_RESERVATION,
          ) +
        bound.extraOutputTokens
      : 0;
  const output =
    request.kind === 'chat'
      ? n * (request.maxTokens ?? price.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS) + bound.extraOutputTokens
      : 0;
  return { reserved: amounts(input, expectedOutput, price), bounds: { input, output } };
}

/** Step 5's refusal: a request larger than a limit allows at once (400), or a limit reached (429 with Retry-After). */
function refusal(
  verdict: Verdict,
  request: ProxyRequest,
  reserved: Amounts,
  identity: Identity,
  deps: ProxyDeps,
  headers: Record<string, string>,
  who: Who,
): ProxyResponse {
  const code = verdict.code ?? 'rate_limited';
  if (verdict.denied?.decision.exceedsLimit) {
    deps.log({ ...who, outcome: 'too_large', code, reservedTokens: reserved.tokens });
    return answer(
      400,
      headers,
      `This request needs ${Math.ceil(reserved.tokens)} tokens, more than ${code} allows at once (${verdict.denied.decision.limit}). Send less, or lower max_tokens.`,
      'invalid_request_error',
      'request_too_large_for_limit',
      request.kind === 'chat' ? 'max_tokens' : 'input',
    );
  }
  const wait = retryAfterSeconds(verdict.retryAfterMs ?? 1000);
  deps.log({ ...who, outcome: 'denied', code, retryAfter: wait, reservedTokens: reserved.tokens });
  (deps.metrics ?? putMetrics)({
    dimensions: {
      Function: 'proxy',
      Outcome: 'denied',
      Layer: verdict.denied?.layer ?? verdict.throttled ?? 'penalty',
      Code: code,
    },
    metrics: { Decisions: { value: 1, unit: 'Count' } },
    properties: { tenant: identity.tenant, user: identity.user },
  });
  return answer(
    429,
    { ...headers, 'Retry-After': String(wait) },
    `Rate limit exceeded (${code}): this request needs about ${Math.ceil(reserved.tokens)} tokens. Retry after ${wait} s.`,
    'rate_limit_exceeded',
    code,
  );
}

/**
 * One request through the proxy, as named steps: identify, the brake, parse, the tenant's plan,
 * reserve, then forward, relay and settle (the settlement is the promise the handler awaits).
 */
async function proxyRequest(
  event: APIGatewayProxyEvent,
  deps: ProxyDeps,
  requestId: string,
  deadlineAt: number,
): Promise<ProxyResponse> {
  const auth = (event.requestContext?.authorizer ?? {}) as AuthorizerContext;
  const route = event.resource ?? event.path;
  const base = proxyHeaders(auth);
  const now = (deps.clock ?? Date.now)();
  const identity = identify(auth, deps, requestId, route, base);
  if (isAnswer(identity)) return identity;
  const who = { requestId, route, tenant: identity.tenant, user: identity.user };
  const brake = await braked(deps, now, base, who);
  if (brake) return brake;
  const parsed = parse(event, route, deps, base, who);
  if (isAnswer(parsed)) return parsed;
  const { request, endpoint } = parsed;
  const price = endpoint.models[request.model]!;
  const encoding = price.encoding ?? encodingFor(request.model);
  const bound = inputBound(request, encoding, price);
  const input = bound.inputTokens;
  const owner = await tenantPlan(deps, identity, base);
  if (isAnswer(owner)) return owner;
  const { tenant, plan } = owner;
  const { reserved, bounds } = reservationOf(request, plan, price, bound);
  const shard = Number(auth.shard ?? 0);
  const verdict = await deps.limiter.reserve(identity, tenant, route, reserved, Number.isInteger(shard) ? shard : 0);
  const headers = proxyHeaders(auth, verdict.limits);
  if (!verdict.allowed) return refusal(verdict, request, reserved, identity, deps, headers, who);
  const reservation: Reservation = {
    model: request.model,
    identity,
    tenant,
    route,
    shard: verdict.shard,
    reserved,
    failedOpen: verdict.failedOpen,
    admittedAt: verdict.admittedAt ?? now,
    spending: verdict.spending,
  };
  deps.log({ ...who, outcome: 'reserved', inputTokens: input, reservedTokens: reserved.tokens, model: request.model });

  const forwarded = await forward(deps, request, route, reservation, headers, who);
  if (isAnswer(forwarded)) return forwarded;
  const answering: Answering = { deps, reservation, headers, who, bounds, price, encoding, deadlineAt };
  if (request.kind === 'chat' && request.stream)
    return relayStream(answering, request, forwarded.response, forwarded.abort);
  return answerBuffered(answering, request, forwarded.response, forwarded.abort);
}

/** What steps 7 and 8 (pass the answer on, settle) need of the request, whichever way it is answered. */
interface Answering {
  readonly deps: ProxyDeps;
  readonly reservation: Reservation;
  readonly headers: Record<string, string>;
  readonly who: Who;
  readonly bounds: UsageBounds;
  readonly price: ModelPrice;
  readonly encoding: EncodingName;
  readonly deadlineAt: number;
}

/**
 * Step 6, forward: the request to the upstream. Its answer, or the client's answer when the
 * upstream could not be reached, refused, or failed (with the settlement each case calls for).
 */
async function forward(
  deps: ProxyDeps,
  request: ProxyRequest,
  route: string,
  reservation: Reservation,
  headers: Record<string, string>,
  who: Who,
): Promise<{ response: Response; abort: AbortController } | ProxyResponse> {
  const { requestId } = who;
  const { reserved } = reservation;
  const abort = new AbortController();
  let response: Response;
  try {
    response = await callUpstream(deps.upstream, route, upstreamBody(request), abort);
  } catch (err) {
    if (err instanceof UpstreamTimeoutError) {
      // The request reached the provider, which may be generating (and billing) still: the reservation stands.
      const settlement = settle(deps, requestId, reservation, reserved, 'upstream_timeout');
      return {
        ...answer(504, headers, 'The model did not answer in time.', 'api_error', 'upstream_timeout'),
        settlement,
      };
    }
    // Nothing reached the provider (or the call failed before it was sent): refunded in full.
    const settlement = settle(deps, requestId, reservation, { tokens: 0, microUsd: 0 }, 'upstream_unreachable');
    if (err instanceof UpstreamUnreachableError)
      return {
        ...answer(502, headers, 'The model could not be reached.', 'api_error', 'upstream_unreachable'),
        settlement,
      };
    if (err instanceof UpstreamKeyError) {
      deps.log({ ...who, level: 'error', outcome: 'upstream_key_unavailable', error: err.message });
      return {
        ...answer(
          503,
          { ...headers, 'Retry-After': '5' },
          'The model provider’s credentials could not be loaded; retry shortly.',
          'api_error',
          'upstream_key_unavailable',
        ),
        settlement,
      };
    }
    // Anything else is a bug: the refund finishes before the error leaves (Lambda freezes the sandbox after).
    await settlement;
    throw err;
  }

  if (!response.ok) {
    const text = (await response.text().catch(() => '')).slice(0, 65_536);
    const settlement = settle(deps, requestId, reservation, { tokens: 0, microUsd: 0 }, `upstream_${response.status}`);
    deps.log({ ...who, outcome: 'upstream_error', status: response.status });
    if (response.status === 429) {
      const wait = retryAfterSeconds(Number(response.headers.get('retry-after') ?? 1) * 1000);
      return {
        ...answer(
          429,
          { ...headers, 'Retry-After': String(wait) },
          'The model provider is rate limiting this service; retry shortly.',
          'rate_limit_exceeded',
          'upstream_rate_limited',
        ),
        settlement,
      };
    }
    if (response.status >= 500)
      return {
        ...answer(502, headers, `The model provider failed (HTTP ${response.status}).`, 'api_error', 'upstream_error'),
        settlement,
      };
    if (response.status === 401 || response.status === 403) {
      // The provider refused this service's own credentials: the client can do nothing about it, and
      // the provider's message may quote (part of) the operators' key, so none of it is passed on.
      deps.log({ ...who, level: 'error', outcome: 'upstream_auth_failed', status: response.status });
      return {
        ...answer(
          502,
          headers,
          'The model provider refused this service’s credentials; the operators have been told.',
          'api_error',
          'upstream_auth_failed',
        ),
        settlement,
      };
    }
    // A 4xx the validation did not catch (context too long, unknown parameter): pass OpenAI's own error on.
    let upstreamError: { message?: string; code?: string; param?: string } = {};
    try {
      upstreamError = (JSON.parse(text) as { error?: typeof upstreamError }).error ?? {};
    } catch {
      // not JSON: fall back to a generic message
    }
    return {
      ...answer(
        response.status,
        headers,
        upstreamError.message ?? `The model provider rejected the request (HTTP ${response.status}).`,
        'invalid_request_error',
        upstreamError.code ?? 'upstream_rejected',
        upstreamError.param ?? null,
      ),
      settlement,
    };
  }

  return { response, abort };
}

/** Step 7 for an answer that is not streamed: read it whole, pass it on, settle on its usage. */
async function answerBuffered(
  answering: Answering,
  request: ProxyRequest,
  response: Response,
  abort: AbortController,
): Promise<ProxyResponse> {
  const { deps, reservation, headers, who, bounds, price, encoding, deadlineAt } = answering;
  const { requestId } = who;
  const { reserved } = reservation;
  const input = bounds.input;
  let text: string;
  try {
    text = await readBody(response, abort, deps.upstream.bodyTimeoutMs, deadlineAt);
  } catch (err) {
    // The provider answered and may have billed all of it: the reservation stands.
    const timedOut = err instanceof UpstreamTimeoutError;
    const settlement = settle(
      deps,
      requestId,
      reservation,
      reserved,
      timedOut ? 'upstream_body_timeout' : 'upstream_body_failed',
    );
    return {
      ...answer(
        timedOut ? 504 : 502,
        headers,
        timedOut ? 'The model did not finish its answer in time.' : 'The model provider’s answer broke off.',
        'api_error',
        timedOut ? 'upstream_timeout' : 'upstream_error',
      ),
      settlement,
    };
  }
  let reported: ReportedUsage | undefined;
  let countedOutput = 0;
  try {
    const json = JSON.parse(text) as { usage?: ReportedUsage; choices?: [] };
    reported = json.usage;
    if (request.kind === 'chat') countedOutput = countAnswer(json, encoding);
  } catch {
    deps.log({ ...who, level: 'warn', outcome: 'upstream_not_json' });
  }
  const settlement = settle(
    deps,
    requestId,
    reservation,
    usedAmounts(deps, who, reported, { input, output: countedOutput }, bounds, price),
    'complete',
  );
  return {
    statusCode: 200,
    headers: { ...headers, 'content-type': response.headers.get('content-type') ?? 'application/json' },
    body: text,
    settlement,
  };
}

/** What to settle: the upstream's usage where it is believable, else this proxy's own count (logged and counted). */
function usedAmounts(
  deps: ProxyDeps,
  who: Who,
  reported: ReportedUsage | undefined,
  counted: { input: number; output: number },
  bounds: UsageBounds,
  price: ModelPrice,
): Amounts {
  const usage = settledUsage(reported, counted, bounds);
  if (usage.rejected.length) {
    deps.log({
      ...who,
      level: 'warn',
      outcome: 'usage_rejected',
      fields: usage.rejected,
      message: 'the upstream reported usage that cannot be right: settled on the proxy’s own count',
    });
    (deps.metrics ?? putMetrics)({
      dimensions: { Function: 'proxy' },
      metrics: { UsageRejected: { value: 1, unit: 'Count' } },
    });
  }
  return amounts(usage.input, usage.output, price);
}

/** Streams the upstream's events through as they arrive and settles once the stream is over, however it ends. */
function relayStream(
  answering: Answering,
  request: ChatRequest,
  response: Response,
  abort: AbortController,
): ProxyResponse {
  const { deps, reservation, headers, who, bounds, price, encoding, deadlineAt } = answering;
  const { requestId } = who;
  const clientAskedForUsage =
    (request.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const relay = new SseRelay(clientAskedForUsage);
  let resolveSettlement!: (p: Promise<void>) => void;
  const settlement = new Promise<void>((resolve) => {
    resolveSettlement = (p) => resolve(p);
  });
  let finished = false;
  const finish = (why: 'complete' | 'upstream_failed' | 'upstream_timeout' | 'invocation_deadline' | 'client_gone') => {
    if (finished) return;
    finished = true;
    abort.abort();
    const u = relay.usage;
    const counted = { input: bounds.input, output: countText(u.text, encoding) };
    let used: Amounts;
    if (why === 'upstream_timeout' || why === 'invocation_deadline') {
      // The provider went quiet (or was cut off at the deadline) and may still be generating: at least the reservation is paid for.
      const fromStream = usedAmounts(deps, who, u.reported, counted, bounds, price);
      used = {
        tokens: Math.max(fromStream.tokens, reservation.reserved.tokens),
        microUsd: Math.max(fromStream.microUsd, reservation.reserved.microUsd),
      };
    } else if (why === 'upstream_failed' && !u.text && u.reported === undefined) {
      // A failure before any output refunds everything; otherwise what was generated is paid for.
      used = { tokens: 0, microUsd: 0 };
    } else used = usedAmounts(deps, who, u.reported, counted, bounds, price);
    resolveSettlement(settle(deps, requestId, reservation, used, why));
  };
  async function* events(): AsyncGenerator<string> {
    try {
      for await (const chunk of chunksOf(response, abort, deps.upstream.idleTimeoutMs, deadlineAt))
        yield* relay.push(chunk);
      yield* relay.flush();
      finish('complete');
    } catch (err) {
      // A destroyed body means the client went away (the runtime threw its error in here).
      if (finished || body.destroyed) return finish('client_gone');
      if (err instanceof InvocationDeadlineError) {
        // Lambda would end the invocation soon, before settlement: stop here, settle, say why.
        deps.log({
          requestId,
          level: 'warn',
          outcome: 'stream_deadline',
          message: 'the answer ran into the stream timeout: cut off and settled',
        });
        finish('invocation_deadline');
        yield `data: ${errorBody('The answer reached this service’s time limit (streamTimeout) and was cut off; what arrived is all there is.', 'api_error', 'stream_deadline')}\n\n`;
        return;
      }
      deps.log({ requestId, level: 'error', outcome: 'upstream_stream_failed', error: (err as Error).name });
      finish(err instanceof UpstreamTimeoutError ? 'upstream_timeout' : 'upstream_failed');
      yield `data: ${errorBody('The model’s answer broke off midway; what arrived is all there is.', 'api_error', 'upstream_stream_failed')}\n\n`;
    } finally {
      finish('client_gone');
    }
  }
  const body: Readable = Readable.from(events(), { objectMode: false });
  // The client can disconnect while the generator waits on the upstream: settle from what arrived.
  body.once('close', () => finish('client_gone'));
  return {
    statusCode: 200,
    headers: { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
    body,
    settlement,
  };
}
