/** An OpenAI-compatible upstream (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM): base URL + key. */
export interface UpstreamOptions {
  /** e.g. https://api.openai.com/v1 ; the route's /v1 prefix is replaced by it. */
  readonly baseUrl: string;
  readonly apiKey: () => Promise<string>;
  /** Time allowed until the response headers arrive. @default 60000 */
  readonly firstByteTimeoutMs?: number;
  /** Time allowed between two chunks of a stream. @default 60000 */
  readonly idleTimeoutMs?: number;
  /** Time allowed for the whole body of a non-streamed answer, once its headers arrived. @default 60000 */
  readonly bodyTimeoutMs?: number;
}

export class UpstreamTimeoutError extends Error {
  constructor(what: string) {
    super(`upstream timed out ${what}`);
    this.name = 'UpstreamTimeoutError';
  }
}

/** The invocation's own deadline came first: the function must stop and settle before Lambda ends it. */
export class InvocationDeadlineError extends UpstreamTimeoutError {
  constructor() {
    super('at the invocation deadline');
    this.name = 'InvocationDeadlineError';
  }
}

/** The client went away: the upstream call is aborted with this reason. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client went away');
    this.name = 'ClientGoneError';
  }
}

export class UpstreamUnreachableError extends Error {
  constructor(options?: ErrorOptions) {
    super('upstream could not be reached', options);
    this.name = 'UpstreamUnreachableError';
  }
}

export function upstreamUrl(baseUrl: string, route: string): string {
  return baseUrl.replace(/\/+$/, '') + route.replace(/^\/v1(?=\/)/, '');
}

/** POSTs the request; resolves once headers arrive. `abort` cancels it at any point (client gone). */
export async function callUpstream(
  options: UpstreamOptions,
  route: string,
  body: unknown,
  abort: AbortController,
  requestId?: string,
): Promise<Response> {
  const key = await options.apiKey();
  // An empty key is an upstream without keys: no Authorization header at all.
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  return postJson(upstreamUrl(options.baseUrl, route), headers, body, abort, options.firstByteTimeoutMs, requestId);
}

/**
 * POSTs JSON with the provider's own headers; resolves once the answer's headers arrive, fails
 * with UpstreamTimeoutError when they do not within `firstByteTimeoutMs` and with
 * UpstreamUnreachableError when the provider cannot be reached.
 */
export async function postJson(
  url: string,
  headers: Readonly<Record<string, string>>,
  body: unknown,
  abort: AbortController,
  firstByteTimeoutMs = 60_000,
  requestId?: string,
): Promise<Response> {
  const timer = setTimeout(() => abort.abort(new UpstreamTimeoutError('before answering')), firstByteTimeoutMs);
  try {
    return await fetch(url, {
      method: 'POST',
      headers: {
        ...headers,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        // The limiter's request id, so a provider's records can be matched with its settlement.
        ...(requestId ? { 'x-client-request-id': requestId } : {}),
      },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
  } catch (err) {
    if (abort.signal.reason instanceof UpstreamTimeoutError) throw abort.signal.reason;
    throw new UpstreamUnreachableError({ cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** The upstream body's chunks, failing with UpstreamTimeoutError when it goes quiet too long. */
export async function* chunksOf(
  response: Response,
  abort: AbortController,
  idleTimeoutMs = 60_000,
  deadlineAt = Number.POSITIVE_INFINITY,
): AsyncGenerator<Uint8Array> {
  const reader = response.body!.getReader();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const untilDeadline = deadlineAt - Date.now();
      const idle = new Promise<never>((_, reject) => {
        if (untilDeadline < idleTimeoutMs)
          timer = setTimeout(() => reject(new InvocationDeadlineError()), Math.max(0, untilDeadline));
        else timer = setTimeout(() => reject(new UpstreamTimeoutError('between chunks')), idleTimeoutMs);
      });
      try {
        const { done, value } = await Promise.race([reader.read(), idle]);
        if (done) return;
        yield value;
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    abort.abort();
    try {
      reader.releaseLock();
    } catch {
      // a read was still pending when the stream was abandoned: the abort above ends it
    }
  }
}

/** A non-streamed answer's body, failing with UpstreamTimeoutError when it takes longer than `timeoutMs`. */
export async function readBody(
  response: Response,
  abort: AbortController,
  timeoutMs = 60_000,
  deadlineAt = Number.POSITIVE_INFINITY,
): Promise<string> {
  const untilDeadline = deadlineAt - Date.now();
  const timer =
    untilDeadline < timeoutMs
      ? setTimeout(() => abort.abort(new InvocationDeadlineError()), Math.max(0, untilDeadline))
      : setTimeout(() => abort.abort(new UpstreamTimeoutError('before finishing its answer')), timeoutMs);
  try {
    return await response.text();
  } catch (err) {
    if (abort.signal.reason instanceof UpstreamTimeoutError) throw abort.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The longest wait passed on from an upstream: a day (a provider's daily limit), never years. */
const MAX_UPSTREAM_WAIT_MS = 86_400_000;

/**
 * An upstream's wait in ms: `retry-after-ms` (OpenAI, Azure), else Retry-After as delta seconds
 * or an HTTP date (RFC 9110, 10.2.3); 1 s when absent or unreadable; at most a day.
 */
export function retryAfterMs(headers: Pick<Headers, 'get'>, now = Date.now()): number {
  const ms = headers.get('retry-after-ms')?.trim() ?? '';
  const v = headers.get('retry-after')?.trim() ?? '';
  let wait = 1000;
  if (/^\d+(\.\d+)?$/.test(ms)) wait = Number(ms);
  else if (/^\d+(\.\d+)?$/.test(v)) wait = Number(v) * 1000;
  else if (Number.isFinite(Date.parse(v))) wait = Math.max(0, Date.parse(v) - now);
  return Math.min(wait, MAX_UPSTREAM_WAIT_MS);
}
