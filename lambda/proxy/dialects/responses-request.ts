/**
 * A Responses API request (`POST /v1/responses`) -> the canonical chat body. OpenAI's reference:
 * https://platform.openai.com/docs/api-reference/responses/create (input items:
 * https://platform.openai.com/docs/api-reference/responses/create#responses-create-input); the
 * mapping between the two APIs: https://platform.openai.com/docs/guides/migrate-to-responses.
 *
 * What is translated, and what is refused (400 naming the Responses field):
 *
 * | Responses field                   | here                                                                        |
 * |-----------------------------------|-----------------------------------------------------------------------------|
 * | model, temperature, top_p         | the same chat fields                                                        |
 * | input: string                     | one user message                                                            |
 * | input: message items              | chat messages (with or without `type: 'message'`; roles user, assistant,    |
 * |                                   | system, developer); parts input_text, output_text -> text, refusal,         |
 * |                                   | input_image (image_url) -> image_url, input_file (file_data) -> file,       |
 * |                                   | input_audio -> input_audio; `id`, `status`, `phase` are dropped             |
 * | input_image / input_file file_id, | refused: a reference to the provider's file storage, which the gateway can |
 * | input_file file_url               | neither read nor bound                                                      |
 * | input: function_call              | an assistant tool call; consecutive ones (and the assistant message before) |
 * |                                   | make one assistant message, as chat has it                                  |
 * | input: function_call_output       | a tool message (text parts only, as chat's tool messages)                   |
 * | input: reasoning                  | dropped: an earlier answer's reasoning only helps the provider's cache, and |
 * |                                   | its encrypted content means nothing to another upstream                     |
 * | input: item_reference, other      | refused: a stored item, or a built-in tool's call (not run here)            |
 * | instructions                      | a leading system message                                                    |
 * | max_output_tokens                 | max_completion_tokens: the hard cap (the plan's default when absent)        |
 * | tools: function                   | chat function tools; `strict` is passed as sent (Responses makes functions  |
 * |                                   | strict by default, chat does not: send `strict: true` to be sure)           |
 * | tools: anything else              | refused: built-in tools (web_search, file_search, code_interpreter,         |
 * |                                   | computer_use, image_generation, mcp, ...) are run and priced by the         |
 * |                                   | provider; custom and namespace tools have no chat twin                      |
 * | tool_choice                       | auto, none, required, {type: 'function', name}; others refused             |
 * | parallel_tool_calls               | passed when there are tools (chat refuses it without)                       |
 * | text.format, text.verbosity       | response_format (text, json_object, json_schema), verbosity                 |
 * | reasoning.effort                  | reasoning_effort; `summary` is accepted and ignored: no summary comes back  |
 * | user, safety_identifier,          | the same chat fields                                                        |
 * | prompt_cache_key,                 |                                                                             |
 * | prompt_cache_retention            |                                                                             |
 * | service_tier                      | service_tier (the proxy prices it or refuses it)                            |
 * | stream                            | stream, with stream_options.include_usage (the final event carries usage)  |
 * | stream_options                    | accepted, ignored (no obfuscation padding is added)                         |
 * | metadata                          | not sent upstream (chat keeps metadata only for stored completions);       |
 * |                                   | echoed in the Response                                                      |
 * | store                             | accepted, nothing is stored: the Response says `store: false`, and ids     |
 * |                                   | cannot be retrieved or continued                                            |
 * | include                           | reasoning.encrypted_content accepted (no reasoning item comes back to      |
 * |                                   | carry it); anything else refused                                            |
 * | truncation                        | 'auto' accepted and not applied (an input beyond the model's context is    |
 * |                                   | refused by the upstream, as with 'disabled'); the Response says 'disabled' |
 * | max_tool_calls                    | accepted, echoed: it limits built-in tool calls, and none run here         |
 * | previous_response_id, conversation| refused: nothing is stored; send the whole conversation in `input`         |
 * | background: true, prompt,         | refused: they need stored state or provider-side features                   |
 * | context_management, moderation    |                                                                             |
 * | top_logprobs > 0                  | refused (log probabilities are not translated)                              |
 * | anything else                     | refused as an unknown parameter, as OpenAI does                             |
 */
import { RequestError } from '../validate';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const given = (v: unknown): boolean => v !== undefined && v !== null;

function bad(param: string | null, message: string, code = 'invalid_value'): never {
  throw new RequestError(message, param, code);
}

const unsupported = (param: string, message: string): never => bad(param, message, 'unsupported_parameter');

/** Fields a Responses request may hold; anything else is an unknown parameter. */
const KNOWN = new Set([
  'model',
  'input',
  'instructions',
  'max_output_tokens',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'text',
  'reasoning',
  'stream',
  'stream_options',
  'user',
  'safety_identifier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'service_tier',
  'metadata',
  'store',
  'include',
  'truncation',
  'max_tool_calls',
  'top_logprobs',
  'background',
  'previous_response_id',
  'conversation',
  'prompt',
  'context_management',
  'moderation',
]);

/** Fields that need state the gateway does not keep, or a provider-side feature: refused when set. */
const STATEFUL: Readonly<Record<string, string>> = {
  previous_response_id:
    "'previous_response_id' continues a stored response, and nothing is stored here: send the whole conversation in 'input'.",
  conversation:
    "'conversation' continues a stored conversation, and nothing is stored here: send the whole conversation in 'input'.",
  prompt: "'prompt' refers to a prompt stored with the provider: send its text in 'instructions' and 'input'.",
  context_management: "'context_management' (server-side compaction) is not supported here.",
  moderation: "'moderation' is not supported here.",
};

/** Same meaning, same name, in both APIs: passed as sent. */
const PASSED = [
  'model',
  'temperature',
  'top_p',
  'user',
  'safety_identifier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'service_tier',
] as const;

/** `include` values that ask for nothing the translation cannot give. */
const INCLUDABLE = new Set(['reasoning.encrypted_content']);

export function responsesToChat(body: Json): Json {
  for (const key of Object.keys(body))
    if (!KNOWN.has(key)) bad(key, `Unknown parameter: '${key}'.`, 'unknown_parameter');
  for (const [key, message] of Object.entries(STATEFUL)) if (given(body[key])) unsupported(key, message);
  if (body.background === true)
    unsupported('background', "'background' responses are stored and polled, and nothing is stored here.");
  if (given(body.top_logprobs) && body.top_logprobs !== 0)
    unsupported('top_logprobs', "'top_logprobs' is not supported here: log probabilities are not returned.");
  checkInclude(body.include);
  if (given(body.truncation) && body.truncation !== 'auto' && body.truncation !== 'disabled')
    bad('truncation', "'truncation' must be 'auto' or 'disabled'.");
  if (given(body.store) && typeof body.store !== 'boolean') bad('store', "'store' must be true or false.");
  if (given(body.metadata) && !isRecord(body.metadata)) bad('metadata', "'metadata' must be an object.");

  const chat: Json = {};
  for (const key of PASSED) if (given(body[key])) chat[key] = body[key];
  chat.messages = [...instructions(body.instructions), ...inputMessages(body.input)];
  if (given(body.max_output_tokens)) {
    if (!Number.isInteger(body.max_output_tokens) || (body.max_output_tokens as number) < 1)
      bad('max_output_tokens', "'max_output_tokens' must be a whole number >= 1.");
    chat.max_completion_tokens = body.max_output_tokens;
  }
  const tools = chatTools(body.tools);
  if (tools.length) chat.tools = tools;
  if (given(body.tool_choice)) chat.tool_choice = chatToolChoice(body.tool_choice);
  if (given(body.parallel_tool_calls) && tools.length) chat.parallel_tool_calls = body.parallel_tool_calls;
  Object.assign(chat, textOptions(body.text), reasoningOptions(body.reasoning));
  if (given(body.stream)) {
    if (typeof body.stream !== 'boolean') bad('stream', "'stream' must be true or false.");
    chat.stream = body.stream;
    // The final event carries usage: ask for the usage chunk whether the client would or not.
    if (body.stream) chat.stream_options = { include_usage: true };
  }
  return chat;
}

function checkInclude(include: unknown): void {
  if (!given(include)) return;
  if (!Array.isArray(include)) bad('include', "'include' must be an array.");
  include.forEach((value, i) => {
    if (!INCLUDABLE.has(value as string))
      unsupported(
        `include[${i}]`,
        `'include[${i}]' (${JSON.stringify(value)}) is not supported here: only 'reasoning.encrypted_content' ` +
          `is accepted, and no reasoning item comes back to carry it.`,
      );
  });
}

function instructions(value: unknown): Json[] {
  if (!given(value) || value === '') return [];
  if (typeof value !== 'string') bad('instructions', "'instructions' must be a string.");
  return [{ role: 'system', content: value }];
}

const MESSAGE_ROLES = new Set(['user', 'assistant', 'system', 'developer']);

/** The input as chat messages, in order. */
function inputMessages(input: unknown): Json[] {
  if (typeof input === 'string') {
    if (!input) bad('input', "'input' must not be empty.");
    return [{ role: 'user', content: input }];
  }
  if (!Array.isArray(input) || input.length === 0)
    bad('input', "'input' must be a string or a non-empty array of input items.", 'missing_required_parameter');
  const messages: Json[] = [];
  input.forEach((item, i) => {
    const at = `input[${i}]`;
    if (!isRecord(item)) bad(at, `'${at}' must be an object.`);
    const type = item.type ?? 'message';
    if (type === 'message') messages.push(message(item, at));
    else if (type === 'function_call') addToolCall(messages, item, at);
    else if (type === 'function_call_output') messages.push(toolResult(item, at));
    else if (type === 'reasoning') return;
    else if (type === 'item_reference')
      unsupported(at, `'${at}' refers to a stored item, and nothing is stored here: send the item itself.`);
    else
      unsupported(
        `${at}.type`,
        `'${at}.type' is ${JSON.stringify(type)}: input items here are messages, function_call, ` +
          `function_call_output and reasoning (built-in tools do not run through this gateway).`,
      );
  });
  if (messages.length === 0) bad('input', "'input' holds no message.", 'missing_required_parameter');
  return messages;
}

function message(item: Json, at: string): Json {
  const role = item.role;
  if (typeof role !== 'string' || !MESSAGE_ROLES.has(role))
    bad(`${at}.role`, `'${at}.role' must be one of ${[...MESSAGE_ROLES].join(', ')}.`);
  const content = item.content;
  if (typeof content === 'string') return { role, content };
  if (!Array.isArray(content)) bad(`${at}.content`, `'${at}.content' must be a string or an array of content parts.`);
  return { role, content: content.map((part, j) => contentPart(part, `${at}.content[${j}]`)) };
}

/** A Responses content part -> a chat content part. */
function contentPart(part: unknown, at: string): Json {
  if (!isRecord(part)) bad(at, `'${at}' must be an object.`);
  switch (part.type) {
    case 'input_text':
    case 'output_text':
      if (typeof part.text !== 'string') bad(`${at}.text`, `'${at}.text' must be a string.`);
      return { type: 'text', text: part.text };
    case 'refusal':
      if (typeof part.refusal !== 'string') bad(`${at}.refusal`, `'${at}.refusal' must be a string.`);
      return { type: 'refusal', refusal: part.refusal };
    case 'input_image': {
      if (given(part.file_id)) unsupported(`${at}.file_id`, storedFile(at));
      if (typeof part.image_url !== 'string' || !part.image_url)
        bad(`${at}.image_url`, `'${at}.image_url' must be a URL or a data URL.`);
      return {
        type: 'image_url',
        image_url: { url: part.image_url, ...(given(part.detail) ? { detail: part.detail } : {}) },
      };
    }
    case 'input_file': {
      if (given(part.file_id)) unsupported(`${at}.file_id`, storedFile(at));
      if (given(part.file_url))
        unsupported(
          `${at}.file_url`,
          `'${at}.file_url' is not supported here: send the file's content in 'file_data'.`,
        );
      if (typeof part.file_data !== 'string' || !part.file_data)
        bad(`${at}.file_data`, `'${at}.file_data' must hold the file's content (a data URL).`);
      return {
        type: 'file',
        file: { file_data: part.file_data, ...(typeof part.filename === 'string' ? { filename: part.filename } : {}) },
      };
    }
    case 'input_audio':
      if (!isRecord(part.input_audio)) bad(`${at}.input_audio`, `'${at}.input_audio' must be an object.`);
      return { type: 'input_audio', input_audio: part.input_audio };
    default:
      return unsupported(
        `${at}.type`,
        `'${at}.type' is ${JSON.stringify(part.type)}: content parts are input_text, output_text, refusal, input_image, input_file, input_audio.`,
      );
  }
}

const storedFile = (at: string): string =>
  `'${at}' refers to a file stored with the provider, which this gateway can neither read nor bound: send the content itself.`;

const requireString = (item: Json, field: string, at: string): string => {
  const value = item[field];
  if (typeof value !== 'string' || !value) bad(`${at}.${field}`, `'${at}.${field}' must be a non-empty string.`);
  return value;
};

/** A function_call item joins the assistant message just before it, as one chat turn holds text and calls. */
function addToolCall(messages: Json[], item: Json, at: string): void {
  const call = {
    id: requireString(item, 'call_id', at),
    type: 'function',
    function: { name: requireString(item, 'name', at), arguments: item.arguments },
  };
  // A function without parameters may have been called with empty arguments: a string is all that is asked.
  if (typeof call.function.arguments !== 'string') bad(`${at}.arguments`, `'${at}.arguments' must be a string.`);
  const last = messages.at(-1);
  if (last?.role === 'assistant') last.tool_calls = [...((last.tool_calls as Json[] | undefined) ?? []), call];
  else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
}

function toolResult(item: Json, at: string): Json {
  const tool_call_id = requireString(item, 'call_id', at);
  const output = item.output;
  if (typeof output === 'string') return { role: 'tool', tool_call_id, content: output };
  if (!Array.isArray(output)) bad(`${at}.output`, `'${at}.output' must be a string or an array of content parts.`);
  const content = output.map((part, j) => {
    const converted = contentPart(part, `${at}.output[${j}]`);
    if (converted.type !== 'text')
      unsupported(
        `${at}.output[${j}].type`,
        `'${at}.output[${j}]' is not text: a function's output is text here (chat tool messages hold text only).`,
      );
    return converted;
  });
  return { role: 'tool', tool_call_id, content };
}

function chatTools(tools: unknown): Json[] {
  if (!given(tools)) return [];
  if (!Array.isArray(tools)) bad('tools', "'tools' must be an array.");
  return tools.map((tool, i) => {
    const at = `tools[${i}]`;
    if (!isRecord(tool)) bad(at, `'${at}' must be an object.`);
    if (tool.type !== 'function')
      unsupported(
        `${at}.type`,
        `'${at}.type' is ${JSON.stringify(tool.type)}: only function tools are supported here. Built-in tools ` +
          `(web search, file search, code interpreter, computer use, image generation, MCP, ...) are run and ` +
          `priced by the provider, outside this gateway's limits.`,
      );
    if (tool.defer_loading === true)
      unsupported(
        `${at}.defer_loading`,
        `'${at}.defer_loading' needs the provider's tool search, which is not supported here.`,
      );
    const fn: Json = { name: requireString(tool, 'name', at) };
    if (given(tool.description)) fn.description = tool.description;
    if (given(tool.parameters)) fn.parameters = tool.parameters;
    if (given(tool.strict)) fn.strict = tool.strict;
    return { type: 'function', function: fn };
  });
}

function chatToolChoice(choice: unknown): unknown {
  if (choice === 'auto' || choice === 'none' || choice === 'required') return choice;
  if (isRecord(choice) && choice.type === 'function' && typeof choice.name === 'string')
    return { type: 'function', function: { name: choice.name } };
  return unsupported(
    'tool_choice',
    "'tool_choice' must be 'auto', 'none', 'required' or {type: 'function', name}: other choices name tools not supported here.",
  );
}

function textOptions(text: unknown): Json {
  if (!given(text)) return {};
  if (!isRecord(text)) bad('text', "'text' must be an object.");
  const out: Json = {};
  if (given(text.verbosity)) out.verbosity = text.verbosity;
  const format = text.format;
  if (!given(format)) return out;
  if (!isRecord(format)) bad('text.format', "'text.format' must be an object.");
  if (format.type === 'text' || format.type === 'json_object') out.response_format = { type: format.type };
  else if (format.type === 'json_schema') {
    if (!isRecord(format.schema)) bad('text.format.schema', "'text.format.schema' must be a JSON schema object.");
    const schema: Json = { name: requireString(format, 'name', 'text.format'), schema: format.schema };
    if (given(format.description)) schema.description = format.description;
    if (given(format.strict)) schema.strict = format.strict;
    out.response_format = { type: 'json_schema', json_schema: schema };
  } else bad('text.format.type', "'text.format.type' must be 'text', 'json_object' or 'json_schema'.");
  return out;
}

function reasoningOptions(reasoning: unknown): Json {
  if (!given(reasoning)) return {};
  if (!isRecord(reasoning)) bad('reasoning', "'reasoning' must be an object.");
  return given(reasoning.effort) ? { reasoning_effort: reasoning.effort } : {};
}
