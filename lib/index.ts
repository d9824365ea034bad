/**
 * Every name the package exports (`import { ... } from 'llm-rate-limiter'`), with its type, default,
 * meaning and examples, generated from the TSDoc in the source (`npm run docs`). Start at
 * {@link LlmRateLimiter} and {@link LlmRateLimiterProps}; the README shows how they fit together.
 * @packageDocumentation
 */
export { LIMITS_ROUTE, LlmRateLimiter } from './llm-rate-limiter';
export type { LlmRateLimiterProps } from './props';
export { type BedrockUpstreamOptions, type KeyedUpstreamOptions, Upstream } from './upstream';
export { UPSTREAM_KINDS, type UpstreamKind } from '../lambda/gateway/api';
export * from '../lambda/engine/plans';
export {
  type BurstCredit,
  calendarBudget,
  durationMs,
  type LeakyBucketLimit,
  type Limit,
  leakyBucket,
  type SlidingWindowLimit,
  slidingWindow,
  type TokenBucketLimit,
  tokenBucket,
} from '../lambda/engine/limits';
export { type Calendar, type Period, PERIODS } from '../lambda/engine/calendar';
export { BEDROCK_QUOTA_NAME, type BedrockQuota, bedrockQuota } from './bedrock-quota';
export {
  type AutomaticBrake,
  type LimiterAlarms,
  LimiterObservability,
  type LimiterObservabilityProps,
} from './observability';
export { LimiterFunction, type LimiterFunctionName, type LimiterFunctionProps } from './limiter-function';
export { LimitsTable, type LimitsTableProps } from './limits-table';
export * from '../lambda/engine/errors';
