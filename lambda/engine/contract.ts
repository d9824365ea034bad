import type { Decision } from './decision';
import { type Layer, type LimitSpec, periodSeconds } from './plans';

/** One limit's outcome within a layered decision. */
export interface LimitOutcome {
  readonly layer: Layer;
  readonly spec: LimitSpec;
  /** tenant_tokens_per_day, user_requests_per_minute, ... */
  readonly code: string;
  readonly decision: Decision;
}

const seconds = (ms: number): number => Math.max(0, Math.ceil(ms / 1000));

/** The limit that leaves the least room (smallest share remaining); the earliest layer on ties. */
export function mostConstraining(limits: readonly LimitOutcome[]): LimitOutcome | undefined {
  let best: LimitOutcome | undefined;
  for (const l of limits) {
    if (l.spec.shadow) continue;
    if (!best || l.decision.remaining / l.decision.limit < best.decision.remaining / best.decision.limit) best = l;
  }
  return best;
}

/**
 * The headers every answer carries: X-RateLimit-* for the most constraining limit, and the IETF
 * draft fields: RateLimit-Policy naming every limit (q = quota, w = window in seconds) and
 * RateLimit for the most constraining one (r = remaining, t = seconds to reset).
 */
export function rateLimitHeaders(
  limits: readonly LimitOutcome[],
  focus = mostConstraining(limits),
): Record<string, string> {
  const headers: Record<string, string> = {};
  const enforced = limits.filter((l) => !l.spec.shadow);
  if (enforced.length) {
    headers['RateLimit-Policy'] = enforced
      .map((l) => `"${l.code}";q=${l.decision.limit};w=${Math.round(periodSeconds(l.spec.limit))}`)
      .join(', ');
  }
  if (focus) {
    headers['X-RateLimit-Limit'] = String(focus.decision.limit);
    headers['X-RateLimit-Remaining'] = String(focus.decision.remaining);
    headers['X-RateLimit-Reset'] = String(seconds(focus.decision.resetMs));
    headers.RateLimit = `"${focus.code}";r=${focus.decision.remaining};t=${seconds(focus.decision.resetMs)}`;
  }
  return headers;
}

/** Retry-After: whole seconds, at least 1. */
export const retryAfterSeconds = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));

export type ErrorType =
  | 'rate_limit_exceeded'
  | 'invalid_request_error'
  | 'authentication_error'
  | 'service_unavailable'
  | 'api_error';

/** OpenAI's error shape, so OpenAI SDKs recognise it (and back off on 429). */
export function errorBody(message: string, type: ErrorType, code: string | null, param: string | null = null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

/** What a caller is told when its tenant's configuration is broken (answered with 500: the operators must act). */
export const MISCONFIGURED = {
  tenant_config_invalid: 'This tenant’s limits are misconfigured; the operators have been told.',
  tenant_unknown: 'This key’s tenant is not set up; the operators have been told.',
  plan_unknown: 'This tenant’s plan is not configured; the operators have been told.',
} as const;
