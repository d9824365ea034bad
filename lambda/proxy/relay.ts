/**
 * Reads an OpenAI-style SSE stream event by event: passes every event through as soon as it is
 * complete, and keeps what settlement needs (the final `usage`, else the generated text).
 */
import type { ReportedUsage } from './usage';

export interface StreamUsage {
  /** The usage event's `usage`, as sent (settlement judges it). */
  reported?: ReportedUsage;
  /** Generated text seen so far (content deltas, tool-call arguments), to count when no usage comes. */
  text: string;
  done: boolean;
}

export class SseRelay {
  readonly usage: StreamUsage = { text: '', done: false };
  private buffer = '';
  private readonly decoder = new TextDecoder();

  /** @param keepUsageEvent forward the usage-only event (the client asked for it) or drop it (we added it). */
  constructor(private readonly keepUsageEvent: boolean) {}

  /** Feeds bytes; returns the complete events to forward, in order. */
  push(chunk: Uint8Array): string[] {
    this.buffer += this.decoder.decode(chunk, { stream: true });
    const out: string[] = [];
    for (;;) {
      const match = /\r?\n\r?\n/.exec(this.buffer);
      if (!match) break;
      const event = this.buffer.slice(0, match.index + match[0].length);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      if (this.inspect(event)) out.push(event);
    }
    return out;
  }

  /** What is left when the stream ends (an event without its final blank line). */
  flush(): string[] {
    const rest = this.buffer + this.decoder.decode();
    this.buffer = '';
    return rest.trim() && this.inspect(rest) ? [rest] : [];
  }

  /** Records what the event says; false when the event should not be forwarded. */
  private inspect(event: string): boolean {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (!data) return true;
    if (data === '[DONE]') {
      this.usage.done = true;
      return true;
    }
    let json: {
      choices?: { delta?: { content?: unknown; tool_calls?: { function?: { arguments?: unknown } }[] } }[];
      usage?: ReportedUsage | null;
    };
    try {
      json = JSON.parse(data);
    } catch {
      return true;
    }
    if (typeof json !== 'object' || json === null) return true;
    const choices = Array.isArray(json.choices) ? json.choices : [];
    for (const choice of choices) {
      if (typeof choice?.delta?.content === 'string') this.usage.text += choice.delta.content;
      const calls = choice?.delta?.tool_calls;
      if (Array.isArray(calls))
        for (const call of calls)
          if (typeof call?.function?.arguments === 'string') this.usage.text += call.function.arguments;
    }
    if (typeof json.usage === 'object' && json.usage !== null) {
      this.usage.reported = json.usage;
      if (choices.length === 0 && !this.keepUsageEvent) return false;
    }
    return true;
  }
}
