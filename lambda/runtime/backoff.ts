/**
 * Retrying an AWS call that failed for a reason time repairs, with capped exponential backoff
 * and full jitter (AWS General Reference, "Error retries and exponential backoff in AWS": retry
 * throttling and 5xx, with progressively longer, randomized waits), inside a time budget. The request path never does this (a pause after throttling
 * would outlive its one-second deadline: aws-clients.ts); the functions off it do: the brake
 * mirror after SSM throttling, the config publisher after throttling and an IAM change not yet
 * visible.
 */

/** Error names the AWS SDK for JavaScript v3 classes as throttling (@smithy/core, THROTTLING_ERROR_CODES). */
const THROTTLING_ERRORS = new Set([
  'BandwidthLimitExceeded',
  'EC2ThrottledException',
  'LimitExceededException',
  'PriorRequestNotComplete',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ThrottledException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TransactionInProgressException',
]);

/** A call refused for its rate: by the error's name, or HTTP 429. */
export function isThrottling(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return THROTTLING_ERRORS.has(err.name) || status === 429;
}

export interface BackoffOptions {
  /** Which failures another try may cure. */
  readonly retryable: (err: unknown) => boolean;
  /** No pause ends later than this after the first try began. */
  readonly budgetMs: number;
  /** The first pause is up to this; each next one up to twice the last, at most `capMs`. */
  readonly baseMs: number;
  readonly capMs: number;
  readonly onRetry?: (err: unknown, retry: number, delayMs: number) => void;
  readonly clock?: () => number;
  readonly random?: () => number;
}

/** Runs `call` until it succeeds, fails for a reason `retryable` refuses, or the next pause would pass the budget. */
export async function withBackoff<T>(call: () => Promise<T>, options: BackoffOptions): Promise<T> {
  const clock = options.clock ?? Date.now;
  const started = clock();
  for (let retry = 1; ; retry++) {
    try {
      return await call();
    } catch (err) {
      const ceiling = Math.min(options.capMs, options.baseMs * 2 ** (retry - 1));
      const delayMs = Math.round((options.random ?? Math.random)() * ceiling);
      if (!options.retryable(err) || clock() + delayMs - started > options.budgetMs) throw err;
      options.onRetry?.(err, retry, delayMs);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
