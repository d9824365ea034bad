/**
 * Settings every AWS client in the functions gets. The installed @smithy/node-http-handler only
 * logs a warning when `requestTimeout` passes unless `throwOnRequestTimeout` is set, so a hung
 * endpoint would hold a request until Lambda's own timeout; with it, a call fails in time and
 * each caller's deadline (an abort signal over all attempts) bounds the whole operation.
 */
import type { RetryStrategyV2, RetryToken } from '@smithy/types';

export interface ClientTimeouts {
  /** Time to open a connection. */
  readonly connectionTimeoutMs: number;
  /** Time for one attempt's answer. */
  readonly requestTimeoutMs: number;
  /** Time for one operation, all its attempts included (an abort signal). */
  readonly deadlineMs: number;
}

/** What the deployed functions use (the classes' own defaults are looser, for scripts and tests on a busy machine). */
export const CLIENT_TIMEOUTS = {
  dynamodb: { connectionTimeoutMs: 500, requestTimeoutMs: 800, deadlineMs: 1_000 },
  ssm: { connectionTimeoutMs: 300, requestTimeoutMs: 400, deadlineMs: 500 },
  secretsManager: { connectionTimeoutMs: 500, requestTimeoutMs: 1_500, deadlineMs: 2_000 },
  eventBridge: { connectionTimeoutMs: 500, requestTimeoutMs: 1_000, deadlineMs: 1_500 },
} as const satisfies Record<string, ClientTimeouts>;

/**
 * Two attempts at most, as the SDK's standard strategy makes them (a short jittered pause), but
 * never after throttling. DynamoDB throttles an item past its throughput, and the SDK's pause
 * after throttling (up to a second) would outlive a function's one-second deadline, turning a
 * hot item into a timeout, an outage. Failing at once, the throttling reaches the limiter, which
 * answers 429 (ItemThrottledError). Errors the caller made (a failed condition) are not retried.
 */
export function retryOnceUnlessThrottled(maxAttempts = 2): RetryStrategyV2 {
  const token = (count: number, delayMs: number): RetryToken => ({
    getRetryCount: () => count,
    getRetryDelay: () => delayMs,
  });
  return {
    acquireInitialRetryToken: async () => token(0, 0),
    refreshRetryTokenForRetry: async (previous, info) => {
      const next = previous.getRetryCount() + 1;
      if (next >= maxAttempts || info.errorType === 'THROTTLING' || info.errorType === 'CLIENT_ERROR') {
        throw info.error ?? new Error('not retried');
      }
      return token(next, Math.round(Math.random() * 100 * 2 ** next));
    },
    recordSuccess: () => {},
  };
}

/** Client configuration: two attempts at most (none after throttling), timeouts that throw. */
export function clientConfig(timeouts: ClientTimeouts) {
  // Which function calls (CloudTrail shows it as part of the user agent; the IAM test attributes calls by it).
  const fn = process.env.LIMITER_FUNCTION;
  return {
    ...(fn ? { customUserAgent: `llm-rate-limiter/${fn}` } : {}),
    retryStrategy: retryOnceUnlessThrottled(2),
    requestHandler: {
      connectionTimeout: timeouts.connectionTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  };
}
