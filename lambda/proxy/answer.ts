/**
 * Step 7, the answer: passed on to the client (read whole, or streamed event by event) and
 * settled once however it ends. A client that leaves stops the upstream at once, also while the
 * upstream is silent; what cannot be known then is settled at the request's bound.
 */
import { Readable } from 'node:stream';
import { errorBody } from '../engine/contract';
import type { Amounts } from '../engine/limiter';
import type { Rates } from './pricing';
import { SseRelay } from './relay';
import { answer, type ProxyDeps, type ProxyResponse, type Reservation, settle, usedAmounts, type Who } from './settle';
import { countText, type EncodingName, LONGEST_TOKEN_BYTES } from './tokenizer';
import { chunksOf, InvocationDeadlineError, readBody, UpstreamTimeoutError } from './upstream';
import type { UsageBounds } from './usage';
import type { ChatRequest, ProxyRequest } from './validate';

/** What steps 7 and 8 (pass the answer on, settle) need of the request, whichever way it is answered. */
export interface Answering {
  readonly deps: ProxyDeps;
  readonly reservation: Reservation;
  readonly headers: Record<string, string>;
  readonly who: Who;
  readonly bounds: UsageBounds;
  readonly rates: Rates;
  readonly encoding: EncodingName;
  readonly deadlineAt: number;
  /** The model spends reasoning tokens it never shows: a complete answer does not prove its size. */
  readonly hiddenReasoning: boolean;
}

const atLeast = (a: Amounts, b: Amounts): Amounts => ({
  tokens: Math.max(a.tokens, b.tokens),
  outputTokens: Math.max(a.outputTokens ?? 0, b.outputTokens ?? 0),
  microUsd: Math.max(a.microUsd, b.microUsd),
});

/** The answer's usage and output, as the relay read it (an SSE body to a non-streamed request too). */
function settledFrom(answering: Answering, relay: SseRelay, wholeAnswer: boolean): Amounts {
  const { deps, who, bounds, rates, encoding } = answering;
  const u = relay.usage;
  const output = countText(u.text, encoding);
  const seen = {
    output,
    floor: encoding === 'utf8_bytes' ? Math.ceil(output / LONGEST_TOKEN_BYTES) : output,
    provesOutput: wholeAnswer && relay.complete && !answering.hiddenReasoning,
  };
  // Usage is final only once the answer is: a figure from a stream cut before every choice finished may be a running one.
  const reported = wholeAnswer || relay.complete ? u.reported : undefined;
  return usedAmounts(deps, who, reported, seen, bounds, rates);
}

/** Step 7 for an answer that is not streamed: read it whole, pass it on, settle on its usage. */
export async function answerBuffered(
  answering: Answering,
  request: ProxyRequest,
  response: Response,
  abort: AbortController,
): Promise<ProxyResponse> {
  const { deps, reservation, headers, who, deadlineAt } = answering;
  let text: string;
  try {
    text = await readBody(response, abort, deps.upstream.bodyTimeoutMs, deadlineAt);
  } catch (err) {
    // The provider answered and may have billed all of it: the reservation (the bound) stands.
    const timedOut = err instanceof UpstreamTimeoutError;
    const why = timedOut ? 'upstream_body_timeout' : 'upstream_body_failed';
    const settlement = settle(deps, who.requestId, reservation, reservation.reserved, why);
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
  // JSON as asked, or SSE where JSON was asked for: the relay reads either (and any line ends).
  const relay = new SseRelay(true, request.kind === 'chat' ? request.n : 1);
  relay.readWhole(text);
  if (!relay.usage.started.size && relay.usage.reported === undefined && request.kind === 'chat')
    deps.log({ ...who, level: 'warn', outcome: 'upstream_not_json' });
  const used = settledFrom(answering, relay, true);
  return {
    statusCode: 200,
    headers: { ...headers, 'content-type': response.headers.get('content-type') ?? 'application/json' },
    body: text,
    settlement: settle(deps, who.requestId, reservation, used, 'complete'),
  };
}

type Ending = 'complete' | 'upstream_failed' | 'upstream_timeout' | 'invocation_deadline' | 'client_gone';

/** Streams the upstream's events through as they arrive and settles once the stream is over, however it ends. */
export function relayStream(
  answering: Answering,
  request: ChatRequest,
  response: Response,
  abort: AbortController,
): ProxyResponse {
  const { deps, reservation, headers, who, deadlineAt } = answering;
  const { requestId } = who;
  const clientAskedForUsage =
    (request.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const relay = new SseRelay(clientAskedForUsage, request.n);
  let resolveSettlement!: (p: Promise<void>) => void;
  const settlement = new Promise<void>((resolve) => {
    resolveSettlement = (p) => resolve(p);
  });
  let finished = false;
  const finish = (why: Ending) => {
    if (finished) return;
    finished = true;
    abort.abort();
    let used = settledFrom(answering, relay, why === 'complete');
    // Cut off by a timeout: the provider may still be generating, so at least the bound is paid for.
    if (why === 'upstream_timeout' || why === 'invocation_deadline') used = atLeast(used, reservation.reserved);
    resolveSettlement(settle(deps, requestId, reservation, used, why));
  };
  async function* events(): AsyncGenerator<string> {
    try {
      for await (const chunk of chunksOf(response, abort, deps.upstream.idleTimeoutMs, deadlineAt))
        yield* relay.push(chunk);
      yield* relay.flush();
      finish('complete');
    } catch (err) {
      // The client went away (the body was destroyed, which aborted the upstream read).
      if (finished) return;
      if (err instanceof InvocationDeadlineError) {
        // Lambda would end the invocation soon, before settlement: stop here, settle, say why.
        deps.log({
          requestId,
          level: 'warn',
          outcome: 'stream_deadline',
          message: 'the answer ran into the stream timeout: cut off and settled',
        });
        finish('invocation_deadline');
        const message =
          'The answer reached this service’s time limit (streamTimeout) and was cut off; what arrived is all there is.';
        yield `data: ${errorBody(message, 'api_error', 'stream_deadline')}\n\n`;
        return;
      }
      deps.log({ requestId, level: 'error', outcome: 'upstream_stream_failed', error: (err as Error).name });
      finish(err instanceof UpstreamTimeoutError ? 'upstream_timeout' : 'upstream_failed');
      yield `data: ${errorBody('The model’s answer broke off midway; what arrived is all there is.', 'api_error', 'upstream_stream_failed')}\n\n`;
    } finally {
      finish('client_gone');
    }
  }
  const iterator = events();
  // Not Readable.from: its destroy waits for the generator's pending read, which a silent upstream
  // never ends. Here a client that leaves aborts the upstream first, which ends that read at once.
  const body = new Readable({
    read() {
      iterator.next().then(
        ({ done, value }) => this.push(done ? null : value),
        (err: Error) => this.destroy(err),
      );
    },
    destroy(err, callback) {
      finish('client_gone');
      iterator.return(undefined).then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
  return {
    statusCode: 200,
    headers: { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
    body,
    settlement,
  };
}
