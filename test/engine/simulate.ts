import { type BucketState, decide } from '../../lambda/engine/bucket';
import type { Decision } from '../../lambda/engine/decision';
import type { Limit } from '../../lambda/engine/limits';
import { moment } from '../../lambda/engine/moment';

export interface Arrival {
  /** ms since the previous arrival */
  readonly gapMs: number;
  readonly cost: number;
  /** How far the deciding container's clock is from true time (ms). */
  readonly clockErrorMs?: number;
}

export interface Outcome {
  readonly at: number;
  readonly cost: number;
  readonly decision: Decision;
  readonly before: BucketState | undefined;
  readonly after: BucketState | undefined;
}

/**
 * Runs a schedule (in true time; each decision by a container whose clock is off by clockErrorMs) through the
 * pure decision function, applying each write as the store would.
 */
export function simulate(limit: Limit, arrivals: readonly Arrival[], skewMs = 0, start = 1_800_000_000_000): Outcome[] {
  let state: BucketState | undefined;
  let now = start;
  const out: Outcome[] = [];
  for (const { gapMs, cost, clockErrorMs = 0 } of arrivals) {
    now += gapMs;
    const plan = decide(limit, state, moment(now + clockErrorMs, skewMs), cost);
    const before = state;
    if (plan.write) state = plan.next;
    out.push({ at: now, cost, decision: plan.decision, before, after: state });
  }
  return out;
}

/** For every pair of admissions a <= b: the cost admitted from a to b, inclusive, and the time between. */
export function* admittedSpans(
  outcomes: readonly Outcome[],
): Generator<{ cost: number; spanMs: number; first: Outcome; last: Outcome }> {
  const admitted = outcomes.filter((o) => o.decision.allowed);
  for (let i = 0; i < admitted.length; i++) {
    let cost = 0;
    for (let j = i; j < admitted.length; j++) {
      cost += admitted[j]!.cost;
      yield { cost, spanMs: admitted[j]!.at - admitted[i]!.at, first: admitted[i]!, last: admitted[j]! };
    }
  }
}
