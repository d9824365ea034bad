import type { APIGatewayProxyEvent } from 'aws-lambda';
import { MISCONFIGURED, retryAfterSeconds } from '../engine/contract';
import { InvalidLimitError, LayerUnavailableError, StoreUnavailableError, UnknownPlanError } from '../engine/errors';
import type { Amounts, Identity, TenantRecord, Verdict } from '../engine/limiter';
import { ledgerZone } from '../engine/ledger';
import { upstreamModelOf } from './upstream-feedback';
import {
  DEFAULT_MAX_OUTPUT_TOKENS,
  defaultMaxTokens,
  type EndpointConfig,
  hidesReasoning,
  type ModelPrice,
  outputCapField,
  type Plan,
} from '../engine/plans';
import { brakeWaitMs, isBraked } from '../runtime/brake';
import { putMetrics } from '../runtime/metrics';
import { NUMBER_SETTINGS } from '../runtime/settings';
import { type Answering, answerBuffered, relayStream } from './answer';
import { type AuthorizerContext, proxyHeaders } from './headers';
import { chatInputBound, embeddingsInputBound, type InputBound } from './input-bound';
import { boundMicroUsd, NO_AUDIO, type Rates, ratesFor } from './pricing';
import { UpstreamKeyError } from './secret';
import { answer, NOTHING, type ProxyDeps, type ProxyResponse, type Reservation, settle, type Who } from './settle';
import { countBudget, type EncodingName, encodingFor } from './tokenizer';
import { ClientGoneError, UpstreamTimeoutError, UpstreamUnreachableError } from './upstream';
import { checkTranslatable, send, servesEmbeddings } from './upstreams';
import { upstreamRefused } from './upstream-errors';
import type { UsageBounds } from './usage';
import { parseRequest, type ProxyRequest, RequestError } from './validate';
import type { ClientDialect } from './dialect';
import { COUNT_TOKENS_ROUTE, dialectFor } from './dialects';
import { countTokensAnswer, countTokensRequest } from './dialects/messages';
import { countTokensBedrock } from './bedrock/upstream';
import { speak } from './speak';

export type { ProxyDeps, ProxyResponse } from './settle';

function inputBound(request: ProxyRequest, encoding: EncodingName, price: ModelPrice): InputBound {
  const budget = countBudget();
  return request.kind === 'chat'
    ? chatInputBound(request.body, encoding, price, budget)
    : embeddingsInputBound(request.body, encoding, budget);
}

/**
 * The request as sent upstream: a chat request carries one output cap, the one reserved for it,
 * in the field(s) the model's upstream reads (the client's own cap fields are replaced), and a
 * stream always asks for the final usage chunk.
 */
function upstreamBody(request: ProxyRequest, cap: number | undefined, price: ModelPrice): Record<string, unknown> {
  if (request.kind !== 'chat' || cap === undefined) return request.body;
  const { max_tokens: _tokens, max_completion_tokens: _completion, ...rest } = request.body;
  const field = outputCapField(request.model, price);
  const capped = {
    ...rest,
    ...(field === 'both' ? { max_completion_tokens: cap, max_tokens: cap } : { [field]: cap }),
  };
  if (!request.stream) return capped;
  // Usage once, at the end: a running figure (vLLM's continuous_usage_stats) would look final to a cut stream.
  return { ...capped, stream_options: { include_usage: true } };
}

/**
 * One request through the proxy: validate (400, nothing debited), count input tokens, reserve
 * its bound (input + the output cap it sends) on every token limit (429 if short, no upstream
 * call), call the upstream with that cap, stream its answer through, and settle exactly once what was really used.
 */
export async function handleProxy(
  event: APIGatewayProxyEvent,
  deps: ProxyDeps,
  requestId: string,
  deadlineAt = Number.POSITIVE_INFINITY,
  clientGone?: AbortSignal,
): Promise<ProxyResponse> {
  const route = event.resource ?? event.path;
  const dialect = dialectFor(route);
  const said: Said = { dialect };
  const response = await answerCanonically(event, deps, requestId, deadlineAt, said, clientGone);
  // The token count's answer is Anthropic's already; only its errors need translating.
  const counted = route === COUNT_TOKENS_ROUTE && response.statusCode < 400;
  return dialect && !counted ? speak(dialect, response, said.request, said.inputTokens) : response;
}

/** What a dialect's last step needs from the request: the client's own body and the input count. */
interface Said {
  readonly dialect?: ClientDialect;
  request?: Record<string, unknown>;
  inputTokens?: number;
}

async function answerCanonically(
  event: APIGatewayProxyEvent,
  deps: ProxyDeps,
  requestId: string,
  deadlineAt: number,
  said: Said,
  clientGone?: AbortSignal,
): Promise<ProxyResponse> {
  try {
    return await proxyRequest(event, deps, requestId, deadlineAt, said, clientGone);
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

/** A RequestError as the client's 4xx naming the field (logged, nothing spent); anything else is thrown on. */
function badRequest(err: unknown, deps: ProxyDeps, base: Record<string, string>, who: Who): ProxyResponse {
  if (!(err instanceof RequestError)) throw err;
  deps.log({ ...who, outcome: 'invalid_request', param: err.param, code: err.code });
  return answer(err.status, base, err.message, 'invalid_request_error', err.code, err.param);
}

/** Step 3, parse: the body as OpenAI defines it, for this endpoint's models, or a 4xx naming the field. */
function parse(
  event: APIGatewayProxyEvent,
  route: string,
  deps: ProxyDeps,
  base: Record<string, string>,
  who: Who,
  said: Said,
): { request: ProxyRequest; endpoint: EndpointConfig } | ProxyResponse {
  const endpoint = deps.config.endpoints[route];
  if (!endpoint) return answer(404, base, `No such endpoint: ${route}`, 'invalid_request_error', 'unknown_url');
  const { dialect } = said;
  const translate = dialect
    ? (body: Record<string, unknown>) => {
        said.request = body;
        return dialect.toChat(body);
      }
    : undefined;
  try {
    const request = parseRequest(route, event.body, event.isBase64Encoded, endpoint, translate);
    if (request.kind === 'chat') checkTranslatable(deps.upstream, request.body);
    else if (!servesEmbeddings(deps.upstream))
      throw new RequestError(`${route} is not served by this API's model provider.`, null, 'unsupported_route', 404);
    return { request, endpoint };
  } catch (err) {
    return badRequest(err, deps, base, who);
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
 * Step 5's amounts: the request's bound, reserved in full: the input (counted, or bounded from
 * above) plus, per choice, the output cap sent upstream (the client's max_completion_tokens or
 * max_tokens, else the plan's or the model's default, at most the model's maximum), priced at
 * the dearest rates the request's options can use.
 */
function reservationOf(
  request: ProxyRequest,
  plan: Plan,
  price: ModelPrice,
  bound: InputBound,
  rates: Rates,
): { reserved: Amounts; bounds: UsageBounds; cap?: number } {
  const input = bound.inputTokens;
  if (request.kind !== 'chat') {
    const bounds = { input, output: 0, outputMax: 0, outputless: true, audio: NO_AUDIO };
    return { reserved: { tokens: input, microUsd: boundMicroUsd(input, 0, rates, NO_AUDIO) }, bounds };
  }
  const max = price.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const cap = Math.min(request.maxTokens ?? defaultMaxTokens(request.model, price, plan), max);
  const output = request.n * cap + bound.extraOutputTokens;
  const bounds = {
    input,
    output,
    outputMax: request.n * max + bound.extraOutputTokens,
    outputless: false,
    audio: request.audio,
  };
  return {
    reserved: {
      tokens: input + output,
      outputTokens: output,
      microUsd: boundMicroUsd(input, output, rates, request.audio),
    },
    bounds,
    cap,
  };
}

/**
 * Step 4b: the model cooling down at the upstream (its rate limit spent, as a 429 or its headers
 * said): 429 with the time left, before anything is reserved or sent (upstream-feedback.ts).
 */
async function coolingDown(
  deps: ProxyDeps,
  model: string,
  now: number,
  headers: Record<string, string>,
  who: Who,
  identity: Identity,
  plan: Plan,
): Promise<ProxyResponse | undefined> {
  const until = (await deps.cooldown?.until(upstreamModelOf(deps, model))) ?? 0;
  if (until <= now) return undefined;
  const wait = retryAfterSeconds(until - now);
  deps.log({ ...who, outcome: 'denied', code: 'upstream_rate_limited', retryAfter: wait, model, where: 'cooldown' });
  (deps.metrics ?? putMetrics)({
    dimensions: { Function: 'proxy', Outcome: 'denied', Layer: 'upstream', Code: 'upstream_rate_limited' },
    metrics: { Decisions: { value: 1, unit: 'Count' } },
    properties: { tenant: who.tenant, user: who.user, model },
  });
  deps.ledger?.recordDenial({ ...identity, model, timeZone: ledgerZone(plan) }, now, 'upstream_rate_limited');
  return answer(
    429,
    { ...headers, 'Retry-After': String(wait) },
    `The model provider’s rate limit for ${model} is used up; retry after ${wait} s.`,
    'rate_limit_exceeded',
    'upstream_rate_limited',
  );
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
      `This request needs ${Math.ceil(reserved.tokens)} tokens, more than ${code} allows at once ` +
        `(${verdict.denied.decision.limit}). Send less, or lower max_tokens.`,
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
 * POST /v1/messages/count_tokens: the input a Messages request would be reserved for (Bedrock's
 * CountTokens where the upstream is Bedrock and the model supports it: exact; else the proxy's own
 * bound). Nothing is reserved or spent; the authorizer counted the call like a read of /v1/limits.
 */
async function countTokens(
  event: APIGatewayProxyEvent,
  deps: ProxyDeps,
  base: Record<string, string>,
  who: Who,
  said: Said,
): Promise<ProxyResponse> {
  const endpoint = deps.config.endpoints['/v1/messages'];
  if (!endpoint) return answer(404, base, `No such endpoint: ${who.route}`, 'invalid_request_error', 'unknown_url');
  let request: ProxyRequest;
  try {
    request = parseRequest('/v1/messages', event.body, event.isBase64Encoded, endpoint, (body) => {
      said.request = body;
      return countTokensRequest(body);
    });
  } catch (err) {
    return badRequest(err, deps, base, who);
  }
  const price = endpoint.models[request.model]!;
  const exact = deps.upstream.kind === 'bedrock' ? await countTokensBedrock(deps.upstream, request.body) : undefined;
  const tokens = exact ?? inputBound(request, price.encoding ?? encodingFor(request.model), price).inputTokens;
  deps.log({ ...who, outcome: 'counted', inputTokens: tokens, exact: exact !== undefined, model: request.model });
  return {
    statusCode: 200,
    headers: { ...base, 'content-type': 'application/json' },
    body: JSON.stringify(countTokensAnswer(tokens)),
  };
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
  said: Said,
  clientGone?: AbortSignal,
): Promise<ProxyResponse> {
  const auth = (event.requestContext?.authorizer ?? {}) as AuthorizerContext;
  const route = event.resource ?? event.path;
  const base = proxyHeaders(auth);
  const now = (deps.clock ?? Date.now)();
  const identity = identify(auth, deps, requestId, route, base);
  if (isAnswer(identity)) return identity;
  const who = { requestId, route, tenant: identity.tenant, user: identity.user };
  if (route === COUNT_TOKENS_ROUTE) return countTokens(event, deps, base, who, said);
  const brake = await braked(deps, now, base, who);
  if (brake) return brake;
  const parsed = parse(event, route, deps, base, who, said);
  if (isAnswer(parsed)) return parsed;
  const { request, endpoint } = parsed;
  const price = endpoint.models[request.model]!;
  const encoding = price.encoding ?? encodingFor(request.model);
  const bound = inputBound(request, encoding, price);
  const input = bound.inputTokens;
  said.inputTokens = input;
  const owner = await tenantPlan(deps, identity, base);
  if (isAnswer(owner)) return owner;
  const { tenant, plan } = owner;
  const cooling = await coolingDown(deps, request.model, now, base, who, identity, plan);
  if (cooling) return cooling;
  const rates = ratesFor(price, request.serviceTier);
  const { reserved, bounds, cap } = reservationOf(request, plan, price, bound, rates);
  const shard = Number(auth.shard ?? 0);
  const verdict = await deps.limiter.reserve(identity, tenant, route, reserved, Number.isInteger(shard) ? shard : 0);
  const headers = proxyHeaders(auth, verdict.limits);
  if (!verdict.allowed) {
    if (!verdict.denied?.decision.exceedsLimit)
      deps.ledger?.recordDenial(
        { ...identity, model: request.model, timeZone: ledgerZone(plan) },
        now,
        verdict.code ?? 'rate_limited',
      );
    return refusal(verdict, request, reserved, identity, deps, headers, who);
  }
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

  const abort = new AbortController();
  // The client left: the upstream stops at once, whatever it is doing (answering, or thinking).
  const leave = () => abort.abort(new ClientGoneError());
  if (clientGone?.aborted) leave();
  else clientGone?.addEventListener('abort', leave, { once: true });
  const body = upstreamBody(request, cap, price);
  const forwarded = await forward(deps, body, route, reservation, headers, who, abort, deadlineAt);
  if (isAnswer(forwarded)) return forwarded;
  const hiddenReasoning = hidesReasoning(request.model, price);
  const answering: Answering = {
    deps,
    reservation,
    headers,
    who,
    bounds,
    rates,
    encoding,
    deadlineAt,
    hiddenReasoning,
  };
  if (request.kind === 'chat' && request.stream)
    return relayStream(answering, request, forwarded.response, forwarded.abort);
  return answerBuffered(answering, request, forwarded.response, forwarded.abort);
}

/**
 * Step 6, forward: the request to the upstream. Its answer, or the client's answer when the
 * upstream could not be reached, refused, or failed (with the settlement each case calls for).
 */
async function forward(
  deps: ProxyDeps,
  body: Record<string, unknown>,
  route: string,
  reservation: Reservation,
  headers: Record<string, string>,
  who: Who,
  abort: AbortController,
  deadlineAt: number,
): Promise<{ response: Response; abort: AbortController } | ProxyResponse> {
  const { requestId } = who;
  const { reserved } = reservation;
  let response: Response;
  try {
    response = await send(deps.upstream, route, body, abort, requestId);
  } catch (err) {
    if (abort.signal.reason instanceof ClientGoneError) {
      // The request reached the provider, which may have generated (hidden reasoning) before it stopped.
      const settlement = settle(deps, requestId, reservation, reserved, 'client_gone');
      return { ...answer(499, headers, 'The client went away.', 'invalid_request_error', 'client_gone'), settlement };
    }
    if (err instanceof UpstreamTimeoutError) {
      // The request reached the provider, which may be generating (and billing) still: the reservation stands.
      const settlement = settle(deps, requestId, reservation, reserved, 'upstream_timeout');
      return {
        ...answer(504, headers, 'The model did not answer in time.', 'api_error', 'upstream_timeout'),
        settlement,
      };
    }
    // Nothing reached the provider (or the call failed before it was sent): refunded in full.
    const settlement = settle(deps, requestId, reservation, NOTHING, 'upstream_unreachable');
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

  if (!response.ok) return upstreamRefused(deps, response, abort, reservation, headers, who, deadlineAt);
  // Headers that say the provider has nothing left: the model cools down before its 429s come.
  await deps.cooldown?.answered(upstreamModelOf(deps, reservation.model), response.headers);
  return { response, abort };
}
