/**
 * The canonical chat body as a Messages request for an Anthropic-compatible upstream
 * (https://docs.claude.com/en/api/messages). The inverse of the Messages client dialect's
 * reading, through the same tables (dialects/messages-shapes.ts).
 *
 * Each canonical chat field -> what it becomes in the Messages request; why:
 *
 * - max_tokens / max_completion_tokens (the reserved cap) -> max_tokens, always; the cap is the bound the
 *   reservation holds (Anthropic requires the field anyway)
 * - system / developer messages -> `system` text blocks, in order; Anthropic takes the system prompt apart from
 *   the turns
 * - user text / image_url parts -> text / image blocks (a data: URL becomes a base64 source, else a url source);
 *   audio and file parts are refused: Anthropic reads neither
 * - assistant content, refusal, tool_calls -> text block, tool_use blocks (input parsed from the arguments)
 * - tool messages -> tool_result blocks in a user turn; consecutive turns of one role become one turn, as
 *   Anthropic would merge them
 * - tools (function), tool_choice, parallel_tool_calls false -> tools (input_schema), tool_choice,
 *   disable_parallel_tool_use
 * - stop -> stop_sequences
 * - temperature, top_p -> temperature, top_p; as they are: Anthropic refuses a temperature above 1 (400, nothing
 *   billed)
 * - user (else safety_identifier) -> metadata.user_id
 * - seed, store, metadata, prompt_cache_key, stream_options, service_tier auto/default, name of a message ->
 *   dropped; nothing Anthropic reads; none changes the price
 * - n > 1, logprobs, top_logprobs, logit_bias, penalties, response_format other than text, audio, modalities
 *   other than text, prediction, reasoning_effort, verbosity, functions, function_call, any other field ->
 *   refused (400 naming the field); Anthropic cannot do what they ask, and dropping them would answer another
 *   question
 */
import { imageSourceOf, isRecord, type Json, messagesToolChoiceOf, str, toolInputOf } from './dialects/messages-shapes';
import { RequestError } from './validate';

/** Fields read below. */
const READ = [
  'model',
  'max_tokens',
  'max_completion_tokens',
  'messages',
  'stream',
  'temperature',
  'top_p',
  'stop',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'user',
  'safety_identifier',
];
/** Fields dropped: nothing Anthropic reads, and none changes the price. */
const DROPPED = ['stream_options', 'seed', 'store', 'metadata', 'prompt_cache_key'];
const ACCEPTED = new Set([...READ, ...DROPPED]);
/** Fields accepted only with the value that asks for nothing more than Anthropic does. */
const NEUTRAL: Readonly<Record<string, (v: unknown) => boolean>> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  service_tier: (v) => v === 'auto' || v === 'default',
  response_format: (v) => isRecord(v) && v.type === 'text',
  modalities: (v) => Array.isArray(v) && v.every((m) => m === 'text'),
};

function refuse(param: string, why = 'the Anthropic upstream cannot honour it'): never {
  throw new RequestError(`'${param}' is not accepted here: ${why}.`, param, 'unsupported_parameter');
}

/** The cap the proxy reserved, from the canonical body. */
export function outputCapOf(chat: Json): number {
  const cap = chat.max_completion_tokens ?? chat.max_tokens;
  if (!Number.isInteger(cap) || (cap as number) < 1)
    throw new Error('an Anthropic upstream is called with the reserved output cap in max_tokens');
  return cap as number;
}

/** A canonical chat body -> the Messages request sent upstream. Throws RequestError for what cannot be sent. */
export function chatToMessagesRequest(chat: Json): Json {
  for (const [key, value] of Object.entries(chat)) {
    if (ACCEPTED.has(key) || value === undefined || value === null) continue;
    if (!NEUTRAL[key]?.(value)) refuse(key);
  }
  const { system, messages } = turns(chat.messages);
  const request: Json = { model: chat.model, max_tokens: outputCapOf(chat), messages };
  if (system.length) request.system = system;
  if (chat.stream === true) request.stream = true;
  for (const field of ['temperature', 'top_p'] as const)
    if (typeof chat[field] === 'number') request[field] = chat[field];
  if (chat.stop !== undefined && chat.stop !== null) {
    const stops = typeof chat.stop === 'string' ? [chat.stop] : chat.stop;
    if (Array.isArray(stops) && stops.length) request.stop_sequences = stops;
  }
  const user = str(chat.user) || str(chat.safety_identifier);
  if (user) request.metadata = { user_id: user };
  if (Array.isArray(chat.tools) && chat.tools.length) request.tools = chat.tools.map(tool);
  const choice = toolChoice(chat.tool_choice, chat.parallel_tool_calls === false);
  if (choice) request.tool_choice = choice;
  return request;
}

function tool(t: unknown, i: number): Json {
  const fn = isRecord(t) && t.type === 'function' && isRecord(t.function) ? t.function : refuse(`tools[${i}].type`);
  return {
    name: fn.name,
    ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
    input_schema: isRecord(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
    ...(typeof fn.strict === 'boolean' ? { strict: fn.strict } : {}),
  };
}

function toolChoice(choice: unknown, serial: boolean): Json | undefined {
  const parallel = serial ? { disable_parallel_tool_use: true } : {};
  if (choice === undefined || choice === null) return serial ? { type: 'auto', ...parallel } : undefined;
  if (isRecord(choice) && isRecord(choice.function)) return { type: 'tool', name: choice.function.name, ...parallel };
  const type = messagesToolChoiceOf(str(choice));
  if (type === undefined) refuse('tool_choice');
  return type === 'none' ? { type } : { type, ...parallel };
}

type Block = Json;

/** The canonical messages as Anthropic's system blocks and turns. */
function turns(messages: unknown): { system: Block[]; messages: Json[] } {
  const system: Block[] = [];
  const out: { role: string; content: Block[] }[] = [];
  const push = (role: string, blocks: Block[]) => {
    if (!blocks.length) return;
    const last = out.at(-1);
    if (last?.role === role) last.content.push(...blocks);
    else out.push({ role, content: blocks });
  };
  (Array.isArray(messages) ? messages : []).forEach((m: Json, i) => {
    const at = `messages[${i}]`;
    if (m.role === 'system' || m.role === 'developer') system.push(...textBlocks(m.content, at));
    else if (m.role === 'user') push('user', userBlocks(m.content, at));
    else if (m.role === 'assistant') push('assistant', assistantBlocks(m, at));
    else if (m.role === 'tool')
      push('user', [
        {
          type: 'tool_result',
          tool_use_id: str(m.tool_call_id),
          content: textBlocks(m.content, at)
            .map((b) => b.text)
            .join(''),
        },
      ]);
    else refuse(`${at}.role`);
  });
  return { system, messages: out };
}

function textBlocks(content: unknown, at: string): Block[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : [];
  if (!Array.isArray(content)) return [];
  return content.flatMap((part: Json, j) => {
    const text =
      part.type === 'text' ? part.text : part.type === 'refusal' ? part.refusal : refuse(`${at}.content[${j}].type`);
    return typeof text === 'string' && text ? [{ type: 'text', text }] : [];
  });
}

function userBlocks(content: unknown, at: string): Block[] {
  if (!Array.isArray(content)) return textBlocks(content, at);
  return content.flatMap((part: Json, j) => {
    if (part.type !== 'image_url') return textBlocks([part], at);
    const url = isRecord(part.image_url) ? str(part.image_url.url) : '';
    if (!url) refuse(`${at}.content[${j}].image_url`);
    return [{ type: 'image', source: imageSourceOf(url) }];
  });
}

function assistantBlocks(m: Json, at: string): Block[] {
  if (m.function_call !== undefined && m.function_call !== null) refuse(`${at}.function_call`);
  if (m.audio !== undefined && m.audio !== null) refuse(`${at}.audio`);
  const calls = Array.isArray(m.tool_calls) ? m.tool_calls : [];
  return [
    ...textBlocks(m.content, at),
    ...calls.map((call: Json) => {
      const fn = isRecord(call.function) ? call.function : {};
      return { type: 'tool_use', id: str(call.id), name: str(fn.name), input: toolInputOf(fn.arguments) };
    }),
  ];
}
