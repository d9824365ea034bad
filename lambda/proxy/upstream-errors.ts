/**
 * An upstream that answered with an error status: its body read within a deadline (a body that
 * never ends cannot hold the request), the reservation settled for what was sent, and the
 * client told in OpenAI's shape. An upstream's free text may quote what it was sent (headers,
 * keys), so a message reaches the client only when it looks like plain prose; status, type, code
 * and param are kept, and the original goes to the log with anything secret-like masked.
 */
import { retryAfterSeconds } from '../engine/contract';
import { answer, NOTHING, type ProxyDeps, type ProxyResponse, type Reservation, settle, type Who } from './settle';
import { readBody, retryAfterMs, UpstreamTimeoutError } from './upstream';
import { upstreamModelOf } from './upstream-feedback';

/** Runs of characters that look like a key, a token or a signature. */
const OPAQUE = /[A-Za-z0-9_\-+/=.]{24,}/g;
/** Words that only appear in a message that quotes credentials or headers. */
const CREDENTIAL_WORDS = /bearer|authorization|api[-_ ]?key|x-api-key|\bsk-|secret|password|cookie|signature/i;
const IDENTIFIER = /^[A-Za-z0-9_.[\]-]{1,128}$/;
const MAX_MESSAGE = 500;

export interface UpstreamErrorShape {
  /** The message a client may see (the upstream's when safe, else a generic line). */
  readonly message: string;
  readonly code: string | null;
  readonly param: string | null;
  /** The upstream's message for the log, masked. */
  readonly logged?: string;
}

/** Plain prose or a plain identifier: nothing that looks like a key, a header or a token. */
const looksSafe = (text: string): boolean => {
  const safe =
    !CREDENTIAL_WORDS.test(text) &&
    !OPAQUE.test(text) &&
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    !/[\u0000-\u001f]/.test(text);
  OPAQUE.lastIndex = 0;
  return safe;
};

const identifier = (v: unknown): string | null =>
  typeof v === 'string' && IDENTIFIER.test(v) && looksSafe(v) ? v : null;

/**
 * Statuses by which an upstream refuses a request before generating anything: refunded. Any other
 * (5xx, 408, a gateway's 52x or 499) may come from a gateway that gave up on a model still
 * generating, and is settled at the bound.
 */
const REFUSED_UNBILLED = new Set([400, 401, 403, 404, 405, 409, 413, 415, 422, 429]);

/** What of an upstream error body may be shown to the client. */
export function safeUpstreamError(
  text: string,
  status: number,
  generic = `The model provider rejected the request (HTTP ${status}).`,
): UpstreamErrorShape {
  let error: Record<string, unknown> = {};
  try {
    const json = JSON.parse(text) as { error?: unknown };
    if (typeof json?.error === 'object' && json.error !== null) error = json.error as Record<string, unknown>;
  } catch {
    // not JSON: nothing of it is shown
  }
  const original = typeof error.message === 'string' ? error.message : undefined;
  const safe = original !== undefined && original.length <= MAX_MESSAGE && looksSafe(original);
  return {
    message: safe ? original : generic,
    code: identifier(error.code),
    param: identifier(error.param),
    ...(original !== undefined ? { logged: original.slice(0, MAX_MESSAGE).replace(OPAQUE, '[masked]') } : {}),
  };
}

/** The client's answer to an upstream error status, with its settlement. */
export async function upstreamRefused(
  deps: ProxyDeps,
  response: Response,
  abort: AbortController,
  reservation: Reservation,
  headers: Record<string, string>,
  who: Who,
  deadlineAt: number,
): Promise<ProxyResponse> {
  const { requestId } = who;
  let text: string;
  try {
    text = (await readBody(response, abort, deps.upstream.bodyTimeoutMs, deadlineAt)).slice(0, 65_536);
  } catch (err) {
    // The provider's error never finished: what it did with the request is unknown, so the bound stands.
    const timedOut = err instanceof UpstreamTimeoutError;
    deps.log({ ...who, level: 'warn', outcome: 'upstream_error_body_failed', status: response.status, timedOut });
    return {
      ...answer(
        timedOut ? 504 : 502,
        headers,
        `The model provider failed (HTTP ${response.status}) and its answer did not finish.`,
        'api_error',
        timedOut ? 'upstream_timeout' : 'upstream_error',
      ),
      settlement: settle(deps, requestId, reservation, reservation.reserved, `upstream_${response.status}_unfinished`),
    };
  }
  // A refusal bills nothing; a failure (a gateway's timeout, a 5xx) may follow a generation: the bound.
  const refused = REFUSED_UNBILLED.has(response.status);
  const settlement = settle(
    deps,
    requestId,
    reservation,
    refused ? NOTHING : reservation.reserved,
    `upstream_${response.status}`,
  );
  const shape = safeUpstreamError(text, response.status);
  deps.log({ ...who, outcome: 'upstream_error', status: response.status, upstreamMessage: shape.logged });
  const status = response.status;
  if (status === 429) {
    // The provider's limit is spent: the model cools down for every container (upstream-feedback.ts).
    await deps.cooldown?.refused(upstreamModelOf(deps, reservation.model), response.headers, text);
    const wait = retryAfterSeconds(retryAfterMs(response.headers));
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
  if (status >= 500)
    return {
      ...answer(502, headers, `The model provider failed (HTTP ${status}).`, 'api_error', 'upstream_error'),
      settlement,
    };
  if (status === 401 || status === 403) {
    // The provider refused this service's own credentials: the client can do nothing about it.
    deps.log({ ...who, level: 'error', outcome: 'upstream_auth_failed', status });
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
  // A 4xx the validation did not catch (context too long, unknown parameter): passed on where safe.
  return {
    ...answer(status, headers, shape.message, 'invalid_request_error', shape.code ?? 'upstream_rejected', shape.param),
    settlement,
  };
}
