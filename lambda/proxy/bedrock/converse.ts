/**
 * The canonical chat body -> a Converse (and ConverseStream) request. Converse has no field for
 * much of what an OpenAI body may ask, so every field is either translated, dropped because it
 * changes neither the answer nor its price, accepted only at the value that asks for nothing, or
 * refused with a RequestError naming it: nothing that would change the answer or what it costs
 * is dropped silently. The output cap always becomes `inferenceConfig.maxTokens`: it is the hard
 * cap, and Bedrock's own default is the model's maximum.
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
 */
import type {
  ContentBlock,
  ImageFormat,
  InferenceConfiguration,
  Message,
  SystemContentBlock,
  Tool,
  ToolChoice,
  ToolConfiguration,
} from '@aws-sdk/client-bedrock-runtime';
import type { DocumentType } from '@smithy/types';
import { RequestError } from '../validate';

/** What Converse and ConverseStream are sent (modelId aside), and what CountTokens counts. */
export interface ConverseRequest {
  readonly system?: SystemContentBlock[];
  readonly messages: Message[];
  readonly inferenceConfig: InferenceConfiguration & { readonly maxTokens: number };
  readonly toolConfig?: ToolConfiguration;
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
/** Absent, as OpenAI reads `null` for an optional field. */
const absent = (v: unknown): boolean => v === undefined || v === null;

/** Fields translated below. */
const TRANSLATED = new Set([
  'model',
  'messages',
  'stream',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'stop',
  'tools',
  'tool_choice',
]);

/**
 * Dropped: they change neither the answer nor its price. stream_options (the adapter always ends a
 * stream with usage), user / safety_identifier / metadata (OpenAI's abuse and dashboard tags),
 * store (OpenAI's stored completions), prompt_cache_key (a routing hint for OpenAI's cache) and
 * seed (best effort at OpenAI too: "determinism is not guaranteed").
 */
export const DROPPED_FIELDS: ReadonlySet<string> = new Set([
  'stream_options',
  'user',
  'safety_identifier',
  'metadata',
  'store',
  'prompt_cache_key',
  'seed',
]);

/** Accepted only at the value that asks for nothing more than Converse does; any other is refused. */
const ONLY_DEFAULT: Record<string, (v: unknown) => boolean> = {
  n: (v) => v === 1,
  logprobs: (v) => v === false,
  frequency_penalty: (v) => v === 0,
  presence_penalty: (v) => v === 0,
  parallel_tool_calls: (v) => v === true,
  logit_bias: (v) => isRecord(v) && Object.keys(v).length === 0,
  service_tier: (v) => v === 'auto' || v === 'default',
  modalities: (v) => Array.isArray(v) && v.every((m) => m === 'text'),
  response_format: (v) => isRecord(v) && v.type === 'text',
};

const IMAGE_FORMATS: Record<string, ImageFormat> = {
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/gif': 'gif',
  'image/webp': 'webp',
};

const unsupported = (param: string, why: string): never => {
  throw new RequestError(
    `${param} is not supported for this model (served by Amazon Bedrock): ${why}.`,
    param,
    'unsupported_parameter',
  );
};
const invalid = (param: string, why: string): never => {
  throw new RequestError(`${param} ${why}.`, param, 'invalid_value');
};

/** The canonical chat body -> Converse's fields. Throws RequestError naming the field it cannot translate. */
export function toConverse(body: Readonly<Json>): ConverseRequest {
  for (const [key, value] of Object.entries(body)) {
    if (TRANSLATED.has(key) || DROPPED_FIELDS.has(key) || absent(value)) continue;
    const accepts = ONLY_DEFAULT[key];
    if (accepts?.(value)) continue;
    unsupported(key, accepts ? 'only its default value can be honoured' : 'it would change the answer or its price');
  }
  return { ...converseInput(body), inferenceConfig: inference(body) };
}

/** What Bedrock bills as input (CountTokens counts it): system, messages and tools, the output cap aside. */
export function converseInput(body: Readonly<Json>): Omit<ConverseRequest, 'inferenceConfig'> {
  const { system, messages } = conversation(body.messages);
  const toolConfig = tools(body, messages);
  return { ...(system.length ? { system } : {}), messages, ...(toolConfig ? { toolConfig } : {}) };
}

/** The output cap (the smaller of the two fields when both are sent) and the sampling fields. */
function inference(body: Readonly<Json>): ConverseRequest['inferenceConfig'] {
  const caps = [body.max_tokens, body.max_completion_tokens].filter((v) => !absent(v));
  for (const cap of caps)
    if (!Number.isInteger(cap) || (cap as number) < 1) invalid('max_tokens', 'must be a whole number of at least 1');
  if (caps.length === 0) invalid('max_tokens', 'is required: every request to this model carries an output cap');
  const config: InferenceConfiguration & { maxTokens: number } = { maxTokens: Math.min(...(caps as number[])) };
  if (typeof body.temperature === 'number') config.temperature = body.temperature;
  if (typeof body.top_p === 'number') config.topP = body.top_p;
  if (typeof body.stop === 'string') config.stopSequences = [body.stop];
  else if (Array.isArray(body.stop)) {
    if (!body.stop.every((s) => typeof s === 'string')) invalid('stop', 'must be a string or a list of strings');
    if (body.stop.length) config.stopSequences = body.stop as string[];
  }
  return config;
}

type Turn = { role: 'user' | 'assistant'; content: ContentBlock[] };

/** Message fields each role may carry; anything else set on a message is refused. */
const MESSAGE_FIELDS: Record<string, ReadonlySet<string>> = {
  system: new Set(['role', 'content']),
  developer: new Set(['role', 'content']),
  user: new Set(['role', 'content']),
  assistant: new Set(['role', 'content', 'tool_calls', 'refusal']),
  tool: new Set(['role', 'content', 'tool_call_id']),
};

/**
 * System and developer messages -> `system` (Converse has one system prompt: a later system
 * message joins it); the rest -> alternating turns starting with the user, consecutive turns of
 * one role merged (tool results are the user's turn, as Converse wants them).
 */
function conversation(raw: unknown): { system: SystemContentBlock[]; messages: Message[] } {
  if (!Array.isArray(raw)) return invalid('messages', 'must be a list');
  const system: SystemContentBlock[] = [];
  const turns: Turn[] = [];
  const add = (role: Turn['role'], content: ContentBlock[]) => {
    const last = turns.at(-1);
    if (last?.role === role) last.content.push(...content);
    else turns.push({ role, content });
  };
  for (const [i, m] of raw.entries()) {
    const at = `messages[${i}]`;
    if (!isRecord(m)) return invalid(at, 'must be an object');
    const role = String(m.role);
    const allowed = MESSAGE_FIELDS[role] ?? unsupported(`${at}.role`, `the role '${role}' has no equivalent`);
    for (const [key, value] of Object.entries(m))
      if (!allowed.has(key) && !absent(value)) unsupported(`${at}.${key}`, 'Converse messages have no such field');
    if (role === 'system' || role === 'developer') {
      for (const text of texts(m.content, at)) system.push({ text });
    } else if (role === 'user') {
      add('user', userContent(m.content, at));
    } else if (role === 'assistant') {
      add('assistant', assistantContent(m, at));
    } else {
      if (typeof m.tool_call_id !== 'string') invalid(`${at}.tool_call_id`, 'is required on a tool message');
      const content = texts(m.content, at).map((text) => ({ text }));
      add('user', [{ toolResult: { toolUseId: m.tool_call_id as string, content } }]);
    }
  }
  if (turns[0]?.role !== 'user')
    invalid('messages', 'must hold a user message before any assistant message (Converse starts with the user)');
  return { system, messages: turns };
}

/** The text of string content or text parts (empty texts left out: Converse refuses blank blocks). */
function texts(content: unknown, at: string): string[] {
  if (typeof content === 'string') return content ? [content] : [];
  if (absent(content)) return [];
  if (!Array.isArray(content)) return invalid(`${at}.content`, 'must be a string or a list of parts');
  return content.flatMap((part, j) => {
    if (!isRecord(part) || (part.type !== 'text' && part.type !== 'refusal'))
      return unsupported(`${at}.content[${j}]`, 'only text parts are accepted in this message');
    const text = part.type === 'text' ? part.text : part.refusal;
    return typeof text === 'string' && text ? [text] : [];
  });
}

function userContent(content: unknown, at: string): ContentBlock[] {
  if (!Array.isArray(content)) return texts(content, at).map((text) => ({ text }));
  return content.flatMap((part, j): ContentBlock[] => {
    const where = `${at}.content[${j}]`;
    if (isRecord(part) && part.type === 'image_url') return [image(part, where)];
    if (isRecord(part) && part.type === 'text')
      return typeof part.text === 'string' && part.text ? [{ text: part.text }] : [];
    return unsupported(where, `parts of type '${isRecord(part) ? String(part.type) : typeof part}' have no equivalent`);
  });
}

/** A data: URL image -> Converse's image block; Converse cannot fetch a URL. */
function image(part: Json, at: string): ContentBlock {
  const url = isRecord(part.image_url) ? part.image_url.url : undefined;
  const where = `${at}.image_url.url`;
  if (typeof url !== 'string') return invalid(where, 'is required');
  const [, mime = '', base64 = ''] = /^data:([^;,]+);base64,(.*)$/s.exec(url) ?? [];
  if (!mime) return unsupported(where, 'images must be sent inline as a base64 data: URL, not fetched from a link');
  const format = IMAGE_FORMATS[mime.toLowerCase()];
  if (!format) return unsupported(where, 'images must be PNG, JPEG, GIF or WebP');
  return { image: { format, source: { bytes: Buffer.from(base64, 'base64') } } };
}

function assistantContent(m: Json, at: string): ContentBlock[] {
  const content: ContentBlock[] = texts(m.content, at).map((text) => ({ text }));
  if (typeof m.refusal === 'string' && m.refusal) content.push({ text: m.refusal });
  if (absent(m.tool_calls)) return content;
  if (!Array.isArray(m.tool_calls)) return invalid(`${at}.tool_calls`, 'must be a list');
  for (const [k, call] of m.tool_calls.entries()) {
    const where = `${at}.tool_calls[${k}]`;
    const fn = isRecord(call) && isRecord(call.function) ? call.function : undefined;
    if (
      !isRecord(call) ||
      call.type !== 'function' ||
      !fn ||
      typeof fn.name !== 'string' ||
      typeof call.id !== 'string'
    )
      return invalid(where, 'must be a function call with an id and a name');
    let input: unknown;
    try {
      input = JSON.parse(typeof fn.arguments === 'string' && fn.arguments.trim() ? fn.arguments : '{}');
    } catch {
      return invalid(`${where}.function.arguments`, 'must be JSON (Converse sends a tool call’s input as JSON)');
    }
    content.push({ toolUse: { toolUseId: call.id, name: fn.name, input: input as DocumentType } });
  }
  return content;
}

/**
 * tools -> toolConfig.tools; tool_choice auto / required / a function -> auto / any / tool.
 * 'none' sends no tools (Converse has no such choice), which Converse allows only while the
 * conversation holds no tool calls or results.
 */
function tools(body: Readonly<Json>, messages: Message[]): ToolConfiguration | undefined {
  const choice = body.tool_choice;
  const list = absent(body.tools) ? [] : body.tools;
  if (!Array.isArray(list)) return invalid('tools', 'must be a list');
  const specs = list.map((tool, k): Tool => {
    const fn = isRecord(tool) && tool.type === 'function' && isRecord(tool.function) ? tool.function : undefined;
    if (!fn) return unsupported(`tools[${k}]`, 'only function tools have an equivalent');
    if (typeof fn.name !== 'string') return invalid(`tools[${k}].function.name`, 'is required');
    return {
      toolSpec: {
        name: fn.name,
        ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
        inputSchema: {
          json: (isRecord(fn.parameters) ? fn.parameters : { type: 'object', properties: {} }) as DocumentType,
        },
        ...(typeof fn.strict === 'boolean' ? { strict: fn.strict } : {}),
      },
    };
  });
  if (choice === 'none') {
    const toolHistory = messages.some((m) => m.content?.some((b) => b.toolUse || b.toolResult));
    if (toolHistory)
      unsupported('tool_choice', "'none' cannot be honoured in a conversation that holds tool calls or results");
    return undefined;
  }
  if (specs.length === 0) {
    if (absent(choice) || choice === 'auto') return undefined;
    return invalid('tool_choice', 'needs tools to choose from');
  }
  let toolChoice: ToolChoice;
  if (absent(choice) || choice === 'auto') toolChoice = { auto: {} };
  else if (choice === 'required') toolChoice = { any: {} };
  else if (isRecord(choice) && choice.type === 'function' && isRecord(choice.function)) {
    const name = choice.function.name;
    if (!specs.some((t) => t.toolSpec?.name === name)) return invalid('tool_choice', 'names a function not in tools');
    toolChoice = { tool: { name: String(name) } };
  } else return unsupported('tool_choice', 'only none, auto, required or a named function have an equivalent');
  return { tools: specs, toolChoice };
}
