/**
 * The canonical chat stream -> the Responses API's streamed events
 * (https://platform.openai.com/docs/api-reference/responses-streaming), in OpenAI's order, each
 * numbered by `sequence_number` from 0:
 *
 *   response.created, response.in_progress,
 *   per output item: response.output_item.added,
 *     a message's or a reasoning item's parts: response.content_part.added,
 *       response.output_text.delta... / response.refusal.delta... / response.reasoning_text.delta...,
 *       the matching .done, response.content_part.done,
 *     a function call's: response.function_call_arguments.delta..., .done,
 *   response.output_item.done,
 *   then response.completed, or response.incomplete (cut off by max_output_tokens or a filter).
 *
 * One item is open at a time (a chat stream sends reasoning, then text, then its tool calls, one
 * after another): the next channel or call closes it. The final event carries usage, which the
 * canonical stream sends after finish_reason, so it waits for the usage chunk or the end. An
 * `{error}` chunk becomes an `error` event and a `response.failed`.
 */
import type { ChatChunk, ProxyError, StreamTranslator } from '../dialect';
import {
  closingStatus,
  finishedResponse,
  finishStatus,
  type Item,
  itemJson,
  newId,
  newItem,
  type Part,
  type PartType,
  partJson,
  responseShell,
} from './responses-object';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** One complete SSE event in the Responses stream's form. */
export const sseEvent = (event: Json): string => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

/** The `error` event's fields from the proxy's error. */
export const errorFields = (error: ProxyError): Json => ({
  type: 'error',
  code: error.code,
  message: error.message,
  param: error.param ?? null,
});

/** Each part type's delta and done events, and the field its done event names the whole text by. */
const PART_EVENTS: Readonly<Record<PartType, { delta: string; done: string; field: string }>> = {
  output_text: { delta: 'response.output_text.delta', done: 'response.output_text.done', field: 'text' },
  refusal: { delta: 'response.refusal.delta', done: 'response.refusal.done', field: 'refusal' },
  reasoning_text: { delta: 'response.reasoning_text.delta', done: 'response.reasoning_text.done', field: 'text' },
};
/** Logprobs are not translated, but the text events carry the (empty) list the SDKs expect. */
const withLogprobs = (type: PartType): Json => (type === 'output_text' ? { logprobs: [] } : {});

export class ResponsesStream implements StreamTranslator {
  private readonly shell: Json;
  private readonly items: Item[] = [];
  /** Tool calls by their chat index. */
  private readonly calls = new Map<number, Item>();
  private open?: Item;
  private openPart?: Part;
  private sequence = 0;
  private started = false;
  private over = false;
  private finishReason?: string;
  private usage?: Json;
  private serviceTier?: string;
  private out: string[] = [];

  constructor(request: Json) {
    this.shell = responseShell(request, newId('resp'), Math.floor(Date.now() / 1000));
  }

  chunk(chunk: ChatChunk): string[] {
    if (this.over) return [];
    this.begin();
    if (isRecord(chunk.error)) {
      this.fail(chunk.error);
      return this.flush();
    }
    if (typeof chunk.service_tier === 'string') this.serviceTier = chunk.service_tier;
    const choice = Array.isArray(chunk.choices) ? chunk.choices.find(isRecord) : undefined;
    if (choice) this.choice(choice);
    if (isRecord(chunk.usage)) this.usage = chunk.usage;
    if (this.finishReason !== undefined && this.usage) this.finish();
    return this.flush();
  }

  end(complete: boolean): string[] {
    // Broken off: the proxy sends an error event; nothing here may look like a whole answer.
    if (this.over || !complete) return [];
    this.begin();
    this.finish();
    return this.flush();
  }

  private emit(type: string, fields: Json): void {
    this.out.push(sseEvent({ type, sequence_number: this.sequence++, ...fields }));
  }

  private flush(): string[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  private begin(): void {
    if (this.started) return;
    this.started = true;
    this.emit('response.created', { response: this.shell });
    this.emit('response.in_progress', { response: this.shell });
  }

  private choice(choice: Json): void {
    const delta = isRecord(choice.delta) ? choice.delta : {};
    this.text('reasoning_text', str(delta.reasoning_content) || str(delta.reasoning));
    this.text('output_text', str(delta.content));
    this.text('refusal', str(delta.refusal));
    if (Array.isArray(delta.tool_calls))
      delta.tool_calls.forEach((call, k) => {
        if (isRecord(call)) this.toolCall(call, Number.isInteger(call.index) ? (call.index as number) : k);
      });
    if (typeof choice.finish_reason === 'string' && choice.finish_reason) {
      this.finishReason = choice.finish_reason;
      this.closeItem(closingStatus(choice.finish_reason));
    }
  }

  /** Text on one channel: reasoning goes in a reasoning item, text and refusal in a message item. */
  private text(type: PartType, delta: string): void {
    if (!delta) return;
    const itemType = type === 'reasoning_text' ? 'reasoning' : 'message';
    if (this.open?.type !== itemType) this.openItem(newItem(itemType));
    const item = this.open!;
    if (this.openPart?.type !== type) {
      this.closePart();
      const part: Part = { type, text: '' };
      item.parts.push(part);
      this.openPart = part;
      this.emit('response.content_part.added', {
        ...this.at(item),
        content_index: item.parts.length - 1,
        part: partJson(part),
      });
    }
    this.openPart!.text += delta;
    this.emit(PART_EVENTS[type].delta, {
      ...this.at(item),
      content_index: item.parts.length - 1,
      delta,
      ...withLogprobs(type),
    });
  }

  private toolCall(call: Json, index: number): void {
    const fn = isRecord(call.function) ? call.function : {};
    let item = this.calls.get(index);
    if (!item) {
      item = {
        ...newItem('function_call'),
        call: { call_id: str(call.id) || newId('call'), name: str(fn.name), arguments: '' },
      };
      this.calls.set(index, item);
      this.openItem(item);
    } else if (!item.call!.name && str(fn.name)) item.call!.name = str(fn.name);
    const delta = str(fn.arguments);
    if (!delta) return;
    item.call!.arguments += delta;
    // A call resumed after the next began (no upstream here does this) still ends whole in the final Response.
    if (item === this.open) this.emit('response.function_call_arguments.delta', { ...this.at(item), delta });
  }

  private at(item: Item): Json {
    return { item_id: item.id, output_index: this.items.indexOf(item) };
  }

  private openItem(item: Item): void {
    this.closeItem('completed');
    this.items.push(item);
    this.open = item;
    const added = item.type === 'function_call' ? { ...item.call, arguments: '' } : {};
    this.emit('response.output_item.added', {
      output_index: this.items.length - 1,
      item: { ...itemJson(item), ...added },
    });
  }

  private closePart(): void {
    const item = this.open;
    const part = this.openPart;
    if (!item || !part) return;
    this.openPart = undefined;
    const content_index = item.parts.indexOf(part);
    const { done, field } = PART_EVENTS[part.type];
    this.emit(done, { ...this.at(item), content_index, [field]: part.text, ...withLogprobs(part.type) });
    this.emit('response.content_part.done', { ...this.at(item), content_index, part: partJson(part) });
  }

  private closeItem(status: Item['status']): void {
    const item = this.open;
    if (!item) return;
    this.closePart();
    if (item.call)
      this.emit('response.function_call_arguments.done', {
        ...this.at(item),
        name: item.call.name,
        arguments: item.call.arguments,
      });
    item.status = status;
    this.open = undefined;
    this.emit('response.output_item.done', { output_index: this.items.indexOf(item), item: itemJson(item) });
  }

  private finish(): void {
    this.over = true;
    this.closeItem(closingStatus(this.finishReason));
    const response = finishedResponse(this.shell, this.items, this.finishReason, this.usage, this.serviceTier);
    const type = finishStatus(this.finishReason).status === 'incomplete' ? 'response.incomplete' : 'response.completed';
    this.emit(type, { response });
  }

  private fail(error: Json): void {
    this.over = true;
    const proxyError: ProxyError = {
      message: str(error.message) || 'The model provider reported an error.',
      type: str(error.type) || 'api_error',
      code: typeof error.code === 'string' ? error.code : null,
      param: typeof error.param === 'string' ? error.param : null,
    };
    this.out.push(sseEvent({ ...errorFields(proxyError), sequence_number: this.sequence++ }));
    for (const item of this.items) if (item.status === 'in_progress') item.status = 'incomplete';
    const { completed_at: _, ...finished } = finishedResponse(
      this.shell,
      this.items,
      undefined,
      this.usage,
      this.serviceTier,
    );
    const response = {
      ...finished,
      status: 'failed',
      error: {
        code: proxyError.code === 'rate_limit_exceeded' ? proxyError.code : 'server_error',
        message: proxyError.message,
      },
    };
    this.emit('response.failed', { response });
  }
}
