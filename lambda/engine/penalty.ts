import type { PenaltyPolicy } from './plans';

/** The penalty box lives in the user's layer item, in these attributes. */
export const PENALTY_ATTR = { until: 'pn_until', strikes: 'pn_n', last: 'pn_last', code: 'pn_code' } as const;

export interface PenaltyState {
  readonly strikes?: number;
  readonly last?: number;
  readonly until?: number;
}

export interface Escalation {
  readonly strikes: number;
  readonly last: number;
  /** Set once the identity is in the box: denied without touching any bucket until then. */
  readonly until?: number;
  readonly retryAfterMs: number;
}

/**
 * A denial at `now` whose limit alone says wait `naturalRetryMs`. Denials closer together than
 * policy.windowMs add up; past `threshold` of them, Retry-After doubles with each one
 * (baseMs, 2 x baseMs, ...) up to maxMs. A quiet window starts the count again.
 */
export function escalate(state: PenaltyState, now: number, naturalRetryMs: number, policy: PenaltyPolicy): Escalation {
  const recent = state.last !== undefined && now - state.last <= policy.windowMs;
  const strikes = recent ? (state.strikes ?? 0) + 1 : 1;
  if (strikes <= policy.threshold) return { strikes, last: now, retryAfterMs: naturalRetryMs };
  const penalty = Math.min(policy.maxMs, policy.baseMs * 2 ** (strikes - policy.threshold - 1));
  const retryAfterMs = Math.max(naturalRetryMs, penalty);
  return { strikes, last: now, until: now + retryAfterMs, retryAfterMs };
}
