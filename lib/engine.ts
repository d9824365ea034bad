/**
 * The limit engine without the construct (the `llm-rate-limiter/engine` subpath): buckets in
 * DynamoDB for code that runs outside this construct's functions. Bring your own DynamoDBClient
 * (@aws-sdk/client-dynamodb and @aws-sdk/lib-dynamodb are optional peer dependencies).
 */
export type { Decision } from '../lambda/engine/decision';
export * from '../lambda/engine/errors';
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
export { LimitStore, type LimitStoreOptions } from '../lambda/engine/store';
export { Limiter, type LimiterOptions, type Identity, type TenantRecord, type Verdict } from '../lambda/engine/limiter';
