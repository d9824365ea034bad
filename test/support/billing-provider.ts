/**
 * A stand-in LLM provider that bills like one: it keeps its own ledger of every token it
 * generated for each request (hidden reasoning included, and what it generated after its client
 * left but before it noticed), independent of anything the limiter counts. It misbehaves on
 * request: reads only one of the cap fields, thinks in silence, streams reasoning, answers SSE
 * to a non-streamed request, ends SSE lines with bare CR, or stalls an error body.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { honestInputBill } from './honest-bill';

export interface ProviderBehaviour {
  /** The one cap field it honours. @default 'max_completion_tokens' */
  readonly reads?: 'max_completion_tokens' | 'max_tokens';
  /** Output tokens the model writes when nothing stops it. @default 2000 */
  readonly natural?: number;
  /** Reasoning tokens generated before the answer, within the cap, billed as output. @default 0 */
  readonly reasoning?: number;
  /** Stream the reasoning in this delta field; otherwise it is hidden (silent). */
  readonly reasoningField?: 'reasoning_content' | 'reasoning';
  /** ms the hidden reasoning takes (silence before the first byte of the body). @default 0 */
  readonly thinkMs?: number;
  /** ms between events of 8 tokens each. @default 5 */
  readonly eventMs?: number;
  /** SSE line end. @default '\n' */
  readonly lineEnd?: '\n' | '\r' | '\r\n';
  /** Answers a non-streamed request with an SSE body. */
  readonly sseForJson?: boolean;
  /** Reports usage. @default true */
  readonly usage?: boolean;
  /** Answers with this status and an error body that never ends. */
  readonly stallErrorStatus?: number;
}

export interface Bill {
  readonly requestId: string;
  readonly body: Record<string, unknown>;
  input: number;
  output: number;
  /** Output the client was shown (content deltas). */
  visible: number;
  /** The client went away before the answer ended. */
  aborted: boolean;
  /** When the provider noticed (performance.now()). */
  abortedAt?: number;
}

export interface BillingProvider {
  readonly baseUrl: string;
  behaviour: ProviderBehaviour;
  readonly bills: Bill[];
  stop(): Promise<void>;
}

const EVENT_TOKENS = 8;
const PIECE = ' hi'.repeat(EVENT_TOKENS); // 8 tokens in o200k_base and cl100k_base
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startBillingProvider(behaviour: ProviderBehaviour = {}): Promise<BillingProvider> {
  const provider = { behaviour, bills: [] as Bill[] } as { -readonly [K in keyof BillingProvider]: BillingProvider[K] };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    const b = provider.behaviour;
    const bill: Bill = {
      requestId: String(req.headers['x-client-request-id'] ?? ''),
      body,
      input: honestInputBill(body),
      output: 0,
      visible: 0,
      aborted: false,
    };
    provider.bills.push(bill);
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true;
        bill.aborted = true;
        bill.abortedAt = performance.now();
      }
    });
    if (b.stallErrorStatus) {
      res.writeHead(b.stallErrorStatus, { 'content-type': 'application/json' });
      res.write('{"error":{"message":"');
      return; // never ends
    }
    const capField = b.reads ?? 'max_completion_tokens';
    const cap = typeof body[capField] === 'number' ? (body[capField] as number) : Number.POSITIVE_INFINITY;
    const reasoning = Math.min(b.reasoning ?? 0, cap);
    const answer = Math.min(b.natural ?? 2_000, cap - reasoning);
    const streamed = body.stream === true || b.sseForJson === true;
    const end = b.lineEnd ?? '\n';
    const send = (data: unknown) =>
      res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}${end}${end}`);
    const delta = (d: Record<string, unknown>, finish: string | null = null) => ({
      object: 'chat.completion.chunk',
      model: body.model,
      choices: [{ index: 0, delta: d, finish_reason: finish }],
    });
    if (streamed) res.writeHead(200, { 'content-type': 'text/event-stream' });
    // Reasoning first: hidden (silence, billed as it is generated) or streamed in its own field.
    const steps = Math.max(1, Math.ceil(reasoning / EVENT_TOKENS));
    for (let done = 0; done < reasoning && !gone; ) {
      const n = Math.min(EVENT_TOKENS, reasoning - done);
      await sleep(b.reasoningField ? (b.eventMs ?? 5) : (b.thinkMs ?? 0) / steps);
      if (gone) break;
      done += n;
      bill.output += n;
      if (b.reasoningField && streamed) send(delta({ [b.reasoningField]: ' hi'.repeat(n) }));
    }
    let text = '';
    for (let done = 0; done < answer && !gone; ) {
      const n = Math.min(EVENT_TOKENS, answer - done);
      await sleep(b.eventMs ?? 5);
      if (gone) break;
      done += n;
      bill.output += n;
      const piece = PIECE.slice(0, n * 3);
      text += piece;
      if (streamed) {
        send(delta({ content: piece }));
        bill.visible += n;
      }
    }
    if (gone) return;
    const finish = answer < (b.natural ?? 2_000) ? 'length' : 'stop';
    const usage = {
      prompt_tokens: bill.input,
      completion_tokens: bill.output,
      total_tokens: bill.input + bill.output,
      completion_tokens_details: { reasoning_tokens: reasoning },
    };
    const reportUsage = b.usage !== false;
    if (streamed) {
      send(delta({}, finish));
      if (reportUsage) send({ object: 'chat.completion.chunk', choices: [], usage });
      send('[DONE]');
      res.end();
      return;
    }
    bill.visible = bill.output - reasoning;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        object: 'chat.completion',
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: finish }],
        ...(reportUsage ? { usage } : {}),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(provider, {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}
