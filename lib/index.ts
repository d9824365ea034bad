export { LimitsTable, type LimitsTableProps } from './limits-table';
export * from '../lambda/engine/errors';
export {
  type BurstCredit,
  durationMs,
  type LeakyBucketLimit,
  type Limit,
  type SlidingWindowLimit,
  type TokenBucketLimit,
} from '../lambda/engine/limits';
export { type Calendar, type Period, PERIODS } from '../lambda/engine/calendar';
// The construct's plan helpers never throw: it reports their problems with its path (lib/plan-helpers.ts).
export {
  calendarBudget,
  leakyBucket,
  requestsPerDay,
  requestsPerMinute,
  slidingWindow,
  tokenBucket,
  tokensPerDay,
  tokensPerCalendarDay,
  tokensPerMinute,
  tokensPerMonth,
  usdPerCalendarDay,
  usdPerDay,
  usdPerMonth,
  usdPerWeek,
} from './plan-helpers';
export { LIMITS_ROUTE, LlmRateLimiter } from './llm-rate-limiter';
export type { LlmRateLimiterProps } from './props';
export * from '../lambda/engine/plans';
export { type AutomaticBrake, type LimiterAlarms, LimiterObservability } from './observability';
export { LimiterFunction, type LimiterFunctionProps } from './limiter-function';
export { type BedrockUpstreamOptions, type KeyedUpstreamOptions, Upstream } from './upstream';
export { BEDROCK_QUOTA_NAME, type BedrockQuota, bedrockQuota } from './bedrock-quota';
export type { UpstreamKind } from '../lambda/gateway/api';
