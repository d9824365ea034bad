/**
 * What an honest provider bills for a chat request, computed independently of the proxy's counter
 * (gpt-tokenizer, not js-tiktoken): messages as OpenAI formats them (<|im_start|>role<|im_sep|>
 * content<|im_end|>, so 3 per message, 1 per name, 3 to prime the reply), every other billed
 * field as the tokens of its JSON text, tool definitions as the tokens of their JSON plus the
 * framing a provider renders them in, and non-text parts at the most the operators said the
 * provider bills for them. Text is counted in o200k_base (the gpt-4o family's encoding) unless
 * another count is given (cl100k_base for gpt-4, say).
 */
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import type { PartTokens } from '../../lambda/engine/plans';

/** gpt-tokenizer's options to count special-token text as text (never to throw on it). */
export const noSpecials = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
/** Tokens in `text` by gpt-tokenizer's o200k_base, special-token text counted as text. */
export const o200kTokens = (text: string): number => encode(text, noSpecials).length;

/**
 * What a provider bills around tool definitions, an empty list included: the header and footer it
 * renders them in (TypeScript-like types in a namespace; the fullest rendering known, with the
 * "# Tools" headings) and the 9 tokens more that a request with functions carries, measured
 * against OpenAI's API by hmarr/openai-chat-tokens (src/index.ts, functionsTokensEstimate).
 */
const TOOL_RENDERING = '# Tools\n\n## functions\n\nnamespace functions {\n\n} // namespace functions';
const TOOL_FIELDS = new Set(['tools', 'functions']);

/** Sampling parameters no provider bills as input (the rest of the body is billed). */
const UNBILLED = new Set([
  'model',
  'messages',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'n',
  'temperature',
  'top_p',
  'seed',
  'user',
  'metadata',
  'prediction',
]);

export function honestInputBill(
  body: Record<string, unknown>,
  parts: PartTokens = {},
  tokens: (text: string) => number = o200kTokens,
): number {
  const jsonTokens = (value: unknown) => tokens(JSON.stringify(value) ?? '');
  let total = 3;
  for (const m of body.messages as Record<string, unknown>[]) {
    const { role, content, name, ...rest } = m;
    total += 3 + tokens(String(role));
    if (typeof content === 'string') total += tokens(content);
    else if (Array.isArray(content)) {
      for (const part of content as Record<string, unknown>[]) {
        const { type, text, refusal, ...more } = part;
        if (type === 'text') total += tokens(String(text)) + (Object.keys(more).length ? jsonTokens(more) : 0);
        else if (type === 'refusal')
          total += tokens(String(refusal)) + (Object.keys(more).length ? jsonTokens(more) : 0);
        else if (type === 'image_url')
          total +=
            ((more.image_url as { detail?: string } | undefined)?.detail === 'low'
              ? (parts.imageLowDetail ?? parts.image)
              : parts.image) ?? 0;
        else if (type === 'input_audio') total += parts.audio ?? 0;
        else if (type === 'file') total += parts.file ?? 0;
      }
    }
    if (typeof name === 'string' && name) total += 1 + tokens(name);
    for (const [key, value] of Object.entries(rest)) total += jsonTokens({ [key]: value });
  }
  for (const [key, value] of Object.entries(body)) {
    if (TOOL_FIELDS.has(key))
      total += tokens(TOOL_RENDERING) + 9 + jsonTokens(value); // rendered as types, not under its key
    else if (!UNBILLED.has(key)) total += jsonTokens({ [key]: value });
  }
  return total;
}
