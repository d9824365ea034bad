/**
 * The upstream kinds behind the canonical form: an OpenAI-compatible base URL (a key in Secrets
 * Manager, or none), an Anthropic-compatible base URL (the key as x-api-key), or Amazon Bedrock
 * (Converse, signed with the function's role: no stored key). Each answers the canonical chat
 * request in the canonical form, so the relay and settlement never know which one it was.
 */
import { callAnthropic, type AnthropicUpstreamOptions } from './anthropic-upstream';
import { chatToMessagesRequest } from './anthropic-request';
import { type BedrockUpstreamOptions, callBedrock } from './bedrock/upstream';
import { toConverse } from './bedrock/converse';
import { callUpstream, type UpstreamOptions } from './upstream';

/** The model id to call the upstream with, for a client's model name (ModelPrice.upstreamModel). @default the name */
type Renamed = { readonly modelId?: (model: string) => string };

export type Upstream =
  | (UpstreamOptions & Renamed & { readonly kind?: 'openai' })
  | (AnthropicUpstreamOptions & Renamed & { readonly kind: 'anthropic' })
  | (BedrockUpstreamOptions & { readonly kind: 'bedrock' });

/** What each kind serves: an OpenAI-compatible upstream every route; the others chat only. */
export const servesEmbeddings = (upstream: Upstream): boolean => (upstream.kind ?? 'openai') === 'openai';

/**
 * Refuses (RequestError, a 400 with nothing debited) a canonical chat body this upstream cannot
 * be sent, before anything is reserved: the translation the call would make, made early.
 */
export function checkTranslatable(upstream: Upstream, body: Readonly<Record<string, unknown>>): void {
  // The cap is set later (the one reserved); any cap stands in for it here.
  const { max_tokens: _tokens, max_completion_tokens: _completion, ...rest } = body;
  if (upstream.kind === 'bedrock') toConverse({ ...rest, max_tokens: 1 });
  else if (upstream.kind === 'anthropic') chatToMessagesRequest({ ...rest, max_tokens: 1 });
}

/** Sends the canonical request to the upstream; the answer is in the canonical form (see callUpstream's contract). */
export function send(
  upstream: Upstream,
  route: string,
  body: Record<string, unknown>,
  abort: AbortController,
  requestId?: string,
): Promise<Response> {
  // Bedrock's adapter maps the name itself (its answers name the client's model, never an ARN).
  if (upstream.kind === 'bedrock') return callBedrock(upstream, body, abort, requestId);
  const named = upstream.modelId ? { ...body, model: upstream.modelId(String(body.model)) } : body;
  if (upstream.kind === 'anthropic') return callAnthropic(upstream, named, abort, requestId);
  return callUpstream(upstream, route, named, abort, requestId);
}
