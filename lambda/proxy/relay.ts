/**
 * Reads an OpenAI-style SSE stream event by event: passes every event through as soon as it is
 * complete, and keeps what settlement needs (the final `usage`, else the generated text).
 */
export interface StreamUsage {
  promptTokens?: number;
  completionTokens?: number;
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
    let json: { choices?: { delta?: { content?: unknown; tool_calls?: { function?: { arguments?: unknown } }[] } }[]; usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } };
    try {
      json = JSON.parse(data);
    } catch {
      return true;
    }
    for (const choice of json.choices ?? []) {
      if (typeof choice.delta?.content === 'string') this.usage.text += choice.delta.content;
      for (const call of choice.delta?.tool_calls ?? []) if (typeof call.function?.arguments === 'string') this.usage.text += call.function.arguments;
    }
    if (json.usage && typeof json.usage.completion_tokens === 'number') {
      this.usage.promptTokens = Number(json.usage.prompt_tokens);
      this.usage.completionTokens = json.usage.completion_tokens;
      if ((json.choices ?? []).length === 0 && !this.keepUsageEvent) return false;
    }
    return true;
  }
}
