/**
 * The Response object (https://platform.openai.com/docs/api-reference/responses/object) as the
 * Responses dialect builds it from a canonical chat answer, streamed or not: its output items,
 * its status, its usage, and the request fields it echoes. `output_text` is not a wire field:
 * OpenAI's SDKs derive it from the output items.
 */
import { randomUUID } from 'node:crypto';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/** An id in OpenAI's style (`resp_...`, `msg_...`, `fc_...`): the prefix names what it is. */
export const newId = (prefix: string): string => `${prefix}_${randomUUID().replaceAll('-', '')}`;

export type ItemStatus = 'in_progress' | 'completed' | 'incomplete';
export type PartType = 'output_text' | 'refusal' | 'reasoning_text';

export interface Part {
  readonly type: PartType;
  text: string;
}

/** One output item: an assistant message, the model's reasoning text, or a function call. */
export interface Item {
  readonly type: 'message' | 'reasoning' | 'function_call';
  readonly id: string;
  readonly parts: Part[];
  /** A function call's call_id, name and arguments so far. */
  call?: { call_id: string; name: string; arguments: string };
  status: ItemStatus;
}

export const newItem = (type: Item['type']): Item => ({
  type,
  id: newId({ message: 'msg', reasoning: 'rs', function_call: 'fc' }[type]),
  parts: [],
  status: 'in_progress',
});

export function partJson(part: Part): Json {
  if (part.type === 'refusal') return { type: 'refusal', refusal: part.text };
  if (part.type === 'reasoning_text') return { type: 'reasoning_text', text: part.text };
  return { type: 'output_text', annotations: [], logprobs: [], text: part.text };
}

export function itemJson(item: Item): Json {
  const { id, type, status } = item;
  if (type === 'function_call') return { id, type, status, ...item.call };
  if (type === 'reasoning') return { id, type, status, summary: [], content: item.parts.map(partJson) };
  return { id, type, status, role: 'assistant', content: item.parts.map(partJson) };
}

/** The output items of a chat message (a whole answer's, or a stream's gathered): reasoning, message, calls. */
export function itemsOf(message: Json): Item[] {
  const items: Item[] = [];
  const reasoning = text(message.reasoning_content) || text(message.reasoning);
  if (reasoning) items.push({ ...newItem('reasoning'), parts: [{ type: 'reasoning_text', text: reasoning }] });
  const parts: Part[] = [];
  const content = text(message.content);
  if (content) parts.push({ type: 'output_text', text: content });
  if (text(message.refusal)) parts.push({ type: 'refusal', text: text(message.refusal) });
  if (parts.length) items.push({ ...newItem('message'), parts });
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    const fn = isRecord(call) && isRecord(call.function) ? call.function : {};
    items.push({
      ...newItem('function_call'),
      call: { call_id: text(call?.id) || newId('call'), name: text(fn.name), arguments: text(fn.arguments) },
    });
  }
  return items;
}

/** A string, or the text parts of a content array (some upstreams answer in parts). */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return '';
  return value.map((part) => (isRecord(part) && typeof part.text === 'string' ? part.text : '')).join('');
}

/** The Response's status for a chat finish_reason: cut off by the cap or a filter is incomplete. */
export function finishStatus(finishReason: unknown): Json {
  if (finishReason === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finishReason === 'content_filter')
    return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

/** The status of the item open when the answer finished. */
export const closingStatus = (finishReason: unknown): ItemStatus =>
  finishStatus(finishReason).status === 'incomplete' ? 'incomplete' : 'completed';

/** Chat usage -> Responses usage; undefined when the upstream sent none. */
export function responseUsage(usage: unknown): Json | undefined {
  if (!isRecord(usage)) return undefined;
  const input = num(usage.prompt_tokens);
  const output = num(usage.completion_tokens);
  const cached = isRecord(usage.prompt_tokens_details) ? num(usage.prompt_tokens_details.cached_tokens) : 0;
  const reasoning = isRecord(usage.completion_tokens_details)
    ? num(usage.completion_tokens_details.reasoning_tokens)
    : 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: cached },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: reasoning },
    total_tokens: num(usage.total_tokens) || input + output,
  };
}

const echo = (value: unknown, otherwise: unknown = null): unknown => value ?? otherwise;

/**
 * A Response under way: status in_progress, no output yet, the request's settings echoed as
 * the SDKs read them. `store` is false and `truncation` 'disabled' whatever was asked: nothing is
 * stored here, and no input is dropped (responses-request.ts).
 */
export function responseShell(request: Json, id: string, createdAt: number): Json {
  const reasoning = isRecord(request.reasoning) ? request.reasoning : {};
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    background: false,
    error: null,
    incomplete_details: null,
    instructions: echo(request.instructions),
    max_output_tokens: echo(request.max_output_tokens),
    max_tool_calls: echo(request.max_tool_calls),
    model: request.model,
    output: [],
    parallel_tool_calls: echo(request.parallel_tool_calls, true),
    previous_response_id: null,
    prompt_cache_key: echo(request.prompt_cache_key),
    reasoning: { effort: echo(reasoning.effort), summary: null },
    safety_identifier: echo(request.safety_identifier),
    service_tier: echo(request.service_tier, 'auto'),
    store: false,
    temperature: echo(request.temperature),
    text: echo(request.text, { format: { type: 'text' } }),
    tool_choice: echo(request.tool_choice, 'auto'),
    tools: echo(request.tools, []),
    top_p: echo(request.top_p),
    truncation: 'disabled',
    usage: null,
    user: echo(request.user),
    metadata: echo(request.metadata, {}),
  };
}

/** The finished Response: the shell with its output, status, usage and the tier the upstream used. */
export function finishedResponse(
  shell: Json,
  items: readonly Item[],
  finishReason: unknown,
  usage: unknown,
  serviceTier: unknown,
): Json {
  const status = finishStatus(finishReason);
  // Items still open end with the answer: the last one cut off when the answer was.
  const open = items.filter((item) => item.status === 'in_progress');
  for (const item of open) item.status = item === open.at(-1) ? closingStatus(finishReason) : 'completed';
  return {
    ...shell,
    ...status,
    ...(status.status === 'completed' ? { completed_at: Math.floor(Date.now() / 1000) } : {}),
    output: items.map(itemJson),
    usage: responseUsage(usage) ?? null,
    ...(typeof serviceTier === 'string' ? { service_tier: serviceTier } : {}),
  };
}
