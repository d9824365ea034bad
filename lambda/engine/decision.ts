/** The outcome of one check against one limit. Over the limit is a result, not an exception. */
export interface Decision {
  readonly allowed: boolean;
  /** The limit's headline number (capacity, or N of a sliding window). */
  readonly limit: number;
  /** What could still be spent right now, 0..limit. */
  readonly remaining: number;
  /** Milliseconds until the limit is wholly available again. */
  readonly resetMs: number;
  /** Milliseconds to wait before the same cost can be admitted; 0 when allowed. */
  readonly retryAfterMs: number;
  /** True when the cost can never fit, however long the caller waits. */
  readonly exceedsLimit?: boolean;
}

export function denied(
  limit: number,
  remaining: number,
  resetMs: number,
  retryAfterMs: number,
  exceedsLimit = false,
): Decision {
  const base = {
    allowed: false,
    limit,
    remaining,
    resetMs: Math.max(0, resetMs),
    retryAfterMs: Math.max(0, retryAfterMs),
  };
  return exceedsLimit ? { ...base, exceedsLimit } : base;
}
