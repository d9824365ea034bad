/**
 * The proxy speaks three dialects to clients (OpenAI Chat Completions, OpenAI Responses,
 * Anthropic Messages) and several to upstreams (OpenAI-compatible, Amazon Bedrock's Converse,
 * Anthropic-compatible), through one canonical form in the middle: an OpenAI Chat Completions
 * request, answered as a `chat.completion` JSON body or a stream of `chat.completion.chunk` SSE
 * events ending with a usage chunk. Every hard-cap rule (the input bound, the output cap sent
 * upstream, the relay's floors, settlement at the bound) is applied once, on the canonical form,
 * whatever the client and the upstream speak (docs/design.md, "Dialects").
 *
 * A client dialect translates its route's request into a canonical chat body (refusing, with a
 * RequestError naming its own field, what cannot be translated or priced), and the canonical
 * answer back into what its clients expect, including errors.
 */

/** A canonical chat.completion.chunk, or an `{error}` event, as parsed from one SSE `data:` line. */
export type ChatChunk = Record<string, unknown>;

/** Turns the canonical stream into the dialect's SSE events, one chunk at a time. */
export interface StreamTranslator {
  /**
   * One canonical chunk -> the dialect's complete SSE events (`event: x\ndata: {...}\n\n` each), in
   * order. An `{error}` chunk (the proxy's own, when the answer broke off) becomes the dialect's
   * error event, in sequence with the rest of the stream.
   */
  chunk(chunk: ChatChunk): string[];
  /**
   * The canonical stream is over. `complete`: every choice finished (and the usage chunk, if any,
   * came before); otherwise it broke off (the client is told by an error event the proxy sends
   * through `error`). Returns the closing events still owed (e.g. Anthropic's message_stop).
   */
  end(complete: boolean): string[];
}

/** An error as the proxy states it (OpenAI's shape: message, type, code, param). */
export interface ProxyError {
  readonly message: string;
  readonly type: string;
  readonly code: string | null;
  readonly param?: string | null;
}

export interface ClientDialect {
  /** e.g. 'messages': metrics and logs name it. */
  readonly name: string;
  /**
   * The route's request body (already parsed JSON, an object) -> a canonical chat body with the
   * same model, the output cap in `max_tokens` or `max_completion_tokens`, and `stream`. Throws
   * RequestError (lambda/proxy/validate.ts) naming the dialect's own field for what is wrong or
   * not supported. The result is then validated as a chat request like any other.
   */
  toChat(body: Record<string, unknown>): Record<string, unknown>;
  /** A canonical chat.completion answer -> the dialect's JSON answer. `request` is the client's own body. */
  fromChat(completion: Record<string, unknown>, request: Record<string, unknown>): Record<string, unknown>;
  /** A translator for one streamed answer. `inputTokens`: the proxy's pre-count, for events that announce it first. */
  stream(request: Record<string, unknown>, inputTokens: number): StreamTranslator;
  /** An error body as this dialect's clients read it, for an answer with this status. */
  errorBody(status: number, error: ProxyError): string;
  /** An error inside a stream already under way, as one complete SSE event. */
  errorEvent(error: ProxyError): string;
  /** Headers this dialect's clients read, derived from the proxy's own (e.g. anthropic-ratelimit-*). */
  headers(headers: Readonly<Record<string, string>>): Record<string, string>;
}
