import { createServer, type Server } from 'node:http';
import { listenLocal } from './listen';

/**
 * An Anthropic-format provider stand-in: POST /v1/messages (streamed and not) and
 * /v1/messages/count_tokens. It bills like a provider, in its own ledger: input by its own count
 * (one token per 4 bytes of the system, messages and tools), output one token per word it
 * generated (a stream cut short bills what was generated until then), and it honours max_tokens
 * (400 without it, as Anthropic answers). Each test sets `behaviour`, misbehaviour included.
 */
export interface AnthropicBehaviour {
  /** Words of the answer, one output token each. @default ['Hello', ' there', '!'] */
  words?: string[];
  /** A tool_use block after the words; its input costs one token per 4 bytes of its JSON. */
  toolUse?: { name: string; input: Record<string, unknown> };
  /** Input tokens reported as cache reads (out of the count). */
  cacheReadTokens?: number;
  /** ms before each delta. */
  delayMs?: number;
  /** Answer with this status and Anthropic's error body instead. */
  status?: number;
  retryAfter?: string;
  /** Cut the connection after this many text deltas. */
  cutAfterDeltas?: number;
  /** Send an `error` event (overloaded_error) after this many text deltas, then end. */
  errorAfterDeltas?: number;
  /** End the response cleanly after this many text deltas, without message_stop (a gateway giving up). */
  endAfterDeltas?: number;
  /** Headers added to a successful answer (Anthropic's anthropic-ratelimit-* headers). */
  headers?: Record<string, string>;
}

export interface LedgerEntry {
  readonly id: string;
  readonly model: string;
  readonly inputTokens: number;
  outputTokens: number;
}

export interface AnthropicStandIn {
  readonly baseUrl: string;
  behaviour: AnthropicBehaviour;
  readonly requests: { path: string; body: Record<string, unknown>; apiKey?: string; version?: string }[];
  /** What the stand-in billed, request by request. */
  readonly ledger: LedgerEntry[];
  stop(): Promise<void>;
}

const ERROR_TYPES: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tokensOf = (value: unknown): number => Math.ceil(Buffer.byteLength(JSON.stringify(value ?? ''), 'utf8') / 4);
const header = (v: string | string[] | undefined) => (typeof v === 'string' ? v : undefined);

export async function startAnthropicStandIn(behaviour: AnthropicBehaviour = {}): Promise<AnthropicStandIn> {
  const standIn = { behaviour, requests: [], ledger: [] } as unknown as {
    -readonly [K in keyof AnthropicStandIn]: AnthropicStandIn[K];
  };
  let served = 0;
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    standIn.requests.push({
      path: req.url ?? '',
      body,
      apiKey: header(req.headers['x-api-key']),
      version: header(req.headers['anthropic-version']),
    });
    const b = standIn.behaviour;
    const fail = (status: number, message: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_standin', ...headers });
      res.end(JSON.stringify({ type: 'error', error: { type: ERROR_TYPES[status] ?? 'api_error', message } }));
    };
    const input = tokensOf([body.system, body.messages, body.tools]);
    if (req.url?.endsWith('/count_tokens')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: input }));
      return;
    }
    if (b.status)
      return fail(b.status, `stand-in says ${b.status}`, b.retryAfter ? { 'retry-after': b.retryAfter } : {});
    if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1)
      return fail(400, 'max_tokens: Field required');

    // What the model generates within max_tokens: words, then the tool call if it fits.
    const cap = body.max_tokens as number;
    const stops = Array.isArray(body.stop_sequences) ? body.stop_sequences : [];
    const all = b.words ?? ['Hello', ' there', '!'];
    const stopAt = all.findIndex((w) => stops.includes(w.trim()));
    const words = all.slice(0, Math.min(cap, stopAt === -1 ? all.length : stopAt));
    const toolTokens = b.toolUse ? tokensOf(b.toolUse.input) : 0;
    const tool = b.toolUse && words.length + toolTokens <= cap ? b.toolUse : undefined;
    const stopReason =
      stopAt !== -1 && stopAt < cap
        ? 'stop_sequence'
        : words.length < all.length || (b.toolUse && !tool)
          ? 'max_tokens'
          : tool
            ? 'tool_use'
            : 'end_turn';
    const output = words.length + (tool ? toolTokens : 0);
    const cacheRead = Math.min(b.cacheReadTokens ?? 0, input);
    const id = `msg_standin${++served}`;
    const model = String(body.model);
    const entry: LedgerEntry = { id, model, inputTokens: input, outputTokens: 0 };
    standIn.ledger.push(entry);
    const usage = (out: number) => ({
      input_tokens: input - cacheRead,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: cacheRead,
      output_tokens: out,
    });
    const stopSequence = stopReason === 'stop_sequence' ? all[stopAt]!.trim() : null;
    const toolBlock = tool
      ? { type: 'tool_use', id: `toolu_standin${served}`, name: tool.name, input: tool.input }
      : undefined;

    if (body.stream !== true) {
      await sleep(b.delayMs ?? 0);
      entry.outputTokens = output;
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_standin', ...b.headers });
      res.end(
        JSON.stringify({
          id,
          type: 'message',
          role: 'assistant',
          model,
          content: [
            ...(words.length ? [{ type: 'text', text: words.join('') }] : []),
            ...(toolBlock ? [toolBlock] : []),
          ],
          stop_reason: stopReason,
          stop_sequence: stopSequence,
          usage: usage(output),
        }),
      );
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'request-id': 'req_standin',
      ...b.headers,
    });
    const send = (type: string, data: Record<string, unknown>) =>
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    send('message_start', {
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: usage(1),
      },
    });
    send('ping', {});
    let index = 0;
    if (words.length) {
      send('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const [i, word] of words.entries()) {
        await sleep(b.delayMs ?? 0);
        if (b.cutAfterDeltas !== undefined && i >= b.cutAfterDeltas) {
          res.socket?.destroy();
          return;
        }
        if (b.endAfterDeltas !== undefined && i >= b.endAfterDeltas) {
          res.end();
          return;
        }
        if (b.errorAfterDeltas !== undefined && i >= b.errorAfterDeltas) {
          send('error', { error: { type: 'overloaded_error', message: 'Overloaded' } });
          res.end();
          return;
        }
        entry.outputTokens++;
        send('content_block_delta', { index, delta: { type: 'text_delta', text: word } });
      }
      send('content_block_stop', { index });
      index++;
    }
    if (toolBlock) {
      send('content_block_start', { index, content_block: { ...toolBlock, input: {} } });
      const json = JSON.stringify(toolBlock.input);
      const half = Math.ceil(json.length / 2);
      for (const part of [json.slice(0, half), json.slice(half)])
        send('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: part } });
      send('content_block_stop', { index });
      entry.outputTokens += toolTokens;
    }
    send('message_delta', {
      delta: { stop_reason: stopReason, stop_sequence: stopSequence },
      usage: { output_tokens: output },
    });
    send('message_stop', {});
    res.end();
  });
  const { port, stop } = await listenLocal(server);
  return Object.assign(standIn, { baseUrl: `http://127.0.0.1:${port}/v1`, stop }) as AnthropicStandIn;
}
