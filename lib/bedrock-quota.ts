/**
 * Bedrock's own throughput quota as global limits, so that the limiter answers 429 (with its headers
 * and its share rules) before Bedrock throttles. Bedrock counts, per account, region and model, tokens
 * and requests per minute; a request holds input + max_tokens of the token quota while it runs and
 * finally costs input + cache-write input + output x the model's burndown rate (5 for Claude Opus 4,
 * Sonnet 4.5, Sonnet 4 and 3.7 Sonnet, 1 for other models):
 * https://docs.aws.amazon.com/bedrock/latest/userguide/global-cross-region-inference.html#global-cris-quotas
 * and https://docs.aws.amazon.com/bedrock/latest/userguide/quotas.html.
 */
import { slidingWindow } from '../lambda/engine/limits';
import { type LimitSpec, MAX_OUTPUT_WEIGHT, requests, tokens } from '../lambda/engine/plans';
import { callOf, remember } from './plan-helpers';

/** One Bedrock model's throughput quota, as Service Quotas shows it: the argument of {@link bedrockQuota}. */
export interface BedrockQuota {
  /**
   * The account's tokens-per-minute quota for the model (Service Quotas, Amazon Bedrock: "On-demand
   * model inference tokens per minute for <model>", or the "Cross-region" / "Global cross-region" one
   * when the model is called through that kind of inference profile).
   */
  readonly tokensPerMinute: number;
  /** The requests-per-minute quota for the same model. @default - no request limit */
  readonly requestsPerMinute?: number;
  /**
   * Quota tokens one output token consumes (5 for some Claude models): the token limit counts
   * input + outputBurndown x output, reserved with the output cap and settled on actual output,
   * as Bedrock does (docs/bedrock.md, "Bedrock's quota").
   * @default 1
   */
  readonly outputBurndown?: number;
}

/** The name of the quota's limits: codes global_tokens_bedrock_quota and global_requests_bedrock_quota. */
export const BEDROCK_QUOTA_NAME = 'bedrock_quota';

/**
 * Global limits (the `globalLimits` prop) that keep the proxy's Bedrock traffic within one model's
 * quota: at most tokensPerMinute (input + output, reserved with the request's output cap as Bedrock
 * reserves its max_tokens, settled at actual usage) and requestsPerMinute in ANY 60 seconds. A
 * sliding window, because a window that never holds more than the quota stays within it whether
 * Bedrock counts per calendar minute or refills a bucket.
 *
 * One quota for everything the global layer sees: exact when the deployment calls one Bedrock model;
 * with several (each has its own quota), give the smallest, which is conservative.
 *
 * @param quota - the model's quota
 * @example
 * globalLimits: [...bedrockQuota({ tokensPerMinute: 2_000_000, requestsPerMinute: 500, outputBurndown: 5 })]
 */
export function bedrockQuota(quota: BedrockQuota): LimitSpec[] {
  const burndown = quota.outputBurndown ?? 1;
  const problems: string[] = [];
  const whole = (field: string, n: number) => {
    if (!(Number.isInteger(n) && n >= 1)) problems.push(`${field} is ${n}; give the quota as a whole number >= 1`);
  };
  whole('tokensPerMinute', quota.tokensPerMinute);
  if (quota.requestsPerMinute !== undefined) whole('requestsPerMinute', quota.requestsPerMinute);
  if (!(Number.isFinite(burndown) && burndown >= 1))
    problems.push(`outputBurndown is ${burndown}; give quota tokens per output token, >= 1`);
  else if (burndown > MAX_OUTPUT_WEIGHT)
    problems.push(`outputBurndown is ${burndown}; give at most ${MAX_OUTPUT_WEIGHT}`);
  // Refused props all the same: the construct reports the problem, at globalLimits[0], with every other one.
  if (problems.length) {
    const specs = quotaLimits({
      tokensPerMinute: 1_000,
      ...(quota.requestsPerMinute !== undefined ? { requestsPerMinute: 1_000 } : {}),
    });
    remember(specs[0]!, callOf('bedrockQuota', [quota]), problems.join('; '));
    return specs;
  }
  return quotaLimits(quota);
}

function quotaLimits(quota: BedrockQuota): LimitSpec[] {
  const burndown = quota.outputBurndown ?? 1;
  return [
    tokens(slidingWindow(quota.tokensPerMinute, '1 m'), {
      name: BEDROCK_QUOTA_NAME,
      ...(burndown !== 1 ? { outputWeight: burndown } : {}),
    }),
    ...(quota.requestsPerMinute !== undefined
      ? [requests(slidingWindow(quota.requestsPerMinute, '1 m'), { name: BEDROCK_QUOTA_NAME })]
      : []),
  ];
}
