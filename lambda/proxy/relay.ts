/**
 * Reads an OpenAI-style SSE stream event by event (lines end in CRLF, LF or CR, as the SSE
 * specification allows): passes every event through as soon as it is complete, and keeps what
 * settlement needs: the final `usage`, the output seen on every channel, and whether every
 * choice finished.
 */
import { safeUpstreamError } from './upstream-errors';
import type { ReportedUsage } from './usage';

export interface StreamUsage {
  /** The usage event's `usage`, as sent (settlement judges it). */
  reported?: ReportedUsage;
  /** Generated text seen so far on every output channel, to count when no usage comes. */
  text: string;
  /** `[DONE]` arrived. */
  done: boolean;
  /** Choice indexes that sent a finish_reason. */
  finished: Set<number>;
  /** Choice indexes that sent anything. */
  started: Set<number>;
}

/** An event larger than this is not an LLM's: the stream is failed (and settled at its bound). */
export const MAX_EVENT_BYTES = 4 * 1024 * 1024;

export class EventTooLargeError extends Error {
  constructor() {
    super(`an upstream event passed ${MAX_EVENT_BYTES} bytes without ending`);
    this.name = 'EventTooLargeError';
  }
}

/** An event ends at a blank line: two line ends in a row, each CRLF, LF or CR. */
const EVENT_END = /(\r\n|\n|\r(?!\n))(\r\n|\n|\r(?!\n))/;
const LINE_END = /\r\n|\n|\r/;

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/**
 * The text of every output channel of a message or a delta: content, refusal, reasoning
 * (`reasoning_content` as vLLM and DeepSeek send it, `reasoning` as Ollama does), tool calls,
 * the legacy function_call, and an audio answer's transcript.
 */
export function outputText(message: unknown): string {
  if (!isRecord(message)) return '';
  let text = str(message.content) + str(message.refusal) + str(message.reasoning_content) + str(message.reasoning);
  if (Array.isArray(message.content))
    for (const part of message.content) if (isRecord(part)) text += str(part.text) + str(part.refusal);
  const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
  for (const call of [...calls, message.function_call]) {
    if (!isRecord(call)) continue;
    const fn = isRecord(call.function) ? call.function : call;
    text += str(fn.name) + str(fn.arguments);
  }
  if (isRecord(message.audio)) text += str(message.audio.transcript);
  return text;
}

export class SseRelay {
  readonly usage: StreamUsage = { text: '', done: false, finished: new Set(), started: new Set() };
  private buffer = '';
  /** Where the search for the next event's end resumes (the buffer before it holds none). */
  private scanned = 0;
  private sawData = false;
  private readonly decoder = new TextDecoder();

  /**
   * @param keepUsageEvent forward the usage-only event (the client asked for it) or drop it (we added it).
   * @param choices the choices the answer must hold to be whole (`n`).
   */
  constructor(
    private readonly keepUsageEvent: boolean,
    private readonly choices = 1,
  ) {}

  /** Feeds bytes; returns the complete events to forward, in order. */
  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const out: string[] = [];
    for (;;) {
      // A CR at the very end may be the first half of a CRLF: wait for the next byte.
      const searchable = this.buffer.endsWith('\r') ? this.buffer.slice(0, -1) : this.buffer;
      const from = Math.max(0, this.scanned - 3);
      const match = EVENT_END.exec(searchable.slice(from));
      if (!match) {
        this.scanned = searchable.length;
        if (this.buffer.length > MAX_EVENT_BYTES) throw new EventTooLargeError();
        break;
      }
      const end = from + match.index + match[0].length;
      const event = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end);
      this.scanned = 0;
      const forwarded = this.inspect(event);
      if (forwarded !== null) out.push(forwarded);
    }
    return out;
  }

  /** What is left when the stream ends (an event without its final blank line, or a body that was not SSE). */
  flush(): string[] {
    const rest = this.buffer + this.decoder.decode();
    this.buffer = '';
    this.scanned = 0;
    if (!rest.trim()) return [];
    const forwarded = this.inspect(rest);
    return forwarded === null ? [] : [forwarded];
  }

  /** A whole body read at once: JSON as asked for, or SSE where JSON was asked for. */
  readWhole(text: string): void {
    try {
      this.record(JSON.parse(text), 'message', text);
      return;
    } catch {
      // not JSON: read as SSE
    }
    this.push(new TextEncoder().encode(text));
    this.flush();
  }

  /** Every choice that started also finished, and all `n` did. */
  get complete(): boolean {
    const { started, finished } = this.usage;
    return started.size >= this.choices && [...started].every((i) => finished.has(i));
  }

  /** Records what the event says; returns what to forward (null: nothing). */
  private inspect(event: string): string | null {
    const data = event
      .split(LINE_END)
      .filter((line) => line === 'data' || line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    // No data field before any: a whole JSON answer where SSE was expected, read as one event.
    if (!data) return this.sawData ? event : this.inspectJson(event);
    this.sawData = true;
    if (data.trim() === '[DONE]') {
      this.usage.done = true;
      return event;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return event;
    }
    return this.record(json, 'delta', event);
  }

  private inspectJson(text: string): string {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return text;
    }
    return this.record(json, 'message', text) ?? text;
  }

  private record(json: unknown, field: 'delta' | 'message', event: string): string | null {
    if (!isRecord(json)) return event;
    // An error inside the stream (vLLM, LiteLLM) may quote what the upstream was sent: passed on only where safe.
    if (isRecord(json.error)) {
      const safe = safeUpstreamError(
        JSON.stringify({ error: json.error }),
        200,
        'The model provider reported an error.',
      );
      const error = { message: safe.message, type: 'api_error', code: safe.code, param: safe.param };
      return field === 'delta' ? `data: ${JSON.stringify({ error })}\n\n` : JSON.stringify({ error });
    }
    const choices = Array.isArray(json.choices) ? json.choices : [];
    for (const [k, choice] of choices.entries()) {
      if (!isRecord(choice)) continue;
      const index = Number.isInteger(choice.index) ? (choice.index as number) : k;
      this.usage.started.add(index);
      this.usage.text += outputText(choice[field]);
      if (typeof choice.finish_reason === 'string' && choice.finish_reason) this.usage.finished.add(index);
    }
    if (isRecord(json.usage)) {
      this.usage.reported = json.usage;
      if (choices.length === 0 && !this.keepUsageEvent && field === 'delta') return null;
    }
    return event;
  }
}
