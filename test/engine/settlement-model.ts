/**
 * Settlement (debits and refunds) written again from docs/design.md's rules, with arithmetic of its
 * own, for the differential test (store-model.test.ts): the store runs lambda/engine/bucket.ts's
 * adjust, this model does not, so a mistake in either shows as a disagreement.
 *
 * A token or leaky bucket is its theoretical arrival time `tat` in whole ticks (M ticks per unit,
 * M = max(1, ceil(1e6 / rate)); the present read as whole ticks, rounded down). A debit of d
 * charges ceil(d * M) ticks from max(tat, now). A refund of k units of an admission gives back
 * at most floor(k * M) ticks, and never what has refilled since: only the part of the admission's
 * stretch of the timeline that still lies ahead of now. That stretch ends at the later of the
 * admission's time plus its cost and the tat its write returned, less what other refunds moved
 * since (the bucket counts every tick ever refunded). Never past full (tat >= now).
 *
 * A sliding window refunds the slot the admission was counted in, while the ring still holds it,
 * at most what that slot holds; a debit counts like an admission that is never refused.
 */
import { type BucketState, decide } from '../../lambda/engine/bucket';
import { LIMITER_EPOCH_MS } from '../../lambda/engine/gcra';
import { type Limit, slidingWindow } from '../../lambda/engine/limits';

/** What the settlement knows of the admission it settles. */
export interface Admitted {
  readonly atMs: number;
  readonly cost: number;
  /** The bucket right after the admission's write (absent: not known). */
  readonly state?: BucketState;
}

export interface Settled {
  readonly next: BucketState | undefined;
  /** For a refund: what it asked, and what the bound let through, in the bucket's own units (ticks, or slot units). */
  readonly asked?: number;
  readonly given?: number;
}

export function settleModel(
  limit: Limit,
  state: BucketState | undefined,
  nowMs: number,
  delta: number,
  admitted: Admitted,
): Settled {
  if (limit.shape === 'sliding_window') {
    if (delta > 0) {
      // Counted as an admission of `delta` that nothing refuses.
      const never = slidingWindow(Number.MAX_SAFE_INTEGER / 4, limit.windowMs, limit.subWindows);
      return { next: decide(never, state, nowMs, delta).next };
    }
    const ring = limit.subWindows + 3;
    const slot = Math.floor((admitted.atMs * limit.subWindows) / limit.windowMs);
    const head = state?.head;
    if (head === undefined || slot > head || slot <= head - ring) return { next: state, asked: -delta, given: 0 };
    const at = ((slot % ring) + ring) % ring;
    const slots = [...(state?.slots ?? [])];
    const given = Math.min(-delta, slots[at] ?? 0);
    if (given <= 0) return { next: state, asked: -delta, given: 0 };
    slots[at] = (slots[at] ?? 0) - given;
    const counted = slot >= head - limit.subWindows ? given : 0;
    return { next: { ...state, slots, total: (state?.total ?? 0) - counted }, asked: -delta, given };
  }
  const rate = limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond;
  const perUnit = Math.max(1, Math.ceil(1_000_000 / rate));
  const tick = (ms: number) => Math.floor(((ms - LIMITER_EPOCH_MS) * rate * perUnit) / 1000);
  const now = tick(nowMs);
  if (delta > 0) return { next: { ...state, tat: Math.max(state?.tat ?? now, now) + Math.ceil(delta * perUnit) } };
  const asked = Math.floor(-delta * perUnit);
  if (state?.tat === undefined) return { next: state, asked, given: 0 };
  const movedSince = (state.refunded ?? 0) - (admitted.state?.refunded ?? 0);
  const ownEnd = tick(admitted.atMs) + Math.ceil(admitted.cost * perUnit);
  const writtenEnd = admitted.state?.tat === undefined ? ownEnd : admitted.state.tat - Math.max(0, movedSince);
  const given = Math.max(0, Math.min(asked, Math.max(ownEnd, writtenEnd) - now, state.tat - now));
  if (given === 0) return { next: state, asked, given };
  return { next: { ...state, tat: state.tat - given, refunded: (state.refunded ?? 0) + given }, asked, given };
}
