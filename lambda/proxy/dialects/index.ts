/** The client dialects by route: every other AI route speaks the canonical form (OpenAI's). */
import type { ClientDialect } from '../dialect';
import { messagesDialect } from './messages';
import { responsesDialect } from './responses';

/** Anthropic's token count, served with /v1/messages (and by its configuration). */
export const COUNT_TOKENS_ROUTE = '/v1/messages/count_tokens';

export const DIALECTS: Readonly<Record<string, ClientDialect>> = {
  '/v1/responses': responsesDialect,
  '/v1/messages': messagesDialect,
  [COUNT_TOKENS_ROUTE]: messagesDialect,
};

export const dialectFor = (route: string): ClientDialect | undefined =>
  Object.hasOwn(DIALECTS, route) ? DIALECTS[route] : undefined;
