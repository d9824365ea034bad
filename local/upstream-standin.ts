import { createServer, type Server } from 'node:http';
import { listenLocal } from './listen';

/**
 * An OpenAI-compatible upstream stand-in: /chat/completions (stream and not) and /embeddings.
 * Each test sets `behaviour`; every request is recorded (body and the Authorization it carried).
 */
export interface Behaviour {
  /** Words streamed (or returned) one per chunk. */
  words?: string[];
  /** Reported usage (any shape: a broken upstream's too); absent: no usage in the answer at all. */
  usage?: StandInUsage | undefined;
  /** ms between chunks (and before the first one). */
  delayMs?: number;
  /** Fail after this many content chunks by cutting the connection. */
  failAfterChunks?: number;
  /** Answer with this status and an OpenAI error body instead. */
  status?: number;
  retryAfter?: string;
  retryAfterMs?: string;
  /** The error body's message, code and param. @default 'stand-in says <status>', null, null */
  errorMessage?: string;
  errorCode?: string;
  errorParam?: string;
  /** Headers added to a successful answer (a provider's x-ratelimit-* headers). */
  headers?: Record<string, string>;
  /**
   * The stand-in's own rate limit, as a provider keeps one: `requests` per fixed window of
   * `windowMs`; past it, 429 with Retry-After until the window's end, and every answer carries
   * x-ratelimit-remaining-requests / x-ratelimit-reset-requests.
   */
  limit?: { requests: number; windowMs: number };
  /** Computes the answer from the request instead of `words` / `usage`. */
  reply?: (body: Record<string, unknown>) => { words: string[]; usage?: StandInUsage };
}

export interface Bill {
  readonly model: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
  readonly reasoningTokens: number;
  readonly complete: boolean;
}

export interface StandInUsage {
  readonly prompt_tokens?: unknown;
  readonly completion_tokens?: unknown;
}

export interface UpstreamStandIn {
  readonly baseUrl: string;
  behaviour: Behaviour;
  readonly requests: {
    path: string;
    body: Record<string, unknown>;
    authorization: string | undefined;
    /** The limiter's request id (x-client-request-id). */
    requestId: string | undefined;
  }[];
  /** Times the upstream noticed its client (the proxy) going away before the answer ended. */
  aborted: number;
  /** 429s the stand-in answered for its own `limit`. */
  limited: number;
  /**
   * What the stand-in would bill, by the limiter's request id: the usage it reported with an
   * answer it finished, or, for an answer cut short (it cut the connection, or the proxy went
   * away), the prompt and the chunks it had sent (`complete: false`: it reported nothing).
   * Nothing for an error answer.
   */
  readonly bills: Map<string, Bill>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startUpstreamStandIn(behaviour: Behaviour = {}): Promise<UpstreamStandIn> {
  const standIn = { behaviour, requests: [], aborted: 0, limited: 0, bills: new Map() } as unknown as {
    -readonly [K in keyof UpstreamStandIn]: UpstreamStandIn[K];
  };
  const window = { end: 0, used: 0 };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    const requestId = req.headers['x-client-request-id'];
    standIn.requests.push({
      path: req.url ?? '',
      body,
      authorization: req.headers.authorization,
      requestId: typeof requestId === 'string' ? requestId : undefined,
    });
    let b = standIn.behaviour;
    if (b.limit) {
      const now = Date.now();
      if (now >= window.end) Object.assign(window, { end: now + b.limit.windowMs, used: 0 });
      const left = b.limit.requests - window.used;
      const reset = `${Math.max(1, window.end - now)}ms`;
      if (left <= 0) {
        standIn.limited++;
        b = {
          ...b,
          status: 429,
          retryAfterMs: String(window.end - now),
          retryAfter: String(Math.ceil((window.end - now) / 1000)),
        };
      } else {
        window.used++;
        const limitHeaders = {
          'x-ratelimit-remaining-requests': String(left - 1),
          'x-ratelimit-reset-requests': reset,
        };
        b = { ...b, headers: { ...b.headers, ...limitHeaders } };
      }
    }
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true;
        standIn.aborted++;
      }
    });
    if (b.status && b.status >= 400) {
      res.writeHead(b.status, {
        'content-type': 'application/json',
        ...(b.retryAfter ? { 'retry-after': b.retryAfter } : {}),
        ...(b.retryAfterMs ? { 'retry-after-ms': b.retryAfterMs } : {}),
      });
      res.end(
        JSON.stringify({
          error: {
            message: b.errorMessage ?? `stand-in says ${b.status}`,
            type: 'invalid_request_error',
            param: b.errorParam ?? null,
            code: b.errorCode ?? null,
          },
        }),
      );
      return;
    }
    const computed = b.reply?.(body);
    const words = computed?.words ?? b.words ?? ['Hello', ' there', '!'];
    const answerUsage = computed ? computed.usage : b.usage;
    const model = String(body.model ?? 'gpt-4o-mini');
    if (req.url?.endsWith('/embeddings')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      // The official SDK asks for base64 (little-endian float32) by default and decodes it.
      const vector = [0.1, 0.2, 0.3, 0.4];
      const embedding =
        body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
      // One vector per input: a batch is an array of strings or of token arrays; one string or token array is one input.
      const input = body.input;
      const inputs = Array.isArray(input) && input.length > 0 && typeof input[0] !== 'number' ? input.length : 1;
      if (typeof requestId === 'string')
        standIn.bills.set(requestId, {
          model,
          promptTokens: typeof answerUsage?.prompt_tokens === 'number' ? answerUsage.prompt_tokens : 0,
          completionTokens: 0,
          cachedTokens: 0,
          reasoningTokens: 0,
          complete: true,
        });
      res.end(
        JSON.stringify({
          object: 'list',
          data: Array.from({ length: inputs }, (_, index) => ({ object: 'embedding', index, embedding })),
          model,
          ...(answerUsage
            ? { usage: { prompt_tokens: answerUsage.prompt_tokens, total_tokens: answerUsage.prompt_tokens } }
            : {}),
        }),
      );
      return;
    }
    const { prompt_tokens: p, completion_tokens: c } = answerUsage ?? {};
    const num = (v: unknown) => (typeof v === 'number' ? v : 0);
    const detail = (v: unknown, field: string) => num((v as Record<string, unknown> | undefined)?.[field]);
    const bill = (complete: boolean, completion = num(c)) => {
      if (typeof requestId !== 'string') return;
      const u = (answerUsage ?? {}) as Record<string, unknown>;
      standIn.bills.set(requestId, {
        model,
        promptTokens: num(p),
        completionTokens: completion,
        cachedTokens: detail(u.prompt_tokens_details, 'cached_tokens'),
        reasoningTokens: complete ? detail(u.completion_tokens_details, 'reasoning_tokens') : 0,
        complete,
      });
    };
    const usage = answerUsage
      ? { ...answerUsage, ...(typeof p === 'number' && typeof c === 'number' ? { total_tokens: p + c } : {}) }
      : undefined;
    if (body.stream !== true) {
      await sleep(b.delayMs ?? 0);
      res.writeHead(200, { 'content-type': 'application/json', ...b.headers });
      bill(true);
      res.end(
        JSON.stringify({
          id: 'chatcmpl-standin',
          object: 'chat.completion',
          created: 1,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: words.join('') }, finish_reason: 'stop' }],
          ...(usage ? { usage } : {}),
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...b.headers });
    const send = (data: unknown) => res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      id: 'chatcmpl-standin',
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    send(chunk({ role: 'assistant', content: '' }));
    for (const [i, word] of words.entries()) {
      await sleep(b.delayMs ?? 0);
      if (gone) return bill(false, i);
      if (b.failAfterChunks !== undefined && i >= b.failAfterChunks) {
        bill(false, i);
        res.socket?.destroy();
        return;
      }
      send(chunk({ content: word }));
    }
    send(chunk({}, 'stop'));
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage;
    if (includeUsage && usage)
      send({ id: 'chatcmpl-standin', object: 'chat.completion.chunk', created: 1, model, choices: [], usage });
    bill(includeUsage === true && usage !== undefined, includeUsage && usage ? num(c) : words.length);
    send('[DONE]');
    res.end();
  });
  const { port, stop } = await listenLocal(server);
  return Object.assign(standIn, { baseUrl: `http://127.0.0.1:${port}/v1`, stop }) as UpstreamStandIn;
}
