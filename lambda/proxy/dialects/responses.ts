/**
 * OpenAI's Responses API (`POST /v1/responses`) as a client dialect: a request is translated to
 * the canonical chat body (responses-request.ts, with the table of what is translated and what
 * is refused), and the canonical answer back into a Response object (responses-object.ts) or
 * the Responses stream's events (responses-stream.ts). Errors keep OpenAI's shape, as the
 * OpenAI SDKs read them on this route too: https://platform.openai.com/docs/guides/error-codes.
 */
import type { ClientDialect } from '../dialect';
import { finishedResponse, itemsOf, newId, responseShell } from './responses-object';
import { responsesToChat } from './responses-request';
import { errorFields, ResponsesStream, sseEvent } from './responses-stream';

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export const responsesDialect: ClientDialect = {
  name: 'responses',
  toChat: responsesToChat,
  fromChat(completion, request) {
    const choice = Array.isArray(completion.choices) ? completion.choices.find(isRecord) : undefined;
    const message = isRecord(choice?.message) ? choice.message : {};
    const createdAt = typeof completion.created === 'number' ? completion.created : Math.floor(Date.now() / 1000);
    return finishedResponse(
      responseShell(request, newId('resp'), createdAt),
      itemsOf(message),
      choice?.finish_reason,
      completion.usage,
      completion.service_tier,
    );
  },
  stream: (request) => new ResponsesStream(request),
  errorBody: (_status, error) =>
    JSON.stringify({
      error: { message: error.message, type: error.type, param: error.param ?? null, code: error.code },
    }),
  // Without the stream's state this cannot continue its numbering: an error the translator is
  // given as an `{error}` chunk is numbered in sequence (and fails the Response), this one is 0.
  errorEvent: (error) => sseEvent({ ...errorFields(error), sequence_number: 0 }),
  headers: () => ({}),
};
