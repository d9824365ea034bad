/** The client dialects by route: every other AI route speaks the canonical form (OpenAI's). */
import type { ClientDialect } from '../dialect';
import { responsesDialect } from './responses';

export const DIALECTS: Readonly<Record<string, ClientDialect>> = {
  '/v1/responses': responsesDialect,
};

export const dialectFor = (route: string): ClientDialect | undefined =>
  Object.hasOwn(DIALECTS, route) ? DIALECTS[route] : undefined;
