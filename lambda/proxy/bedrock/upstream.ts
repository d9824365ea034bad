/**
 * Amazon Bedrock as an upstream: the canonical chat body is sent as a Converse (or ConverseStream)
 * request, signed by the SDK with the function's role, and Bedrock's answer comes back as the
 * Response an OpenAI-compatible upstream would give, so the relay, settlement and every hard-cap
 * rule read it unchanged. `callBedrock` keeps `callUpstream`'s contract (upstream.ts).
 *
 * The client makes one attempt per call: a retried generation may be billed twice (a 5xx can
 * follow one), and the client, told Retry-After, retries through its own limits. It speaks
 * HTTP/1.1 with keep-alive (the SDK's default handler for this client opens an HTTP/2 session per
 * request; Converse and ConverseStream are served over HTTP/1.1 too, boto3 only speaks it), so a
 * warm container reuses its connection.
 */
import { randomUUID } from 'node:crypto';
import {
  BedrockRuntimeClient,
  type BedrockRuntimeClientConfig,
  ConverseCommand,
  type ConverseStreamOutput,
  ConverseStreamCommand,
  CountTokensCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { type AnswerIds, BedrockStreamError, ConverseStreamTranslator, toCompletion } from './completion';
import { type ConverseRequest, converseInput, toConverse } from './converse';
import { bedrockRefusal, untranslatable } from './errors';
import { UpstreamTimeoutError, UpstreamUnreachableError } from '../upstream';
import { RequestError } from '../validate';

export interface BedrockUpstreamOptions {
  /** The region the function calls Bedrock in, e.g. us-east-1. */
  readonly region: string;
  /** Another endpoint than the region's (a local stand-in, a VPC endpoint's DNS name). @default - the region's */
  readonly endpoint?: string;
  /** @default - the SDK's default chain (in Lambda, the function's role) */
  readonly credentials?: BedrockRuntimeClientConfig['credentials'];
  /** The client's model name -> the Bedrock model id, inference profile id or ARN to call. */
  readonly modelId: (model: string) => string;
  /** Time allowed until the stream opens (streamed) or the whole answer arrives (not streamed). @default 60000 */
  readonly firstByteTimeoutMs?: number;
  /** Time allowed between two chunks of a stream (read by the proxy, as for any upstream). @default 60000 */
  readonly idleTimeoutMs?: number;
  /** Time allowed for a non-streamed body once it arrived (read by the proxy, as for any upstream). @default 60000 */
  readonly bodyTimeoutMs?: number;
}

/** Time to open a connection: past it, Bedrock is unreachable (nothing was sent, refunded). */
const CONNECTION_TIMEOUT_MS = 3_000;
/** CountTokens is a pre-count: when it is slow, the proxy counts without it. */
const COUNT_TIMEOUT_MS = 2_000;
/** What Bedrock accepts as requestMetadata values (invocation logs can be filtered by it). */
const METADATA_VALUE = /^[A-Za-z0-9\s:_@$#=/+,.-]{1,256}$/;

/** One client per credentials, region and endpoint, for the container's life. */
const clients = new WeakMap<object, Map<string, BedrockRuntimeClient>>();
const DEFAULT_CHAIN = {};

function clientFor(options: BedrockUpstreamOptions): BedrockRuntimeClient {
  const owner = (options.credentials as object | undefined) ?? DEFAULT_CHAIN;
  const byPlace = clients.get(owner) ?? new Map<string, BedrockRuntimeClient>();
  clients.set(owner, byPlace);
  const key = `${options.region} ${options.endpoint ?? ''}`;
  let client = byPlace.get(key);
  if (!client) {
    const fn = process.env.LIMITER_FUNCTION;
    client = new BedrockRuntimeClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(fn ? { customUserAgent: `llm-rate-limiter/${fn}` } : {}),
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler({ connectionTimeout: CONNECTION_TIMEOUT_MS }),
    });
    byPlace.set(key, client);
  }
  return client;
}

/**
 * Sends the canonical chat body to Bedrock; resolves once Bedrock answered (the stream opened, or
 * the whole answer arrived), with a 200 SSE or JSON body in the canonical form, or Bedrock's
 * refusal as an error status. A body the adapter cannot translate is answered 400 without a call.
 * Throws UpstreamTimeoutError after `firstByteTimeoutMs` and UpstreamUnreachableError when the call
 * failed before Bedrock answered. `abort` cancels the call at any point, mid-stream too.
 */
export async function callBedrock(
  options: BedrockUpstreamOptions,
  body: Record<string, unknown>,
  abort: AbortController,
  requestId?: string,
): Promise<Response> {
  let input: ConverseRequest;
  try {
    input = toConverse(body);
  } catch (err) {
    if (err instanceof RequestError) return untranslatable(err);
    throw err;
  }
  const request = {
    modelId: options.modelId(String(body.model)),
    ...input,
    // The limiter's request id, so Bedrock's invocation logs can be matched with its settlement.
    ...(requestId && METADATA_VALUE.test(requestId) ? { requestMetadata: { limiterRequestId: requestId } } : {}),
  };
  const ids: AnswerIds = {
    id: `chatcmpl-${requestId ?? randomUUID()}`,
    model: String(body.model),
    created: Math.floor(Date.now() / 1000),
  };
  const client = clientFor(options);
  const timer = setTimeout(
    () => abort.abort(new UpstreamTimeoutError('before answering')),
    options.firstByteTimeoutMs ?? 60_000,
  );
  try {
    if (body.stream === true) {
      const answer = await client.send(new ConverseStreamCommand(request), { abortSignal: abort.signal });
      if (!answer.stream) throw new BedrockStreamError('never opened');
      return streamed(answer.stream, ids, abort);
    }
    const answer = await client.send(new ConverseCommand(request), { abortSignal: abort.signal });
    return Response.json(toCompletion(answer, ids));
  } catch (err) {
    if (abort.signal.reason instanceof UpstreamTimeoutError) throw abort.signal.reason;
    const refused = bedrockRefusal(err);
    if (refused) return refused;
    throw new UpstreamUnreachableError({ cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The canonical SSE body over Bedrock's event stream, read as the proxy reads (pull). It errors,
 * rather than ends, when Bedrock's stream breaks: an exception event, a dropped connection, or an
 * end before messageStop and metadata; the proxy then settles at the bound.
 */
function streamed(events: AsyncIterable<ConverseStreamOutput>, ids: AnswerIds, abort: AbortController): Response {
  const translator = new ConverseStreamTranslator(ids);
  const iterator = events[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const { done, value } = await iterator.next();
          const out = done ? translator.end() : translator.event(value);
          if (out.length) controller.enqueue(encoder.encode(out.join('')));
          if (done) controller.close();
          if (done || out.length) return;
        }
      } catch (err) {
        controller.error(err instanceof BedrockStreamError ? err : new BedrockStreamError('broke off', { cause: err }));
      }
    },
    cancel() {
      abort.abort();
    },
  });
  return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

/**
 * The input tokens Bedrock would bill for this body, by Bedrock's CountTokens for the model (a
 * Converse-shaped input; the body needs no output cap yet); undefined when the model does not
 * support it, or on any error.
 * CountTokens takes foundation-model ids, not inference profiles.
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CountTokens.html
 */
/** Geography prefixes of Bedrock's system inference profiles (us.anthropic...), as lib/bedrock-models.ts knows them. */
const PROFILE_PREFIX = /^(us|us-gov|eu|apac|jp|au|global)\.(?=[^.]+\.)/;

/**
 * The model CountTokens is asked about: a profile's foundation model (it counts for foundation
 * models only; the proxy role may call CountTokens on exactly those, in its own region).
 */
export function countingModelId(id: string): string {
  const profile = /^arn:[^:]+:bedrock:[^:]*:\d{12}:inference-profile\/(.+)$/.exec(id);
  return (profile ? profile[1]! : id).replace(PROFILE_PREFIX, '');
}

export async function countTokensBedrock(
  options: BedrockUpstreamOptions,
  body: Record<string, unknown>,
): Promise<number | undefined> {
  try {
    const counted = await clientFor(options).send(
      new CountTokensCommand({
        modelId: countingModelId(options.modelId(String(body.model))),
        input: { converse: converseInput(body) },
      }),
      { abortSignal: AbortSignal.timeout(COUNT_TIMEOUT_MS) },
    );
    return typeof counted.inputTokens === 'number' ? counted.inputTokens : undefined;
  } catch {
    return undefined;
  }
}
