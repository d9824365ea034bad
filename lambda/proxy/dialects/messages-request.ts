/**
 * A Messages request (POST /v1/messages, and /v1/messages/count_tokens) read into the canonical
 * chat body. Field names in errors are Anthropic's, dotted as its own errors put them
 * (`messages.0.content.1.type`). Reference: https://docs.claude.com/en/api/messages.
 *
 * Each Messages field -> what it becomes in the canonical chat body; why:
 *
 * - model -> model
 * - max_tokens (required) -> max_tokens (the hard cap); missing: 400 as Anthropic answers it. 0 (a prompt-cache
 *   pre-warm) is refused: no chat equivalent, and cache writes are dearer than the input rate reserved
 * - system: string or text blocks -> a first `system` message
 * - messages[].role user / assistant -> user / assistant messages; role `system` inside messages is read as a
 *   system message in place
 * - text block -> text part (user), text (assistant)
 * - image block, base64 / url source -> image_url part (data: URL / url); `file` sources (Files API) are refused:
 *   nothing to count
 * - tool_use block (assistant) -> assistant tool_calls, arguments = JSON of input
 * - tool_result block (user) -> a `tool` message before the user's other blocks; content: string or text blocks;
 *   is_error: the text opens with "[tool error] "; images in a result are refused (a tool message holds text)
 * - tools: {name, description, input_schema, strict} -> function tools; server tools (web search, code execution,
 *   bash, text editor, ...) are refused: they bill per use and run Anthropic's side
 * - tool_choice auto / any / tool / none -> auto / required / {function} / none; disable_parallel_tool_use:
 *   parallel_tool_calls false
 * - stop_sequences -> stop
 * - temperature, top_p -> temperature, top_p; Anthropic's temperature range is 0 to 1: values above are refused
 * - metadata.user_id -> user
 * - stream -> stream, and stream_options.include_usage; the translator needs the usage chunk to send
 *   message_delta's usage
 * - cache_control (top level and on blocks) -> dropped; a cache write costs more than the input rate reserved
 *   (1.25x for 5 minutes, 2x for an hour: https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing);
 *   without it the upstream bills the base rate, which the reservation covers. Only the discount of later reads
 *   is lost
 * - service_tier auto / standard_only -> dropped; the proxy's upstream call picks no tier
 * - speed standard -> dropped; `fast` is refused: priced above the standard rate
 * - top_k -> refused; no chat equivalent; dropping it would change sampling silently
 * - thinking (other than disabled), thinking / redacted_thinking blocks -> refused; thinking blocks and their
 *   signatures cannot cross the canonical form
 * - output_config, inference_geo, container, mcp_servers, context_management, document / search_result / server
 *   tool blocks, citations -> refused; not translatable, or priced otherwise
 *   (inference_geo: https://docs.claude.com/en/docs/about-claude/pricing)
 * - any other field -> refused; "Extra inputs are not permitted", as Anthropic answers
 */
import { RequestError } from '../validate';
import { chatToolChoiceOf, imageUrlOf, isRecord, type Json } from './messages-shapes';

/** Fields a Messages request may hold; each is translated below or dropped as the list at the top says. */
const TRANSLATED = new Set([
  'model',
  'max_tokens',
  'messages',
  'system',
  'stream',
  'stop_sequences',
  'temperature',
  'top_p',
  'metadata',
  'tools',
  'tool_choice',
  'thinking',
  'cache_control',
  'service_tier',
  'speed',
]);
/** count_tokens takes no output fields (https://docs.claude.com/en/api/messages-count-tokens). */
const COUNTED = new Set(['model', 'messages', 'system', 'tools', 'tool_choice', 'thinking', 'cache_control']);
/** Tool fields that only steer how Anthropic loads or streams a tool: harmless to drop. */
const TOOL_FIELDS = new Set(['name', 'description', 'input_schema', 'strict', 'type', 'cache_control']);

function bad(param: string, message: string, code = 'invalid_value'): never {
  throw new RequestError(`${param}: ${message}`, param, code);
}

const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;

/** A Messages request -> the canonical chat body (validated as a chat request afterwards, like any other). */
export function messagesToChat(body: Json): Json {
  return translate(body, TRANSLATED, true);
}

/** A count_tokens body -> the canonical chat body whose input the proxy counts. */
export function countTokensToChat(body: Json): Json {
  return translate(body, COUNTED, false);
}

function translate(body: Json, allowed: ReadonlySet<string>, generates: boolean): Json {
  for (const key of Object.keys(body))
    if (!allowed.has(key)) {
      if (key === 'top_k') bad(key, 'top_k has no equivalent here; leave it out.', 'unsupported_parameter');
      bad(key, 'Extra inputs are not permitted', 'unsupported_parameter');
    }
  if (typeof body.model !== 'string' || !body.model) bad('model', 'Field required', 'missing_required_parameter');
  const chat: Json = { model: body.model };
  if (generates) {
    if (body.max_tokens === undefined) bad('max_tokens', 'Field required', 'missing_required_parameter');
    if (body.max_tokens === 0)
      bad('max_tokens', 'max_tokens 0 (prompt-cache pre-warming) is not supported here; ask for at least 1.');
    if (!isPositiveInt(body.max_tokens)) bad('max_tokens', 'must be a whole number >= 1.');
    chat.max_tokens = body.max_tokens;
  }
  checkOptions(body);
  chat.messages = [...systemMessages(body.system), ...conversation(body.messages)];
  if (body.tools !== undefined) chat.tools = tools(body.tools);
  Object.assign(chat, toolChoice(body.tool_choice));
  if (!generates) return chat;
  if (body.stop_sequences !== undefined) {
    const stops = body.stop_sequences;
    if (!Array.isArray(stops) || !stops.every((s) => typeof s === 'string'))
      bad('stop_sequences', 'must be an array of strings.');
    if (stops.length) chat.stop = stops;
  }
  for (const [field, max] of [
    ['temperature', 1],
    ['top_p', 1],
  ] as const) {
    const v = body[field];
    if (v === undefined) continue;
    if (typeof v !== 'number' || v < 0 || v > max) bad(field, `must be a number from 0 to ${max}.`);
    chat[field] = v;
  }
  const userId = readMetadata(body.metadata);
  if (userId !== undefined) chat.user = userId;
  if (body.stream !== undefined && typeof body.stream !== 'boolean') bad('stream', 'must be true or false.');
  if (body.stream === true) {
    chat.stream = true;
    chat.stream_options = { include_usage: true };
  }
  return chat;
}

/** The options that are dropped or refused, as the list at the top says. */
function checkOptions(body: Json): void {
  const thinking = body.thinking;
  if (thinking !== undefined && !(isRecord(thinking) && thinking.type === 'disabled'))
    bad('thinking', 'extended thinking is not supported here; leave thinking out.', 'unsupported_parameter');
  if (body.speed !== undefined && body.speed !== null && body.speed !== 'standard')
    bad('speed', `speed '${String(body.speed)}' is priced above the standard rate and is not accepted here.`);
  if (body.service_tier !== undefined && body.service_tier !== 'auto' && body.service_tier !== 'standard_only')
    bad('service_tier', "must be 'auto' or 'standard_only'.");
}

function readMetadata(metadata: unknown): string | undefined {
  if (metadata === undefined || metadata === null) return undefined;
  if (!isRecord(metadata)) bad('metadata', 'must be an object.');
  for (const key of Object.keys(metadata))
    if (key !== 'user_id') bad(`metadata.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
  const id = metadata.user_id;
  if (id === undefined || id === null) return undefined;
  if (typeof id !== 'string') bad('metadata.user_id', 'must be a string.');
  return id;
}

/** The text of a string or of an array of text blocks. */
function textOf(content: unknown, at: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) bad(at, 'must be a string or an array of text blocks.');
  return content.map((block, i) => textBlock(block, `${at}.${i}`)).join('');
}

function textBlock(block: unknown, at: string): string {
  if (!isRecord(block) || block.type !== 'text')
    bad(`${at}.type`, "only 'text' blocks are accepted here.", 'unsupported_content_block');
  if (typeof block.text !== 'string') bad(`${at}.text`, 'Field required', 'missing_required_parameter');
  if (Array.isArray(block.citations) && block.citations.length)
    bad(`${at}.citations`, 'citations are not supported here.', 'unsupported_parameter');
  return block.text;
}

function systemMessages(system: unknown): Json[] {
  if (system === undefined || system === null) return [];
  const text = textOf(system, 'system');
  return text ? [{ role: 'system', content: text }] : [];
}

function conversation(messages: unknown): Json[] {
  if (!Array.isArray(messages) || messages.length === 0)
    bad('messages', 'must be a non-empty array.', 'missing_required_parameter');
  return messages.flatMap((m, i) => message(m, `messages.${i}`));
}

function message(m: unknown, at: string): Json[] {
  if (!isRecord(m)) bad(at, 'must be an object.');
  const { role, content } = m;
  if (role !== 'user' && role !== 'assistant' && role !== 'system') bad(`${at}.role`, "must be 'user' or 'assistant'.");
  if (role === 'system') return [{ role, content: textOf(content, `${at}.content`) }];
  if (typeof content === 'string') return [{ role, content }];
  if (!Array.isArray(content)) bad(`${at}.content`, 'must be a string or an array of content blocks.');
  return role === 'user' ? userTurn(content, `${at}.content`) : [assistantTurn(content, `${at}.content`)];
}

/** A user turn: its tool results first, as `tool` messages (they answer the turn before), then the rest. */
function userTurn(blocks: unknown[], at: string): Json[] {
  const results: Json[] = [];
  const parts: Json[] = [];
  blocks.forEach((block, j) => {
    const here = `${at}.${j}`;
    if (!isRecord(block)) bad(here, 'must be an object.');
    if (block.type === 'tool_result') results.push(toolResult(block, here));
    else if (block.type === 'image') parts.push(imagePart(block, here));
    else if (block.type === 'text') parts.push({ type: 'text', text: textBlock(block, here) });
    else unsupported(block, here, 'user');
  });
  return parts.length ? [...results, { role: 'user', content: parts }] : results;
}

function assistantTurn(blocks: unknown[], at: string): Json {
  let text = '';
  const calls: Json[] = [];
  blocks.forEach((block, j) => {
    const here = `${at}.${j}`;
    if (!isRecord(block)) bad(here, 'must be an object.');
    if (block.type === 'text') text += textBlock(block, here);
    else if (block.type === 'tool_use') {
      if (typeof block.id !== 'string' || typeof block.name !== 'string')
        bad(here, 'a tool_use block needs an id and a name.', 'missing_required_parameter');
      if (!isRecord(block.input)) bad(`${here}.input`, 'must be an object.');
      calls.push({
        id: block.id,
        type: 'function',
        function: { name: block.name, arguments: JSON.stringify(block.input) },
      });
    } else unsupported(block, here, 'assistant');
  });
  return {
    role: 'assistant',
    content: text || (calls.length ? null : ''),
    ...(calls.length ? { tool_calls: calls } : {}),
  };
}

function unsupported(block: Json, at: string, role: string): never {
  const type = String(block.type);
  if (type === 'tool_use' || type === 'tool_result' || type === 'image')
    bad(`${at}.type`, `a ${type} block cannot be in a ${role} message.`);
  bad(
    `${at}.type`,
    `'${type}' blocks are not supported here: send text, image, tool_use and tool_result blocks.`,
    'unsupported_content_block',
  );
}

function imagePart(block: Json, at: string): Json {
  const url = isRecord(block.source) ? imageUrlOf(block.source) : undefined;
  if (url === undefined)
    bad(`${at}.source`, 'an image source must be base64 (media_type, data) or url; file sources are not supported.');
  return { type: 'image_url', image_url: { url } };
}

function toolResult(block: Json, at: string): Json {
  if (typeof block.tool_use_id !== 'string') bad(`${at}.tool_use_id`, 'Field required', 'missing_required_parameter');
  const text = block.content === undefined ? '' : textOf(block.content, `${at}.content`);
  return {
    role: 'tool',
    tool_call_id: block.tool_use_id,
    content: block.is_error === true ? `[tool error] ${text}` : text,
  };
}

function tools(list: unknown): Json[] {
  if (!Array.isArray(list)) bad('tools', 'must be an array.');
  return list.map((tool, i) => {
    const at = `tools.${i}`;
    if (!isRecord(tool)) bad(at, 'must be an object.');
    if (tool.type !== undefined && tool.type !== null && tool.type !== 'custom')
      bad(
        `${at}.type`,
        `'${String(tool.type)}' is a server or Anthropic-defined tool, which is not supported here: define your own tools.`,
        'unsupported_tool',
      );
    for (const key of Object.keys(tool))
      if (!TOOL_FIELDS.has(key)) bad(`${at}.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
    if (typeof tool.name !== 'string' || !tool.name) bad(`${at}.name`, 'Field required', 'missing_required_parameter');
    if (!isRecord(tool.input_schema)) bad(`${at}.input_schema`, 'Field required', 'missing_required_parameter');
    return {
      type: 'function',
      function: {
        name: tool.name,
        ...(typeof tool.description === 'string' ? { description: tool.description } : {}),
        parameters: tool.input_schema,
        ...(typeof tool.strict === 'boolean' ? { strict: tool.strict } : {}),
      },
    };
  });
}

function toolChoice(choice: unknown): Json {
  if (choice === undefined || choice === null) return {};
  if (!isRecord(choice) || typeof choice.type !== 'string') bad('tool_choice', 'must be an object with a type.');
  const parallel = choice.disable_parallel_tool_use === true ? { parallel_tool_calls: false } : {};
  if (choice.type === 'tool') {
    if (typeof choice.name !== 'string') bad('tool_choice.name', 'Field required', 'missing_required_parameter');
    return { tool_choice: { type: 'function', function: { name: choice.name } }, ...parallel };
  }
  const chat = chatToolChoiceOf(choice.type);
  if (chat === undefined) bad('tool_choice.type', "must be 'auto', 'any', 'tool' or 'none'.");
  return { tool_choice: chat, ...parallel };
}
