/**
 * Settings every AWS client in the functions gets. The installed @smithy/node-http-handler only
 * logs a warning when `requestTimeout` passes unless `throwOnRequestTimeout` is set, so a hung
 * endpoint would hold a request until Lambda's own timeout; with it, a call fails in time and
 * each caller's deadline (an abort signal over all attempts) bounds the whole operation.
 */
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
} as const satisfies Record<string, ClientTimeouts>;

/** Client configuration: two attempts at most, timeouts that throw. */
export function clientConfig(timeouts: ClientTimeouts) {
  // Which function calls (CloudTrail shows it as part of the user agent; the IAM test attributes calls by it).
  const fn = process.env.LIMITER_FUNCTION;
  return {
    ...(fn ? { customUserAgent: `llm-rate-limiter/${fn}` } : {}),
    maxAttempts: 2,
    requestHandler: {
      connectionTimeout: timeouts.connectionTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  };
}
