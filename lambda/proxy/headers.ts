import { type LimitOutcome, mostConstraining, rateLimitHeaders } from '../engine/contract';

/** The authorizer's numbers, as API Gateway hands them to the integration (strings). */
export type AuthorizerContext = Readonly<Record<string, string | number | boolean | null | undefined>>;

/** OpenAI's reset format: 1s, 6m0s, 20ms. */
export function openAiDuration(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  if (whole < 1000) return `${whole}ms`;
  const total = Math.ceil(whole / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h ? `${h}h${m}m${s}s` : m ? `${m}m${s}s` : `${s}s`;
}

const num = (v: unknown): number | undefined => (v === undefined || v === null || v === '' ? undefined : Number(v));

/**
 * Headers every proxy answer carries: X-RateLimit-* and the IETF RateLimit fields for the most
 * constraining limit (the authorizer's request limits and the reservation's token limits
 * together), RateLimit-Policy naming every limit, and OpenAI's x-ratelimit-*-requests /
 * x-ratelimit-*-tokens so OpenAI-aware clients can pace themselves.
 */
export function proxyHeaders(
  auth: AuthorizerContext,
  reservation: readonly LimitOutcome[] = [],
): Record<string, string> {
  const headers: Record<string, string> = {};
  const policy = String(auth.policy ?? '');
  if (policy) headers['RateLimit-Policy'] = policy;

  const authLimit = num(auth.limit);
  const authRemaining = num(auth.remaining);
  const fromAuth =
    authLimit !== undefined && authRemaining !== undefined
      ? {
          limit: authLimit,
          remaining: authRemaining,
          reset: num(auth.reset) ?? 0,
          rateLimit: String(auth.rateLimit ?? ''),
        }
      : undefined;
  const tokens = mostConstraining(reservation.filter((l) => l.spec.counts !== 'requests'));
  // The reservation's most constraining limit, in the same format the authorizer's context carries.
  const own = tokens ? rateLimitHeaders([tokens], tokens) : undefined;
  const fromReservation = own
    ? {
        limit: Number(own['X-RateLimit-Limit']),
        remaining: Number(own['X-RateLimit-Remaining']),
        reset: Number(own['X-RateLimit-Reset']),
        rateLimit: own.RateLimit ?? '',
      }
    : undefined;
  const focus =
    fromAuth && fromReservation
      ? fromReservation.remaining / fromReservation.limit < fromAuth.remaining / fromAuth.limit
        ? fromReservation
        : fromAuth
      : (fromReservation ?? fromAuth);
  if (focus) {
    headers['X-RateLimit-Limit'] = String(focus.limit);
    headers['X-RateLimit-Remaining'] = String(focus.remaining);
    headers['X-RateLimit-Reset'] = String(focus.reset);
    if (focus.rateLimit) headers.RateLimit = focus.rateLimit;
  }
  const reqLimit = num(auth.requestsLimit);
  if (reqLimit !== undefined) {
    headers['x-ratelimit-limit-requests'] = String(reqLimit);
    headers['x-ratelimit-remaining-requests'] = String(num(auth.requestsRemaining) ?? 0);
    headers['x-ratelimit-reset-requests'] = openAiDuration(num(auth.requestsResetMs) ?? 0);
  }
  if (tokens) {
    headers['x-ratelimit-limit-tokens'] = String(Math.floor(tokens.decision.limit));
    headers['x-ratelimit-remaining-tokens'] = String(tokens.decision.remaining);
    headers['x-ratelimit-reset-tokens'] = openAiDuration(tokens.decision.resetMs);
  }
  if (auth.shadow) headers['X-RateLimit-Shadow'] = String(auth.shadow);
  return headers;
}
