import { Duration, type RemovalPolicy, Token } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { apiRoutes } from '../lambda/gateway/api';
import { NUMBER_SETTINGS } from '../lambda/runtime/settings';
import { InvalidLimitError } from '../lambda/engine/errors';
import type { AutomaticBrake, LimiterAlarms } from './observability';
import { helperProblem } from './plan-helpers';
import { type Upstream, upstreamProblems } from './upstream';
import {
  type EndpointConfig,
  type FailureMode,
  type Layer,
  type LimiterConfig,
  type LimitSpec,
  type PenaltyPolicy,
  type Plan,
  parseConfig,
} from '../lambda/engine/plans';

/**
 * The props of {@link LlmRateLimiter}: the plans and endpoints it enforces, the upstream it calls,
 * and how its pieces behave. Invalid props throw at synth, every problem at once after the
 * construct's path, each naming the prop, the value and the fix.
 *
 * @example
 * new LlmRateLimiter(stack, 'Limiter', {
 *   upstream: Upstream.openAiCompatible({
 *     baseUrl: 'https://api.openai.com/v1',
 *     apiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'openai-api-key'),
 *   }),
 *   endpoints: { '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
 *   plans: { team: { tenant: [tokensPerDay(100_000)], user: [tokensPerMinute(20_000), requestsPerMinute(60)] } },
 * });
 */
export interface LlmRateLimiterProps {
  /**
   * Plans by name; a tenant item in the table names its plan (`llm-limiter tenants create acme --plan team`).
   * Each plan lists limits per layer, built with the helpers (`requestsPerMinute`, `tokensPerDay`, `usdPerDay`, ...).
   * @example
   * plans: {
   *   team: { tenant: [tokensPerDay(1_000_000), usdPerDay(50)], user: [tokensPerMinute(20_000), requestsPerMinute(60)] },
   *   trial: { tenant: [tokensPerDay(10_000)], outputReservation: 512 },
   * }
   */
  readonly plans: Readonly<Record<string, Plan>>;
  /**
   * The AI routes the API serves (`/v1/chat/completions`, `/v1/embeddings`, `/v1/responses`,
   * `/v1/messages`), each with the models it allows and their prices (what `usd` limits count).
   * A request for a model not listed is refused (400).
   * @example
   * endpoints: {
   *   '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
   *   '/v1/embeddings': { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } }, scope: 'global' },
   * }
   */
  readonly endpoints: Readonly<Record<string, EndpointConfig>>;
  /**
   * Where the proxy sends requests: an OpenAI-compatible API, an Anthropic-compatible one (each with
   * its key in Secrets Manager), or Amazon Bedrock, signed with the proxy's role (no key stored).
   * Give this, or the OpenAI-compatible shorthand `upstreamBaseUrl` with `upstreamApiKeySecret`, not both.
   * @example
   * upstream: Upstream.anthropic({ baseUrl: 'https://api.anthropic.com/v1', apiKeySecret }),
   * // or, no key: signed with the proxy's role
   * upstream: Upstream.bedrock({ region: 'us-east-1' }),
   * @default - the shorthand: `Upstream.openAiCompatible({ baseUrl: upstreamBaseUrl, apiKeySecret: upstreamApiKeySecret })`
   */
  readonly upstream?: Upstream;
  /**
   * Shorthand for `upstream: Upstream.openAiCompatible({ baseUrl, apiKeySecret })`: the OpenAI-compatible
   * base URL (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM). Give it with `upstreamApiKeySecret`, or give `upstream`.
   * @example
   * upstreamBaseUrl: 'https://api.openai.com/v1',
   * @default - none: `upstream` names the upstream
   */
  readonly upstreamBaseUrl?: string;
  /**
   * Shorthand for `upstream`: the secret holding the upstream API key (the key itself, or JSON
   * `{"apiKey": "..."}`; `{"apiKey": ""}` for an upstream without keys). Read by the proxy only.
   * Import it by name, partial or complete ARN; a secret encrypted with a customer managed key
   * needs that key too.
   * @example
   * upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'openai-api-key'),
   * // encrypted with a customer managed key:
   * upstreamApiKeySecret: Secret.fromSecretAttributes(stack, 'Key', { secretCompleteArn, encryptionKey }),
   * @default - none: `upstream` names the upstream
   */
  readonly upstreamApiKeySecret?: ISecret;
  /**
   * System-wide limits (a spend cap, a provider's quota), checked after the tenant, user and
   * endpoint layers, split over `globalShards` items.
   * @example
   * globalLimits: [usdPerDay(500), ...bedrockQuota({ tokensPerMinute: 2_000_000, requestsPerMinute: 500 })],
   * @default - no global limits
   */
  readonly globalLimits?: readonly LimitSpec[];
  /**
   * DynamoDB items each global limit is split over (each allows 1/N, a request picks one at
   * random), so no single partition's 1,000 writes a second caps throughput. 1 to 1000.
   * @default 8
   */
  readonly globalShards?: number;
  /**
   * Shares the global limits fairly when they run short: each tenant that asks gets at least its
   * plan's `globalWeight` part of them, what one leaves unused goes to the others, and a tenant
   * past its share gets 429 `global_share` with a Retry-After. Token and leaky buckets are shared;
   * sliding windows and calendar budgets stay first come. Costs a global write per request (a
   * shared global is never leased) and up to two meter writes a second per busy tenant per
   * container (docs/design.md, "Fair shares of the global cap"). Needs `globalLimits`, one of
   * them a bucket.
   * @default false - first come, first served
   */
  readonly globalFairShare?: boolean;
  /**
   * Per layer, what a request meets when DynamoDB fails: `closed` denies it (503
   * `limiter_unavailable`), `open` lets it through and logs it.
   * @example
   * failureModes: { global: 'open' },
   * @default - `closed` for every layer
   */
  readonly failureModes?: Readonly<Partial<Record<Layer, FailureMode>>>;
  /**
   * Escalating Retry-After for identities that keep sending while limited: after `threshold`
   * denials within `windowMs`, Retry-After starts at `baseMs` and doubles per denial up to `maxMs`.
   * The fields are in milliseconds; a field left out keeps its default.
   * @example
   * penalty: { threshold: 5, maxMs: 600_000 },
   * @default `{ threshold: 3, windowMs: 60_000, baseMs: 2_000, maxMs: 300_000 }`
   */
  readonly penalty?: Partial<PenaltyPolicy>;
  /**
   * Name of the SSM parameter operators flip as the kill-switch. Give each limiter in an account
   * and region its own.
   * @example
   * brakeParameterName: '/llm-limiter/prod/brake',
   * @default - a name CloudFormation generates (the `BrakeParameterName` output)
   */
  readonly brakeParameterName?: string;
  /**
   * How long key and tenant lookups are reused per container: how long a revoked key keeps
   * working. At most 60 seconds. (A tenant's plan and overrides are reread after at most 5 seconds
   * whatever this says.)
   * @example
   * keyCacheTtl: Duration.seconds(10),
   * @default `Duration.seconds(30)`
   */
  readonly keyCacheTtl?: Duration;
  /**
   * How long the brake's value is reused per container: how fast flipping it takes effect. At most 5 seconds.
   * @example
   * brakeCacheTtl: Duration.seconds(2),
   * @default `Duration.seconds(5)`
   */
  readonly brakeCacheTtl?: Duration;
  /** At a cold start with SSM unreachable: act as released (logged loudly) or braked. @default 'released' */
  readonly brakeColdStart?: 'released' | 'braked';
  /**
   * Retry-After while braked without an `until`.
   * @example
   * brakeRetryAfter: Duration.minutes(5),
   * @default `Duration.seconds(60)`
   */
  readonly brakeRetryAfter?: Duration;
  /**
   * Time allowed for the upstream to start answering. At most 5 minutes (until it answers, the
   * stream sends nothing, and API Gateway ends a stream idle for 5 minutes), and at most `streamTimeout`.
   * @example
   * upstreamTimeout: Duration.seconds(120),
   * @default - `Duration.seconds(60)`, or `streamTimeout` when that is shorter
   */
  readonly upstreamTimeout?: Duration;
  /**
   * Longest streamed answer: the proxy's Lambda timeout and its integration's. 10 seconds to 15 minutes.
   * @example
   * streamTimeout: Duration.minutes(15),
   * @default `Duration.minutes(5)`
   */
  readonly streamTimeout?: Duration;
  /**
   * The proxy's memory (MB), billed for the whole of each stream: nearly all of a request's cost
   * (README, "What it costs"). Lambda gives CPU in proportion, which the input count before the
   * first token needs: measured, the proxy peaks at about 200 MB on a 1 MB prompt with a long
   * stream, and counting a 1 MiB adversarial body takes about 0.33 s of a whole CPU (about 1.1 s at
   * 512 MB, 0.6 s at 1024 MB; prompts of a few KB take milliseconds at any size). Raise it for
   * large prompts where time to first token matters more than cost. From 256 to 10240.
   * @default 512
   */
  readonly proxyMemorySize?: number;
  /**
   * How far Lambda clocks may be apart without over-admitting. At most 5 seconds.
   * @example
   * clockSkew: Duration.millis(50),
   * @default `Duration.millis(0)`
   */
  readonly clockSkew?: Duration;
  /**
   * Share of a limit, in percent, that one busy container may lease: take with one write and spend
   * from memory, exactly (docs/design.md, "Leases"). Leases take most writes off a hot item; the
   * price is bounded under-admission (what a container holds and does not spend), and usage shown
   * as spent while a container holds it. 0 turns leases off. At most 10.
   * @default 1
   */
  readonly leasePercent?: number;
  /**
   * How long a busy container may keep settled usage in memory before adding it to the usage
   * ledger (docs/design.md, "Usage ledger"). 0 writes at the end of every request: nothing is
   * lost with a container, for one write unit per request. Longer takes writes off a container
   * answering many short requests; each container Lambda stops (at every scale-in) then loses up
   * to this long of its usage from the ledger (never from the limits). At most 5 minutes.
   * @example
   * ledgerFlush: Duration.seconds(10),
   * @default `Duration.seconds(0)`
   */
  readonly ledgerFlush?: Duration;
  /**
   * How long the usage ledger keeps a day's rows (DynamoDB's TTL deletes them after). At most 10 years.
   * @example
   * ledgerRetention: Duration.days(800),
   * @default `Duration.days(400)`
   */
  readonly ledgerRetention?: Duration;
  /**
   * Publish per-tenant CloudWatch metrics (Tenant as a dimension of the decision and settlement
   * metrics). Each tenant then adds its own custom metrics, each billed monthly, so it is off: the
   * tenant stays a field of every metric log line, and the dashboard ranks tenants with a Logs
   * Insights query instead. Turn it on for per-tenant alarms or metric math.
   * @default false
   */
  readonly metricsByTenant?: boolean;
  /**
   * Concurrent executions reserved for the authorizer, so long streams (each holding a proxy
   * execution for minutes) can never take the capacity every request's decision needs. Lambda
   * keeps at least 100 executions of the account unreserved, so the default needs a concurrency
   * quota of at least 150 in the region: in an account below it (new accounts start with a reduced
   * quota) the deploy fails on the authorizer ("... decreases account's UnreservedConcurrentExecution
   * below its minimum value") and rolls back. Raise the quota (Service Quotas), reserve fewer, or
   * pass false (no reservation: the authorizer then shares the account's pool with the streams).
   * @example
   * authorizerReservedConcurrency: false, // an account whose concurrency quota is below 150
   * @default 50
   */
  readonly authorizerReservedConcurrency?: number | false;
  /**
   * Concurrent executions reserved for each function of the brake (the brake mirror, and the
   * automatic brake when it is on), so a flip never waits for spare concurrency: EventBridge and
   * the spend alarm invoke them asynchronously, and when long streams have used up the account's
   * unreserved concurrency a throttled event waits in Lambda's retry queue, from 1 s growing to
   * 5 minutes between tries. One is enough (a run takes under a second; an invocation meeting a run
   * in progress is retried a second later). Each reservation needs account quota (Lambda keeps 100
   * unreserved); false for none.
   * @default 1
   */
  readonly brakeReservedConcurrency?: number | false;
  /**
   * Stage throttling, an outer safety net: requests per second over all the methods that run the
   * authorizer together (each endpoint, /v1/limits and /v1/models). API Gateway applies a stage's
   * throttle to each method, so each of them gets an equal share (1000 over 2 endpoints, /v1/limits
   * and /v1/models: 250 a second per method); more than the authorizer's reserved executions can
   * decide is throttled by Lambda and alarmed (`alarms.authorizerThrottlesPerFiveMinutes`).
   * At least one per authorized method.
   * @default - 20 × `authorizerReservedConcurrency` (each execution decides about 20 requests a second), or 1000 without a reservation
   */
  readonly throttlingRateLimit?: number;
  /** Stage throttling burst, over all the authorized methods together like `throttlingRateLimit`. @default - 2 × `throttlingRateLimit` */
  readonly throttlingBurstLimit?: number;
  /**
   * Let the stack set API Gateway's account-wide CloudWatch Logs role (AWS::ApiGateway::Account, one
   * per account and region: it replaces any role set before, and is kept when the stack is deleted).
   * Execution logging needs some role there; pass false when the account already has one. A second
   * limiter in the same stack does not set it again: its stage waits for the first one's.
   * @default true
   */
  readonly cloudWatchRole?: boolean;
  /** The API's stage name: the first part of its URL's path (`https://<id>.execute-api.<region>.amazonaws.com/<stageName>/v1`). @default 'live' */
  readonly stageName?: string;
  /**
   * Retention of every log group the limiter has: each function's, the API's access logs and its
   * execution logs (`API-Gateway-Execution-Logs_<api id>/<stage>`, made by the stack so that API
   * Gateway does not make it with no expiry).
   * @example
   * logRetention: RetentionDays.THREE_MONTHS, // import { RetentionDays } from 'aws-cdk-lib/aws-logs'
   * @default `RetentionDays.ONE_MONTH`
   */
  readonly logRetention?: RetentionDays;
  /**
   * What happens to what holds state when it leaves the stack (a stack deleted, or a construct
   * removed): the table (keys, tenants, buckets), every log group, and the alarm topic's KMS key.
   * DESTROY deletes them (the key after KMS's shortest waiting period, 7 days; a retained key is
   * billed monthly until someone deletes it). A retained table also gets deletion protection.
   * Everything else (functions, API, parameter, alarms) has no state and is deleted with the stack.
   * @default `RemovalPolicy.RETAIN`
   * @example removalPolicy: env === 'prod' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * The alarms on the limiter's metrics, sent to the alarm topic (output `<id>AlarmTopicArn`, or
   * `alarmTopic`): each is on with its default threshold; a number tunes one, `false` turns it off.
   * The list, with each alarm's metric and default: {@link LimiterAlarms}.
   * @example
   * alarms: { spendPerHourUsd: 25, denialsPerFiveMinutes: false },
   * @default - every alarm of LimiterAlarms, at its default threshold
   */
  readonly alarms?: LimiterAlarms;
  /**
   * Where every alarm notifies: your own SNS topic (an on-call topic shared by your stacks), or
   * false for none (the alarms stay, in the console, notifying nobody; the automatic brake still
   * fires). A topic encrypted with a customer managed key needs a key policy that lets
   * cloudwatch.amazonaws.com call kms:Decrypt and kms:GenerateDataKey*.
   * @default - a topic made here, encrypted with a KMS key of its own that follows removalPolicy (output `<id>AlarmTopicArn`)
   * @example alarmTopic: Topic.fromTopicArn(stack, 'OnCall', 'arn:aws:sns:eu-west-1:123456789012:on-call')
   */
  readonly alarmTopic?: ITopic | false;
  /**
   * The VPC every function of the limiter runs in. The functions then reach DynamoDB, SSM
   * Parameter Store, Secrets Manager (a keyed upstream), the upstream itself, and at deploy S3 (a
   * custom resource answers CloudFormation through a pre-signed S3 URL) through the VPC: give
   * the subnets a NAT gateway, or VPC endpoints for each (gateway endpoints for DynamoDB and S3,
   * interface endpoints for SSM, Secrets Manager or Bedrock Runtime) and a route to the upstream.
   * Logs and metrics need nothing: Lambda sends them.
   * @default - no VPC: the functions run in Lambda's own network
   * @example vpc: Vpc.fromLookup(stack, 'Vpc', { vpcName: 'platform' })
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Which subnets of `vpc` the functions run in. Requires vpc.
   * @default - the VPC's private subnets (with egress), else its isolated ones
   * @example vpcSubnets: { subnetGroupName: 'app' }
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the functions in `vpc`; they accept no connections, so only their egress
   * matters. Requires vpc.
   * @default - one group for all the limiter's functions, allowing all outbound traffic
   * @example securityGroups: [SecurityGroup.fromSecurityGroupId(stack, 'Egress', 'sg-0123456789abcdef0')]
   */
  readonly securityGroups?: ec2.ISecurityGroup[];
  /**
   * Opt-in: set the brake automatically when global spend per hour crosses a threshold.
   * @example
   * automaticBrake: { spendPerHourUsd: 300, brakeFor: Duration.hours(1) },
   * @default - no automatic brake
   */
  readonly automaticBrake?: AutomaticBrake;
  /**
   * Where calendar budgets' alerts go (see `alertAt` on a limit): an EventBridge event per
   * threshold per period (source `llm-rate-limiter`, detail-type `Budget threshold reached`) on
   * this bus; route them with a rule of your own, or name a topic in `budgetAlertTopic`.
   * @example alertEventBus: EventBus.fromEventBusName(stack, 'Bus', 'billing')
   * @default - the account's default event bus
   */
  readonly alertEventBus?: IEventBus;
  /**
   * An SNS topic that gets every budget alert (a rule on the alert bus, made here), for tenant
   * admins' or operators' subscriptions. The event's `detail` is the alert (README, "Budgets and alerts").
   * @example budgetAlertTopic: new Topic(stack, 'Budgets')
   * @default - no rule: the events are on the bus for your own rules
   */
  readonly budgetAlertTopic?: ITopic;
  /**
   * A CloudWatch dashboard: decisions, denials by code, spend per tenant, settlement failures,
   * authorizer latency. CloudWatch bills a dashboard $3 a month whether or not anyone looks.
   * @default false
   */
  readonly dashboard?: boolean;
  /**
   * X-Ray tracing on the API's stage: a trace per request, billed per million traces recorded
   * past the free tier ($5 per million).
   * @default false
   */
  readonly tracing?: boolean;
}

/**
 * Largest request body an endpoint may accept. Lambda takes at most 6,291,456 bytes per synchronous
 * invocation (the whole event, not only the body); API Gateway accepts 10 MB. In the event the
 * body is a JSON string, where every quote, backslash and newline of a valid JSON body becomes two
 * bytes: 2 x 3,000,000 plus headers and request context stays under the invocation limit.
 */
export const MAX_BODY_BYTES_LIMIT = 3_000_000;

/** How long a stream may run: the proxy's timeout and its integration's. */
export const DEFAULT_STREAM_TIMEOUT = Duration.minutes(5);
/** API Gateway ends a response stream that has sent nothing for this long (regional endpoints). */
export const STREAM_IDLE_TIMEOUT = Duration.minutes(5);

/**
 * The upstream timeout the proxy runs with, when it is not the settings' default: the prop, or the
 * stream timeout when that is shorter than the default (the invocation would end first).
 */
export function upstreamTimeoutOf(props: LlmRateLimiterProps): Duration | undefined {
  if (props.upstreamTimeout) return props.upstreamTimeout;
  const stream = props.streamTimeout;
  if (!stream || Token.isUnresolved(stream.toMilliseconds({ integral: false }))) return undefined;
  return stream.toMilliseconds() < NUMBER_SETTINGS.upstreamTimeoutMs.default ? stream : undefined;
}

/** Stage throttling per reserved authorizer execution: an execution decides in about 50 ms. */
export const REQUESTS_PER_SECOND_PER_AUTHORIZER = 20;
export const DEFAULT_AUTHORIZER_RESERVED_CONCURRENCY = 50;
/** Stage throttling without a reservation, in requests per second over all the authorized methods. */
const UNRESERVED_RATE_LIMIT = 1000;

/** The methods that run the authorizer: API Gateway throttles each on its own. */
function authorizedMethods(endpoints: LlmRateLimiterProps['endpoints'] | undefined): number {
  return apiRoutes(endpoints ?? {}).filter((r) => r.authorized).length;
}

/**
 * The stage's throttle, which API Gateway applies to each method that has none of its own (every
 * authorized one): the total the props give, divided among the authorized methods, so that all of
 * them together send the authorizer no more than the total.
 */
export function methodThrottle(props: LlmRateLimiterProps): { rateLimit: number; burstLimit: number } {
  const reserved = props.authorizerReservedConcurrency ?? DEFAULT_AUTHORIZER_RESERVED_CONCURRENCY;
  const rate =
    props.throttlingRateLimit ??
    (reserved === false ? UNRESERVED_RATE_LIMIT : reserved * REQUESTS_PER_SECOND_PER_AUTHORIZER);
  const burst = props.throttlingBurstLimit ?? 2 * rate;
  const methods = authorizedMethods(props.endpoints);
  // The rate may be fractional (to the hundredth, rounded down); the burst is a whole number of requests.
  return { rateLimit: Math.floor((rate * 100) / methods) / 100, burstLimit: Math.floor(burst / methods) };
}

export const DEFAULT_BRAKE_RESERVED_CONCURRENCY = 1;

/** Where a prop problem is, and what to do about it. */
type Problems = string[];

function durationAtMost(
  problems: Problems,
  prop: string,
  value: Duration | undefined,
  max: Duration,
  fix: string,
): void {
  if (value === undefined || Token.isUnresolved(value.toMilliseconds({ integral: false }))) return;
  if (value.toMilliseconds() < 0 || value.toMilliseconds() > max.toMilliseconds())
    problems.push(`${prop} is ${value.toHumanString()}; ${fix}`);
}

/** The global part of the limiter configuration the props describe (undefined without globalLimits). */
function globalConfig(props: LlmRateLimiterProps) {
  if (!props.globalLimits) return undefined;
  return {
    limits: props.globalLimits,
    shards: props.globalShards ?? 8,
    ...(props.globalFairShare ? { fairShare: true } : {}),
  };
}

/**
 * The limiter configuration's parser names its own paths (config.plans.team.user[0]); a person
 * wrote props: name those. config.global.limits is the globalLimits prop, and so on.
 */
function propPath(message: string): string {
  return message
    .replace(/^config\.global\.limits/, 'globalLimits')
    .replace(/^config\.global\.shards/, 'globalShards')
    .replace(/^config\.global\.fairShare/, 'globalFairShare')
    .replace(/^config\.global/, 'globalLimits')
    .replace(/^config\.endpoints\.(\/[^.:\s]*)/, (_m, route: string) => `endpoints['${route}']`)
    .replace(
      /^config\.plans\.([^.:\s]+)\.endpoints\.(\/[^.:\s]*)/,
      (_m, plan: string, route: string) => `plans.${plan}.endpoints['${route}']`,
    )
    .replace(/^config\./, '')
    .replace(/^config: /, '')
    .replace(/config\.endpoints/g, 'endpoints');
}

/** One part of the configuration parsed on its own, so each part's problem is reported. */
function checkPart(problems: Problems, raw: Record<string, unknown>): boolean {
  try {
    parseConfig(raw);
    return true;
  } catch (err) {
    if (!(err instanceof InvalidLimitError)) throw err;
    problems.push(propPath(err.message));
    return false;
  }
}

/** SSM Parameter Store's naming rules: https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-parameter-name-constraints.html */
function validParameterName(name: string): boolean {
  return (
    /^[A-Za-z0-9_.\-/]{1,1011}$/.test(name) &&
    (!name.includes('/') || name.startsWith('/')) &&
    !/^\/?(aws|ssm)/i.test(name) &&
    name.split('/').length <= 16
  );
}

/** What the plan helpers were given and could not take, where each sits in the props. */
function helperProblems(problems: Problems, props: LlmRateLimiterProps): void {
  const specsAt = (path: string, specs: unknown) => {
    if (!Array.isArray(specs)) return;
    specs.forEach((spec, i) => {
      const problem = helperProblem(spec);
      if (problem) problems.push(`${path}[${i}]: ${problem}`);
    });
  };
  for (const [name, plan] of Object.entries(props.plans ?? {})) {
    specsAt(`plans.${name}.tenant`, plan?.tenant);
    specsAt(`plans.${name}.user`, plan?.user);
    for (const [route, specs] of Object.entries(plan?.endpoints ?? {}))
      specsAt(`plans.${name}.endpoints['${route}']`, specs);
  }
  specsAt('globalLimits', props.globalLimits);
}

/**
 * Validates the props at synth and returns the limiter configuration the functions will run with
 * (the same parser they use at a cold start). Every problem is reported at once, each naming the
 * prop, the value and the fix, after the construct's path.
 */
export function validateProps(props: LlmRateLimiterProps, path = 'LlmRateLimiter'): LimiterConfig {
  const problems: Problems = upstreamProblems(props);
  durationAtMost(
    problems,
    'keyCacheTtl',
    props.keyCacheTtl,
    Duration.seconds(NUMBER_SETTINGS.keyCacheTtlSeconds.max),
    'use at most 60 seconds (it is how long a revoked key keeps working)',
  );
  durationAtMost(
    problems,
    'brakeCacheTtl',
    props.brakeCacheTtl,
    Duration.seconds(NUMBER_SETTINGS.brakeCacheTtlSeconds.max),
    'use at most 5 seconds so the brake takes effect quickly',
  );
  durationAtMost(
    problems,
    'streamTimeout',
    props.streamTimeout,
    Duration.minutes(15),
    'API Gateway streams for at most 15 minutes',
  );
  durationAtMost(
    problems,
    'clockSkew',
    props.clockSkew,
    Duration.millis(NUMBER_SETTINGS.clockSkewMs.max),
    'use at most 5 seconds',
  );
  // Until the upstream answers, the client's stream is silent: it must not outlast the stream's idle
  // limit (above 900 s the proxy would not even start), nor the invocation.
  const stream = props.streamTimeout ?? DEFAULT_STREAM_TIMEOUT;
  if (
    Token.isUnresolved(stream.toMilliseconds({ integral: false })) ||
    stream.toMilliseconds() >= STREAM_IDLE_TIMEOUT.toMilliseconds()
  )
    durationAtMost(
      problems,
      'upstreamTimeout',
      props.upstreamTimeout,
      STREAM_IDLE_TIMEOUT,
      'use at most 5 minutes: until the upstream answers, the stream sends nothing, and API Gateway ends a stream idle for 5 minutes',
    );
  else
    durationAtMost(
      problems,
      'upstreamTimeout',
      props.upstreamTimeout,
      stream,
      `use at most streamTimeout (${stream.toHumanString()}): the proxy's invocation ends first`,
    );
  if (props.streamTimeout !== undefined && props.streamTimeout.toSeconds() < 10)
    problems.push(`streamTimeout is ${props.streamTimeout.toHumanString()}; allow at least 10 seconds`);
  const methods = authorizedMethods(props.endpoints);
  for (const [prop, value] of [
    ['throttlingRateLimit', props.throttlingRateLimit],
    ['throttlingBurstLimit', props.throttlingBurstLimit],
  ] as const) {
    if (value !== undefined && !(Number.isFinite(value) && value > 0))
      problems.push(`${prop} is ${value}; give a positive number of requests`);
    else if (value !== undefined && value < methods)
      problems.push(
        `${prop} is ${value}; give at least ${methods}: API Gateway applies it to each of the ${methods} authorized methods ` +
          '(the endpoints, /v1/limits and /v1/models), so it is divided among them',
      );
  }
  if (
    props.leasePercent !== undefined &&
    !(
      Number.isFinite(props.leasePercent) &&
      props.leasePercent >= 0 &&
      props.leasePercent <= NUMBER_SETTINGS.leasePercent.max
    )
  )
    problems.push(`leasePercent is ${props.leasePercent}; give a percentage from 0 (no leases) to 10`);
  if (props.ledgerFlush && !props.ledgerFlush.isUnresolved()) {
    const seconds = props.ledgerFlush.toMilliseconds() / 1000;
    if (!(Number.isInteger(seconds) && seconds <= NUMBER_SETTINGS.ledgerFlushSeconds.max))
      problems.push(`ledgerFlush is ${props.ledgerFlush}; give whole seconds from 0 to 5 minutes`);
  }
  if (props.ledgerRetention && !props.ledgerRetention.isUnresolved()) {
    const days = props.ledgerRetention.toHours({ integral: false }) / 24;
    if (!(Number.isInteger(days) && days >= 1 && days <= NUMBER_SETTINGS.ledgerRetentionDays.max))
      problems.push(`ledgerRetention is ${props.ledgerRetention}; give whole days from 1 to 3650`);
  }
  const memory = props.proxyMemorySize;
  if (
    memory !== undefined &&
    !Token.isUnresolved(memory) &&
    !(Number.isInteger(memory) && memory >= 256 && memory <= 10240)
  )
    problems.push(
      `proxyMemorySize is ${memory}; give a whole number of MB from 256 to 10240 (the proxy peaks near 200 MB)`,
    );
  for (const prop of ['authorizerReservedConcurrency', 'brakeReservedConcurrency'] as const) {
    const reserved = props[prop];
    if (reserved !== undefined && reserved !== false && !(Number.isInteger(reserved) && reserved >= 1))
      problems.push(`${prop} is ${reserved}; give a whole number of executions >= 1, or false for no reservation`);
  }
  for (const [route, endpoint] of Object.entries(props.endpoints ?? {})) {
    if (!/^\/v1\/[a-z0-9/_-]+$/.test(route))
      problems.push(`endpoints['${route}'] is not an API path: use paths such as /v1/chat/completions`);
    const max = endpoint?.maxBodyBytes;
    if (max !== undefined && max > MAX_BODY_BYTES_LIMIT) {
      problems.push(
        `endpoints['${route}'].maxBodyBytes is ${max}; use at most ${MAX_BODY_BYTES_LIMIT}: ` +
          "Lambda takes at most 6 MB per synchronous invocation, and a body's quotes and backslashes double " +
          'when API Gateway puts it in the event',
      );
    }
  }
  if (props.automaticBrake && !(props.automaticBrake.spendPerHourUsd > 0))
    problems.push(
      `automaticBrake.spendPerHourUsd is ${props.automaticBrake.spendPerHourUsd}; give a positive number of USD per hour`,
    );
  durationAtMost(
    problems,
    'automaticBrake.brakeFor',
    props.automaticBrake?.brakeFor,
    Duration.seconds(NUMBER_SETTINGS.brakeForSeconds.max),
    'use at most 7 days (release by hand sooner)',
  );
  for (const [prop, value] of Object.entries(props.alarms ?? {})) {
    if (typeof value === 'number' && !(value > 0))
      problems.push(`alarms.${prop} is ${value}; give a positive threshold, or false to turn the alarm off`);
  }
  const brake = props.brakeParameterName;
  if (brake !== undefined && !Token.isUnresolved(brake) && !validParameterName(brake))
    problems.push(
      `brakeParameterName is ${JSON.stringify(brake)}; use 1-1011 of a-z, A-Z, 0-9, _ . - and /, a leading / if it has one, ` +
        'not starting with aws or ssm (or leave it out: CloudFormation generates one)',
    );
  for (const prop of ['vpcSubnets', 'securityGroups'] as const)
    if (props[prop] !== undefined && !props.vpc)
      problems.push(`${prop} is set without vpc; give vpc too, or leave ${prop} out`);
  if (props.stageName !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(props.stageName))
    problems.push(`stageName is ${JSON.stringify(props.stageName)}; use letters, digits, - and _`);

  helperProblems(problems, props);
  // The configuration, part by part: the endpoints first (the plans refer to them), then each plan and the rest.
  const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
  const endpoints = json(props.endpoints);
  const placeholder = { placeholder: {} };
  if (props.globalFairShare && !props.globalLimits)
    problems.push('globalFairShare is set without globalLimits; give the global limits to share, or leave it out');
  if (checkPart(problems, { plans: placeholder, endpoints })) {
    const plans = json(props.plans);
    // Each plan is checked with the global limits (a reserve or a weight refers to them) when those are valid.
    const globalProblems: string[] = [];
    const global = globalConfig(props);
    const withGlobal =
      global && checkPart(globalProblems, { plans: placeholder, endpoints, global: json(global) })
        ? { global: json(global) }
        : {};
    if (plans && typeof plans === 'object' && Object.keys(plans).length > 0) {
      for (const [name, plan] of Object.entries(plans))
        checkPart(problems, { plans: { [name]: plan }, endpoints, ...withGlobal });
    } else {
      checkPart(problems, { plans, endpoints });
    }
    problems.push(...globalProblems);
    if (props.failureModes)
      checkPart(problems, { plans: placeholder, endpoints, failureModes: json(props.failureModes) });
    if (props.penalty) checkPart(problems, { plans: placeholder, endpoints, penalty: json(props.penalty) });
  }
  if (problems.length === 1) throw new InvalidLimitError(`${path}: ${problems[0]}`);
  if (problems.length > 1)
    throw new InvalidLimitError(
      `${path}: ${problems.length} props are not valid:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  return parseConfig(
    json({
      plans: props.plans,
      endpoints: props.endpoints,
      ...(props.globalLimits ? { global: globalConfig(props) } : {}),
      ...(props.failureModes ? { failureModes: props.failureModes } : {}),
      ...(props.penalty ? { penalty: props.penalty } : {}),
    }),
  );
}
