/**
 * A local Amazon Bedrock Runtime: Converse, ConverseStream and CountTokens on Bedrock's wire
 * protocol (REST-JSON; ConverseStream answers application/vnd.amazon.eventstream frames), every
 * request's SigV4 signature checked against the stand-in's own credentials. It bills like a
 * provider, in a ledger of its own (local/bedrock-model.ts), and misbehaves on request: refuses
 * with any of Bedrock's exceptions, stays silent, cuts the connection or sends an exception event
 * mid-stream, leaves out the metadata event, ignores maxTokens.
 * Wire format: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
 * (the events), https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html (the
 * event stream framing: prelude, headers, payload, CRCs), errors as x-amzn-errortype + {"message"}.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { generate, inputTokens, invalidRequest, type ModelBehaviour } from './bedrock-model';
import { checkSignature } from './sigv4-check';

type Json = Record<string, unknown>;

/** Bedrock's exceptions with their HTTP status (API reference, each operation's Errors). */
export const BEDROCK_EXCEPTIONS = {
  ThrottlingException: 429,
  ServiceQuotaExceededException: 400,
  ValidationException: 400,
  AccessDeniedException: 403,
  ResourceNotFoundException: 404,
  ModelNotReadyException: 429,
  ServiceUnavailableException: 503,
  ModelTimeoutException: 408,
  InternalServerException: 500,
  ModelErrorException: 424,
} as const;
export type BedrockException = keyof typeof BEDROCK_EXCEPTIONS;

/** Exceptions ConverseStream can send inside the stream (ConverseStreamOutput's members). */
export type StreamException =
  | 'throttlingException'
  | 'modelStreamErrorException'
  | 'internalServerException'
  | 'serviceUnavailableException'
  | 'validationException';

export interface BedrockBehaviour extends ModelBehaviour {
  /** Refuses every Converse and ConverseStream call with this exception. */
  readonly refuse?: BedrockException;
  /** The refusal's message. @default 'stand-in refuses: <exception>' */
  readonly refuseMessage?: string;
  /** ms before answering at all (before the stream opens, or the JSON answer). @default 0 */
  readonly answerAfterMs?: number;
  /** ms of silence once the stream opened, before its first event. @default 0 */
  readonly silentMs?: number;
  /** ms between events. @default 2 */
  readonly eventMs?: number;
  /** Destroys the connection after this many content events. */
  readonly cutAfterEvents?: number;
  /** Sends this exception event (and ends the stream) after `afterEvents` content events. */
  readonly streamException?: { readonly type: StreamException; readonly afterEvents: number };
  /** Ends the stream without its metadata (usage) event. */
  readonly omitMetadata?: boolean;
  /** Of the input, tokens reported as read from the prompt cache. @default 0 */
  readonly cacheRead?: number;
  /** CountTokens refuses the model, as for models without token counting. */
  readonly noCountTokens?: boolean;
}

export interface BedrockBill {
  readonly operation: 'converse' | 'converse-stream';
  /** As the path named it (decoded). */
  readonly modelId: string;
  /** requestMetadata.limiterRequestId. */
  readonly requestId?: string;
  /** The request as received. */
  readonly request: Json;
  input: number;
  /** Everything generated (reasoning included), billed as output. */
  output: number;
  /** Output shown to the caller (text and tool input sent before any cut). */
  sent: number;
  /** The caller went away before the answer ended. */
  aborted: boolean;
  abortedAt?: number;
}

export interface BedrockStandIn {
  /** http://127.0.0.1:<port>, for the SDK's `endpoint`. */
  readonly endpoint: string;
  readonly region: string;
  /** The only credentials it accepts. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  behaviour: BedrockBehaviour;
  /** One bill per inference call that got past the signature and validation. */
  readonly ledger: BedrockBill[];
  /** Every request: its operation and how the signature check ended ('ok' or the error type). */
  readonly requests: { operation: string; modelId: string; signature: string }[];
  close(): Promise<void>;
}

const ROUTE = /^\/model\/([^/?]+)\/(converse|converse-stream|count-tokens)$/;
const codec = new EventStreamCodec(
  (bytes) => Buffer.from(bytes).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const str = (value: string) => ({ type: 'string' as const, value });

/** One event-stream frame; Bedrock pads each event with a `p` field (its length hides the content's). */
function frame(kind: 'event' | 'exception', type: string, payload: Json): Uint8Array {
  return codec.encode({
    headers: {
      [kind === 'event' ? ':event-type' : ':exception-type']: str(type),
      ':content-type': str('application/json'),
      ':message-type': str(kind),
    },
    body: new TextEncoder().encode(JSON.stringify(kind === 'event' ? { ...payload, p: 'abcdefgh' } : payload)),
  });
}

function refuse(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'x-amzn-requestid': randomUUID(),
    'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
  });
  res.end(JSON.stringify({ message }));
}

export async function startBedrockStandIn(
  options: { behaviour?: BedrockBehaviour; region?: string } = {},
): Promise<BedrockStandIn> {
  const region = options.region ?? 'us-east-1';
  const credentials = {
    accessKeyId: 'AKIASTANDIN00000LOCAL',
    secretAccessKey: 'stand-in/secret/key/0123456789abcdefghij',
  };
  const standIn = {
    region,
    credentials,
    behaviour: options.behaviour ?? {},
    ledger: [] as BedrockBill[],
    requests: [] as BedrockStandIn['requests'],
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const route = ROUTE.exec(req.url ?? '');
    const refused = await checkSignature(
      { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: raw },
      credentials,
      region,
      'bedrock',
    );
    const modelId = decodeURIComponent(route?.[1] ?? '');
    standIn.requests.push({ operation: route?.[2] ?? String(req.url), modelId, signature: refused?.type ?? 'ok' });
    if (refused) return refuse(res, refused.status, refused.type, refused.message);
    if (req.method !== 'POST' || !route) return refuse(res, 404, 'UnknownOperationException', 'Unknown operation');
    const operation = route[2] as 'converse' | 'converse-stream' | 'count-tokens';
    let body: Json;
    try {
      body = JSON.parse(raw.toString('utf8') || '{}') as Json;
    } catch {
      return refuse(res, 400, 'SerializationException', 'The request body could not be parsed.');
    }
    const b = standIn.behaviour;
    if (operation === 'count-tokens') {
      const converse = (body.input as { converse?: Json } | undefined)?.converse;
      if (b.noCountTokens || !converse)
        return refuse(res, 400, 'ValidationException', "The provided model doesn't support counting tokens.");
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ inputTokens: inputTokens(converse) }));
      return;
    }
    await sleep(b.answerAfterMs ?? 0);
    if (b.refuse)
      return refuse(res, BEDROCK_EXCEPTIONS[b.refuse], b.refuse, b.refuseMessage ?? `stand-in refuses: ${b.refuse}`);
    const invalid = invalidRequest(body);
    if (invalid) return refuse(res, 400, 'ValidationException', invalid);
    const requestId = (body.requestMetadata as { limiterRequestId?: string } | undefined)?.limiterRequestId;
    const bill: BedrockBill = {
      operation,
      modelId,
      ...(requestId ? { requestId } : {}),
      request: body,
      input: inputTokens(body),
      output: 0,
      sent: 0,
      aborted: false,
    };
    standIn.ledger.push(bill);
    let gone = false;
    res.on('close', () => {
      if (res.writableFinished) return;
      gone = true;
      bill.aborted = true;
      bill.abortedAt = performance.now();
    });
    if (operation === 'converse') return converse(res, body, bill, b);
    return converseStream(res, body, bill, b, () => gone);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) refuse(res, 500, 'InternalServerException', err.message);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(standIn, {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

const usage = (bill: BedrockBill, b: BedrockBehaviour) => {
  const cacheRead = Math.min(b.cacheRead ?? 0, bill.input);
  return {
    inputTokens: bill.input - cacheRead,
    outputTokens: bill.output,
    totalTokens: bill.input + bill.output,
    ...(cacheRead ? { cacheReadInputTokens: cacheRead, cacheWriteInputTokens: 0 } : {}),
  };
};

function converse(res: ServerResponse, body: Json, bill: BedrockBill, b: BedrockBehaviour): void {
  const { pieces, stopReason } = generate(body, b);
  const content: Json[] = [];
  let reasoning = '';
  let text = '';
  for (const piece of pieces) {
    if (piece.kind === 'reasoning') reasoning += piece.text;
    else if (piece.kind === 'text') text += piece.text;
    else if (piece.kind === 'tool')
      content.push({ toolUse: { toolUseId: piece.toolUseId, name: piece.name, input: '' } });
    else (content.at(-1)!.toolUse as Json).input += piece.input;
    if (piece.kind !== 'tool') bill.output += piece.tokens;
  }
  for (const block of content) {
    const call = block.toolUse as Json;
    call.input = JSON.parse(call.input as string);
  }
  if (text) content.unshift({ text });
  if (reasoning) content.unshift({ reasoningContent: { reasoningText: { text: reasoning, signature: 'standin' } } });
  bill.sent = bill.output;
  res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-requestid': randomUUID() });
  res.end(
    JSON.stringify({
      output: { message: { role: 'assistant', content } },
      stopReason,
      usage: usage(bill, b),
      metrics: { latencyMs: 1 },
    }),
  );
}

async function converseStream(
  res: ServerResponse,
  body: Json,
  bill: BedrockBill,
  b: BedrockBehaviour,
  gone: () => boolean,
): Promise<void> {
  const { pieces, stopReason } = generate(body, b);
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': randomUUID() });
  const send = (type: string, payload: Json) => res.write(frame('event', type, payload));
  send('messageStart', { role: 'assistant' });
  await sleep(b.silentMs ?? 0);
  let block = -1;
  let events = 0;
  for (const piece of pieces) {
    await sleep(b.eventMs ?? 2);
    if (gone()) return;
    if (piece.kind !== 'tool') bill.output += piece.tokens;
    if (b.cutAfterEvents !== undefined && events >= b.cutAfterEvents) {
      res.socket?.destroy();
      return;
    }
    if (b.streamException && events >= b.streamException.afterEvents) {
      res.end(frame('exception', b.streamException.type, { message: `stand-in sends ${b.streamException.type}` }));
      return;
    }
    if (piece.block !== block) {
      if (block >= 0) send('contentBlockStop', { contentBlockIndex: block });
      block = piece.block;
    }
    if (piece.kind === 'tool')
      send('contentBlockStart', {
        contentBlockIndex: block,
        start: { toolUse: { toolUseId: piece.toolUseId, name: piece.name } },
      });
    else {
      const delta =
        piece.kind === 'text'
          ? { text: piece.text }
          : piece.kind === 'reasoning'
            ? { reasoningContent: { text: piece.text } }
            : { toolUse: { input: piece.input } };
      send('contentBlockDelta', { contentBlockIndex: block, delta });
      bill.sent += piece.tokens;
      events++;
    }
  }
  if (block >= 0) send('contentBlockStop', { contentBlockIndex: block });
  send('messageStop', { stopReason });
  if (!b.omitMetadata) send('metadata', { usage: usage(bill, b), metrics: { latencyMs: 1 } });
  res.end();
}
