/**
 * Reads an OpenAI-style SSE stream event by event (lines end in CRLF, LF or CR, as the SSE
 * specification allows): passes every event through as soon as it is complete, and keeps what
 * settlement needs: the final `usage`, the output seen on every channel, and whether every
 * choice finished.
 */
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
  private sawData = false;
  private readonly decoder = new TextDecoder();

  /** @param keepUsageEvent forward the usage-only event (the client asked for it) or drop it (we added it). */
  constructor(private readonly keepUsageEvent: boolean) {}

  /** Feeds bytes; returns the complete events to forward, in order. */
  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const out: string[] = [];
    for (;;) {
      // A CR at the very end may be the first half of a CRLF: wait for the next byte.
      const searchable = this.buffer.endsWith('\r') ? this.buffer.slice(0, -1) : this.buffer;
      const match = EVENT_END.exec(searchable);
      if (!match) break;
      const end = match.index + match[0].length;
      const event = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end);
      if (this.inspect(event)) out.push(event);
    }
    return out;
  }

  /** What is left when the stream ends (an event without its final blank line, or a body that was not SSE). */
  flush(): string[] {
    const rest = this.buffer + this.decoder.decode();
    this.buffer = '';
    if (!rest.trim()) return [];
    if (!this.sawData && this.inspectJson(rest)) return [rest];
    return this.inspect(rest) ? [rest] : [];
  }

  /** Every choice that started also finished, and at least one did. */
  get complete(): boolean {
    const { started, finished } = this.usage;
    return started.size > 0 && [...started].every((i) => finished.has(i));
  }

  /** Records what the event says; false when the event should not be forwarded. */
  private inspect(event: string): boolean {
    const data = event
      .split(LINE_END)
      .filter((line) => line === 'data' || line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (!data) return true;
    this.sawData = true;
    if (data.trim() === '[DONE]') {
      this.usage.done = true;
      return true;
    }
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return true;
    }
    return this.record(json, 'delta');
  }

  /** A whole JSON answer where SSE was expected: read it as one event. */
  private inspectJson(text: string): boolean {
    try {
      this.record(JSON.parse(text), 'message');
      return true;
    } catch {
      return false;
    }
  }

  private record(json: unknown, field: 'delta' | 'message'): boolean {
    if (!isRecord(json)) return true;
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
      if (choices.length === 0 && !this.keepUsageEvent && field === 'delta') return false;
    }
    return true;
  }
}
