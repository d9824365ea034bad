import { Writable } from 'node:stream';
import type { Context } from 'aws-lambda';

/**
 * The two globals the Lambda Node.js runtime gives a response-streaming function, as the runtime
 * implements them: streamifyResponse marks the handler, HttpResponseStream.from writes the
 * status/headers prelude as JSON followed by 8 zero bytes, then the body follows as written.
 */
const DELIMITER = Buffer.alloc(8);

export function installLambdaStreamingGlobals(): void {
  // The AWS SDK may already have put an `awslambda` object there (for its invoke store): extend it.
  const g = globalThis as unknown as { awslambda?: Record<string, unknown> };
  g.awslambda ??= {};
  const lambda = g.awslambda;
  lambda.streamifyResponse ??= (handler: unknown) => handler;
  lambda.HttpResponseStream ??= {
    from(stream: Writable, prelude: Record<string, unknown>) {
      stream.write(Buffer.concat([Buffer.from(JSON.stringify(prelude)), DELIMITER]));
      return stream;
    },
  };
}

export interface StreamedResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** Body chunks with the time (ms since the invocation started) each reached the client. */
  readonly chunks: readonly { readonly text: string; readonly atMs: number }[];
}

/** Splits what the function wrote into prelude and body the way API Gateway reads it. */
export function parseStreamed(raw: Buffer, chunkTimes: { data: Buffer; atMs: number }[]): StreamedResponse {
  const at = raw.indexOf(DELIMITER);
  if (at < 0)
    throw new Error(
      'no HttpResponseStream prelude: the status and headers were lost (was anything written before end?)',
    );
  const prelude = JSON.parse(raw.subarray(0, at).toString('utf8')) as {
    statusCode?: number;
    headers?: Record<string, string>;
  };
  const bodyStart = at + DELIMITER.length;
  const chunks: { text: string; atMs: number }[] = [];
  let offset = 0;
  for (const c of chunkTimes) {
    const start = Math.max(0, bodyStart - offset);
    if (start < c.data.length) {
      const text = c.data.subarray(start).toString('utf8');
      if (text) chunks.push({ text, atMs: c.atMs });
    }
    offset += c.data.length;
  }
  return {
    statusCode: prelude.statusCode ?? 200,
    headers: prelude.headers ?? {},
    body: raw.subarray(bodyStart).toString('utf8'),
    chunks,
  };
}

type StreamingHandler = (event: unknown, stream: Writable, context: Context) => Promise<void>;

/**
 * Invokes a streaming handler as the runtime does, collecting what reaches the client. With
 * `disconnectAfterChunks`, the client goes away after that many body chunks, and the failed
 * invocation is returned as `error`; otherwise a failing handler throws.
 */
export async function invokeStreaming(
  handler: unknown,
  event: unknown,
  context: Context,
  options: { disconnectAfterChunks?: number } = {},
): Promise<StreamedResponse & { error?: unknown }> {
  const started = performance.now();
  const received: { data: Buffer; atMs: number }[] = [];
  let bodyChunks = 0;
  let sawPrelude = false;
  const stream = new Writable({
    write(chunk: Buffer, _enc, callback) {
      const data = Buffer.from(chunk);
      received.push({ data, atMs: performance.now() - started });
      if (!sawPrelude) sawPrelude = data.includes(DELIMITER);
      else if (data.length) bodyChunks++;
      if (options.disconnectAfterChunks !== undefined && bodyChunks >= options.disconnectAfterChunks) {
        callback();
        stream.destroy(new Error('client disconnected'));
        return;
      }
      callback();
    },
  });
  let error: unknown;
  try {
    await (handler as StreamingHandler)(event, stream, context);
  } catch (err) {
    // Only a client that went away may fail the invocation (the pipe to it breaks); any other
    // failure is the handler's, and the caller must see it.
    if (options.disconnectAfterChunks === undefined) throw err;
    error = err;
  }
  return { ...parseStreamed(Buffer.concat(received.map((r) => r.data)), received), ...(error ? { error } : {}) };
}
