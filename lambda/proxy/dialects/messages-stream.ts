/**
 * The canonical chunk stream as Anthropic's streaming events, in the order Anthropic sends them
 * (https://docs.claude.com/en/docs/build-with-claude/streaming#event-types): message_start, then
 * each content block as content_block_start, its deltas and content_block_stop, then
 * message_delta (stop_reason and the usage, cumulative) and message_stop.
 *
 * message_start announces the proxy's own input count; the real figure comes in message_delta,
 * which waits for the canonical usage chunk (it follows the finish_reason). A stream that breaks
 * gets neither message_delta nor message_stop from here: the proxy sends an error event, and a
 * client never mistakes what it got for a whole answer.
 */
import type { ChatChunk, StreamTranslator } from '../dialect';
import { isRecord, type Json, messagesUsageOf, str, stopReasonOf } from './messages-shapes';

export const sseEvent = (type: string, data: Json): string => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;

interface OpenBlock {
  readonly index: number;
  /** The canonical tool call's index, for a tool_use block. */
  readonly call?: number;
}

export class MessagesStream implements StreamTranslator {
  private started = false;
  private block: OpenBlock | undefined;
  private blocks = 0;
  private stopReason: string | undefined;
  private stopSequence: string | null = null;
  private delivered = false;

  constructor(
    private readonly model: string,
    private readonly inputTokens: number,
    private readonly errorEvent: (error: Json) => string,
    private id = `msg_${crypto.randomUUID().replaceAll('-', '')}`,
  ) {}

  chunk(chunk: ChatChunk): string[] {
    if (isRecord(chunk.error)) return [this.errorEvent(chunk.error)];
    const out = this.start(chunk);
    const choice = (Array.isArray(chunk.choices) ? chunk.choices : []).find(
      (c): c is Json => isRecord(c) && (c.index ?? 0) === 0,
    );
    if (choice) {
      const delta = isRecord(choice.delta) ? choice.delta : {};
      const text = str(delta.content) + str(delta.refusal);
      if (text) out.push(...this.open({ index: this.blocks }, 'text'), this.delta({ type: 'text_delta', text }));
      for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        if (!isRecord(call)) continue;
        out.push(...this.toolCall(call));
      }
      if (typeof choice.finish_reason === 'string' && choice.finish_reason) {
        out.push(...this.close());
        this.stopReason = stopReasonOf(choice.finish_reason, choice.stop_reason);
        this.stopSequence = typeof choice.stop_reason === 'string' ? choice.stop_reason : null;
      }
    }
    if (isRecord(chunk.usage) && !this.delivered) out.push(...this.close(), this.messageDelta(chunk.usage));
    return out;
  }

  end(complete: boolean): string[] {
    if (!complete) return [];
    const out = this.start({});
    out.push(...this.close());
    // No usage came: output_tokens is unknown to this translator (the proxy settled the request at its bound).
    if (!this.delivered) out.push(this.messageDelta({ prompt_tokens: this.inputTokens }));
    out.push(sseEvent('message_stop', { type: 'message_stop' }));
    return out;
  }

  private start(chunk: ChatChunk): string[] {
    if (this.started) return [];
    this.started = true;
    if (typeof chunk.id === 'string' && chunk.id) this.id = `msg_${chunk.id.replace(/^chatcmpl-/, '')}`;
    return [
      sseEvent('message_start', {
        type: 'message_start',
        message: {
          id: this.id,
          type: 'message',
          role: 'assistant',
          model: this.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: this.inputTokens, output_tokens: 0 },
        },
      }),
    ];
  }

  /** Opens a block of `type` unless the open one is it; closes the open one first. */
  private open(block: OpenBlock, type: 'text' | 'tool_use', fields: Json = {}): string[] {
    const same = this.block && (type === 'text' ? this.block.call === undefined : this.block.call === block.call);
    if (same) return [];
    const out = this.close();
    this.block = block;
    this.blocks++;
    const contentBlock = type === 'text' ? { type, text: '' } : { type, ...fields, input: {} };
    out.push(
      sseEvent('content_block_start', { type: 'content_block_start', index: block.index, content_block: contentBlock }),
    );
    return out;
  }

  private toolCall(call: Json): string[] {
    const index = Number.isInteger(call.index) ? (call.index as number) : 0;
    const fn = isRecord(call.function) ? call.function : {};
    const out = this.open({ index: this.blocks, call: index }, 'tool_use', {
      id: typeof call.id === 'string' ? call.id : `toolu_${this.id.slice(4)}_${index}`,
      name: str(fn.name),
    });
    const partial = str(fn.arguments);
    if (partial) out.push(this.delta({ type: 'input_json_delta', partial_json: partial }));
    return out;
  }

  private delta(delta: Json): string {
    return sseEvent('content_block_delta', { type: 'content_block_delta', index: this.block!.index, delta });
  }

  private close(): string[] {
    if (!this.block) return [];
    const { index } = this.block;
    this.block = undefined;
    return [sseEvent('content_block_stop', { type: 'content_block_stop', index })];
  }

  private messageDelta(usage: Json): string {
    this.delivered = true;
    return sseEvent('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: this.stopReason ?? 'end_turn', stop_sequence: this.stopSequence },
      usage: messagesUsageOf(usage),
    });
  }
}
