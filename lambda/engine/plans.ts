import { expressionBound, MAX_EXPRESSION_BYTES } from './expressions';
import { InvalidLimitError } from './errors';
import type { Period } from './calendar';
import { calendarBudget, type Limit, leakyBucket, slidingWindow, tokenBucket } from './limits';

/** Layers in the order they are checked; the first that denies is the one reported. */
export const LAYERS = ['tenant', 'user', 'endpoint', 'global'] as const;
/** A layer of limits: `tenant`, `user`, `endpoint` or `global`, checked in that order. */
export type Layer = (typeof LAYERS)[number];

/** What a limit counts: requests (1 each), tokens (input + output), or usd (micro-dollars). */
export const COUNTS = ['requests', 'tokens', 'usd'] as const;
/** What a limit counts: `requests`, `tokens` or `usd` (micro-dollars). */
export type Counts = (typeof COUNTS)[number];

/** What a layer does when DynamoDB fails: `closed` denies the request (503), `open` lets it through and logs it. */
export type FailureMode = 'open' | 'closed';

/**
 * One limit: what it counts and the bucket that counts it. Built with the helpers (`requestsPerMinute`,
 * `tokensPerDay`, `usdPerDay`, or `requests`/`tokens`/`usd` around a bucket shape); in JSON (tenant
 * overrides) it is written out, a sliding window's `windowMs` also as `window: "1m"`.
 * @example
 * tokens(tokenBucket(50_000, 500), { name: 'burst' })
 * // the same in JSON:
 * { "counts": "tokens", "name": "burst", "limit": { "shape": "token_bucket", "capacity": 50000, "refillPerSecond": 500 } }
 */
export interface LimitSpec {
  /** What one request costs on it: 1 (`requests`), its input + output tokens (`tokens`), or its price in micro-dollars (`usd`). */
  readonly counts: Counts;
  /** The bucket: a token bucket, a leaky bucket or a sliding window, in the unit `counts` says. */
  readonly limit: Limit;
  /**
   * Names the limit in codes (`<layer>_<counts>_<name>`), headers and metrics; 1 to 40 of a-z, 0-9 and _.
   * @default - from its period: `per_minute`, `per_day`, ... (`per_90s` otherwise)
   */
  readonly name?: string;
  /** Evaluated, spent and reported, but never denies: roll a new limit out safely. @default false */
  readonly shadow?: boolean;
  /**
   * A token limit only: what one output token counts on it, for a quota that weighs output more
   * than input (Bedrock's output burndown: 5 for some Claude models). @default 1
   */
  readonly outputWeight?: number;
  /**
   * A calendar budget only: percents of its limit at which it alerts, once per period each
   * (lambda/engine/alerts.ts); `[]` for none. @default [50, 80, 100]
   */
  readonly alertAt?: readonly number[];
}

/** The most an output token may weigh on a limit. */
export const MAX_OUTPUT_WEIGHT = 100;

/**
 * The limits a tenant is held to, per layer (checked tenant, user, endpoint, then the global
 * limits; the first that denies answers). A tenant item names its plan; its overrides have the same shape.
 * @example
 * {
 *   tenant: [tokensPerDay(1_000_000), requestsPerMinute(600)],
 *   user: [tokensPerMinute(20_000), requestsPerMinute(60), requestsPerDay(1_000, { shadow: true })],
 *   endpoints: { '/v1/chat/completions': [tokens(tokenBucket(50_000, 500))] },
 *   outputReservation: 1024,
 * }
 */
export interface Plan {
  /** Limits per tenant: its contract, shared by all its users. @default - none */
  readonly tenant?: readonly LimitSpec[];
  /** Limits per user within the tenant (fair share). @default - none */
  readonly user?: readonly LimitSpec[];
  /**
   * Limits per endpoint path (a key of the `endpoints` prop), per tenant unless the endpoint's scope is global.
   * @example
   * endpoints: { '/v1/embeddings': [requestsPerMinute(100)] }
   * @default - none
   */
  readonly endpoints?: Readonly<Record<string, readonly LimitSpec[]>>;
  /**
   * Output tokens per choice that a request without `max_tokens` / `max_completion_tokens` may
   * produce under this plan: sent upstream as its cap and reserved in full.
   * @default the model's defaultMaxTokens
   */
  readonly outputReservation?: number;
  /**
   * A priority tier for batch traffic: the percent of every global limit this plan's tenants may
   * not use. Their requests pass the global layer only while more than this share of it would be
   * left after them, so the other plans keep that headroom however hard these tenants push; a 429
   * there has code `global_reserve` and a Retry-After until the global has refilled past the line.
   * Exact (the global's own conditional write, never a lease). From 1 to 99.
   * @example
   * batch: { tenant: [tokensPerDay(50_000_000)], globalReserve: 30 }
   * @default - none: the plan's tenants may use the whole global limit
   */
  readonly globalReserve?: number;
  /**
   * This plan's tenants' weight in a shared global limit (`globalFairShare`): when the global runs
   * short, each tenant that asks gets at least its weight's part of it (weight / the sum of the
   * weights of the tenants asking), and what one leaves unused goes to the others. A 429 from a
   * tenant's share has code `global_share`. Any number from 0.01 to 10,000; weights more than
   * 100 apart are told apart less finely (docs/design.md, "Fair shares of the global cap").
   * @example
   * enterprise: { tenant: [tokensPerMinute(400_000)], globalWeight: 4 }
   * @default 1
   */
  readonly globalWeight?: number;
}

/**
 * Per-tenant changes that take effect without a deploy (enterprise contracts): a plan-shaped JSON
 * object, set with `llm-limiter tenants set-overrides <tenant> --file <file>`. Each limit in it
 * replaces the plan's limit with the same `counts` and name (its bucket and what it has counted
 * stay), or adds one; `outputReservation`, `globalReserve` and `globalWeight` replace the plan's. It reaches traffic within 5 seconds.
 * @example
 * ```json
 * {
 *   "tenant": [{ "counts": "tokens", "name": "per_day", "limit": { "shape": "token_bucket", "capacity": 5000000, "refillPerSecond": 57.87 } }],
 *   "user": [{ "counts": "requests", "name": "trial", "shadow": true, "limit": { "shape": "sliding_window", "limit": 5, "window": "1m" } }],
 *   "endpoints": { "/v1/embeddings": [{ "counts": "requests", "limit": { "shape": "leaky_bucket", "capacity": 1, "drainPerSecond": 10 } }] },
 *   "outputReservation": 2048
 * }
 * ```
 */
export type Overrides = Plan;

/**
 * A model an endpoint allows: its prices in USD per million tokens (what `usd` limits count), how
 * its input is counted and how much output a request may reserve.
 * @example
 * 'gpt-4o-mini': {
 *   inputPerMillion: 0.15, outputPerMillion: 0.6, cachedInputPerMillion: 0.075, defaultMaxTokens: 2_048,
 *   serviceTiers: { priority: { inputPerMillion: 0.25, outputPerMillion: 1.0 } },
 * }
 */
export interface ModelPrice {
  /** USD per million input tokens. */
  readonly inputPerMillion: number;
  /** USD per million output tokens (reasoning tokens included). */
  readonly outputPerMillion: number;
  /**
   * The model id the upstream is called with, when it differs from the name clients use. For
   * Bedrock: a foundation model id (`anthropic.claude-3-5-haiku-20241022-v1:0`), a cross-Region
   * inference profile id (`us.anthropic.claude-3-5-haiku-20241022-v1:0`, `global.…`), or the ARN
   * of either; the proxy's role may invoke exactly these (docs/bedrock.md).
   * @example
   * 'claude-haiku': { inputPerMillion: 0.8, outputPerMillion: 4, upstreamModel: 'us.anthropic.claude-3-5-haiku-20241022-v1:0' }
   * @default - the client-facing model name itself
   */
  readonly upstreamModel?: string;
  /**
   * How input is counted: a js-tiktoken encoding (exact for OpenAI's models), or `utf8_bytes`, a
   * bound of one token per UTF-8 byte plus framing for a tokenizer not known here (never below
   * what the provider bills; corrected at settlement). Naming an OpenAI encoding for another
   * model's family is an estimate that can come out low: the hard cap then holds only as far as it does.
   * @default - `o200k_base` for gpt-4o/4.1/5 and o-series, `cl100k_base` for older OpenAI models and embeddings, `utf8_bytes` for every other model
   */
  readonly encoding?: 'o200k_base' | 'cl100k_base' | 'utf8_bytes';
  /**
   * Tokens reserved for one non-text content part: the most the provider bills for one (pixels,
   * audio and files are not seen here). A part type without a figure is refused with a 400.
   * gpt-4o-mini bills images about 33 times what gpt-4o does.
   * @example
   * partTokens: { image: 1105, imageLowDetail: 85 } // gpt-4o
   * @default - `{}`: image, audio and file parts are refused (400)
   */
  readonly partTokens?: PartTokens;
  /** Most output tokens the model produces for one choice: clamps a client's cap and judges reported usage. @default 131072 */
  readonly maxOutputTokens?: number;
  /**
   * Output tokens per choice that a request without `max_tokens` / `max_completion_tokens` may
   * produce: sent upstream as its cap and reserved in full (a plan's outputReservation comes first).
   * For reasoning models the cap counts the hidden reasoning tokens too.
   * @default - 25000 for reasoning models (o1, o3, o4, gpt-5 families), 4096 for others
   */
  readonly defaultMaxTokens?: number;
  /**
   * The field the upstream reads its output cap from; the proxy always sends one cap, in this field
   * ('both': the same value in both, for an upstream that accepts both), and removes the client's own.
   * OpenAI and Azure OpenAI refuse both at once, and OpenAI's reasoning models refuse max_tokens;
   * Ollama reads only max_tokens.
   * @default - `'max_completion_tokens'` for OpenAI's model names (gpt-*, chatgpt-*, o1/o3/o4..., ft: of those), `'max_tokens'` for others
   */
  readonly outputCapField?: OutputCapField;
  /** USD per million cached input tokens, where the upstream reports them; at most `inputPerMillion`. @default - `inputPerMillion` */
  readonly cachedInputPerMillion?: number;
  /** USD per million audio input tokens. @default - none: `input_audio` parts are refused (400) */
  readonly audioInputPerMillion?: number;
  /** USD per million audio output tokens. @default - none: a request for audio output is refused (400) */
  readonly audioOutputPerMillion?: number;
  /**
   * Prices per `service_tier` other than the standard one ('auto' and 'default' use the prices
   * above); a request naming a tier not listed here is refused (400).
   * @example
   * serviceTiers: { priority: { inputPerMillion: 0.25, outputPerMillion: 1.0 }, flex: { inputPerMillion: 0.075, outputPerMillion: 0.3 } }
   * @default - `{}`: only the standard tier
   */
  readonly serviceTiers?: Readonly<Record<string, TierPrice>>;
  /**
   * The model spends output tokens it never shows (hidden reasoning): an answer without usage is
   * then settled at its bound even when it arrived whole.
   * @default - false for gpt-4*, gpt-3.5* and chatgpt-4o* (and their ft: fine-tunes), true for every other model
   */
  readonly hiddenReasoning?: boolean;
}

/** The request field an upstream reads its output cap from (`both`: the same value in each). */
export type OutputCapField = 'max_completion_tokens' | 'max_tokens' | 'both';
/** Every {@link OutputCapField}. */
export const OUTPUT_CAP_FIELDS: readonly OutputCapField[] = ['max_completion_tokens', 'max_tokens', 'both'];

/** A service tier's prices, USD per million tokens. */
export interface TierPrice {
  /** USD per million input tokens in this tier. */
  readonly inputPerMillion: number;
  /** USD per million output tokens in this tier. */
  readonly outputPerMillion: number;
  /** USD per million cached input tokens in this tier; at most its `inputPerMillion`. @default - the tier's `inputPerMillion` */
  readonly cachedInputPerMillion?: number;
}

/** OpenAI's reasoning families, whose answers spend hidden reasoning tokens within the output cap. */
const REASONING_MODEL = /^(ft:)?(o\d|gpt-5)/;
/**
 * Model names OpenAI serves (fine-tunes too), which read max_completion_tokens (its reasoning
 * models refuse max_tokens). Not gpt-oss: an open-weight model, served by Ollama and vLLM.
 */
const OPENAI_MODEL = /^(ft:)?(gpt-(?!oss)|chatgpt-|o\d)/;
/** Models known to show every output token they bill. */
const NO_HIDDEN_REASONING = /^(ft:)?(gpt-4|gpt-3\.5|chatgpt-4o)/;

/**
 * Whether a model is one of OpenAI's reasoning families (o1, o3, o4, gpt-5, and their fine-tunes),
 * whose answers spend hidden reasoning tokens within the output cap.
 * @param model - the client-facing model name
 */
export const isReasoningModel = (model: string): boolean => REASONING_MODEL.test(model);

/**
 * The model id the upstream is called with for the client-facing `model`.
 * @param model - the client-facing model name
 * @param price - its entry in the endpoint's models
 */
export const upstreamModelOf = (model: string, price: ModelPrice): string => price.upstreamModel ?? model;

/**
 * Whether a model may bill output it does not show; when unsure, it may.
 * @param model - the client-facing model name
 * @param price - its entry in the endpoint's models (`hiddenReasoning` decides when set)
 */
export const hidesReasoning = (model: string, price: ModelPrice): boolean =>
  price.hiddenReasoning ?? !NO_HIDDEN_REASONING.test(model);

/**
 * The output cap of a request that set none, per choice (OpenAI advises 25,000 for reasoning models):
 * the plan's `outputReservation`, else the model's `defaultMaxTokens`, else 25,000 for reasoning
 * models and 4,096 for others; never more than the model's `maxOutputTokens`.
 * @param model - the client-facing model name
 * @param price - its entry in the endpoint's models
 * @param plan - the tenant's plan, with overrides applied
 */
export function defaultMaxTokens(model: string, price: ModelPrice, plan?: Plan): number {
  const cap = plan?.outputReservation ?? price.defaultMaxTokens ?? (isReasoningModel(model) ? 25_000 : 4_096);
  return Math.min(cap, price.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS);
}

/**
 * The field the upstream reads the output cap from: the model's `outputCapField`, else
 * `max_completion_tokens` for OpenAI's model names and `max_tokens` for others.
 * @param model - the client-facing model name
 * @param price - its entry in the endpoint's models
 */
export function outputCapField(model: string, price: ModelPrice): OutputCapField {
  // Elsewhere max_tokens: what every OpenAI-compatible server reads; a server that refuses it says so (400), never overspends.
  return price.outputCapField ?? (OPENAI_MODEL.test(model) ? 'max_completion_tokens' : 'max_tokens');
}

/**
 * Tokens reserved per non-text content part of a request (`ModelPrice.partTokens`): the most the
 * provider bills for one. Whole numbers >= 0; a part type without a figure is refused (400).
 * @example
 * partTokens: { image: 1105, imageLowDetail: 85 }
 */
export interface PartTokens {
  /** An `image_url` part (detail high or auto). @default - none: image parts are refused */
  readonly image?: number;
  /** An `image_url` part with detail `low`. @default - `image` */
  readonly imageLowDetail?: number;
  /** An `input_audio` part. @default - none: audio parts are refused */
  readonly audio?: number;
  /** A `file` part. @default - none: file parts are refused */
  readonly file?: number;
}

/** `ModelPrice.maxOutputTokens` when unset. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 131_072;
/** Longest model id an upstream is called with (Bedrock's modelId takes up to 2048 characters). */
export const MAX_UPSTREAM_MODEL_CHARS = 2048;
const PART_TOKEN_FIELDS = ['image', 'imageLowDetail', 'audio', 'file'] as const;

/**
 * One AI route of the `endpoints` prop: the models it allows and how its limits count.
 * @example
 * '/v1/chat/completions': {
 *   models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } },
 *   maxBodyBytes: 2_097_152,
 * }
 */
export interface EndpointConfig {
  /**
   * Models allowed on this endpoint by the name clients send, with their prices (`usd` limits
   * count them); any other model is refused (400).
   * @example
   * models: { 'gpt-4o': { inputPerMillion: 2.5, outputPerMillion: 10 }, 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } }
   */
  readonly models: Readonly<Record<string, ModelPrice>>;
  /** A plan's limits on this endpoint count per tenant, or once for the whole system (`global`). @default 'tenant' */
  readonly scope?: 'tenant' | 'global';
  /**
   * Largest request body accepted, in bytes; at most 3,000,000 (a Lambda event is at most 6 MB,
   * and a body's quotes and backslashes double in it).
   * @default 1048576 (1 MiB)
   */
  readonly maxBodyBytes?: number;
  /** Accept `n` > 1 (several completions per request). @default false */
  readonly allowN?: boolean;
}

/** `EndpointConfig.maxBodyBytes` when unset. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;

/**
 * Escalating Retry-After for an identity that keeps sending while limited (the `penalty` prop, every
 * field optional there). All durations in milliseconds.
 * @example
 * penalty: { threshold: 5, windowMs: 120_000 }
 */
export interface PenaltyPolicy {
  /** Denials within `windowMs` before Retry-After starts to grow. @default 3 */
  readonly threshold: number;
  /** Denials further apart than this start the count again. @default 60000 */
  readonly windowMs: number;
  /** Retry-After of the first escalation; doubles with each further denial. @default 2000 */
  readonly baseMs: number;
  /** Retry-After never grows beyond this. @default 300000 */
  readonly maxMs: number;
}

/**
 * The validated configuration the functions run with (config.json beside each handler, and the
 * table's copy the CLI reads): the props' plans, endpoints, global limits, failure modes and penalty.
 */
export interface LimiterConfig {
  /** Plans by name (the `plans` prop). */
  readonly plans: Readonly<Record<string, Plan>>;
  /** AI routes by path (e.g. /v1/chat/completions). The brake and the limits apply to these. */
  readonly endpoints: Readonly<Record<string, EndpointConfig>>;
  /** System-wide limits, sharded across `shards` items so no single partition caps throughput. @default - none */
  readonly global?: {
    /** The limits every request counts against, whatever its tenant. */
    readonly limits: readonly LimitSpec[];
    /** How many items share each global limit (the `globalShards` prop). @default 8 */
    readonly shards?: number;
    /** Weighted fair shares when the limits run short (the `globalFairShare` prop; lambda/engine/share.ts). @default false */
    readonly fairShare?: boolean;
  };
  /** What a layer does when DynamoDB fails: deny (closed) or let the request through (open). @default - `closed` for every layer */
  readonly failureModes?: Readonly<Partial<Record<Layer, FailureMode>>>;
  /** Escalating Retry-After (the `penalty` prop). @default - DEFAULT_PENALTY */
  readonly penalty?: Partial<PenaltyPolicy>;
  /** GET /v1/limits calls a user may make per minute (each is a DynamoDB read). @default 60 */
  readonly limitsRequestsPerMinute?: number;
}

/** `LimiterConfig.limitsRequestsPerMinute` when unset. */
export const DEFAULT_LIMITS_REQUESTS_PER_MINUTE = 60;

/** The penalty when the `penalty` prop leaves a field out. */
export const DEFAULT_PENALTY: PenaltyPolicy = { threshold: 3, windowMs: 60_000, baseMs: 2_000, maxMs: 300_000 };
/** Closed (deny on store failure) for every layer unless configured; the decision says which it used. */
export const DEFAULT_FAILURE_MODE: FailureMode = 'closed';
/** The `globalShards` prop when unset. */
export const DEFAULT_GLOBAL_SHARDS = 8;

const NAMED_PERIODS: Record<number, string> = {
  1: 'per_second',
  60: 'per_minute',
  3600: 'per_hour',
  86400: 'per_day',
  604800: 'per_week',
};

/**
 * Seconds a limit takes to refill from empty (or its window): names it per_minute, per_day, ...
 * @param limit - the bucket
 */
export function periodSeconds(limit: Limit): number {
  if (limit.shape === 'sliding_window') return limit.windowMs / 1000; // a calendar budget: its longest period
  return limit.capacity / (limit.shape === 'token_bucket' ? limit.refillPerSecond : limit.drainPerSecond);
}

/**
 * A limit's name: its `name`, or its period (`per_minute`, `per_day`, ..., `per_90s` otherwise).
 * @param spec - the limit
 */
export function specName(spec: LimitSpec): string {
  if (spec.name) return spec.name;
  // Not the zone: a plan that moves a budget to another zone keeps the period's spend (periods are numbered alike everywhere).
  if (spec.limit.shape === 'sliding_window' && spec.limit.calendar) return `per_calendar_${spec.limit.calendar.period}`;
  const seconds = Math.round(periodSeconds(spec.limit) * 1000) / 1000;
  return NAMED_PERIODS[seconds] ?? `per_${String(seconds).replace('.', '_')}s`;
}

/**
 * The code a denial carries: tenant_tokens_per_day, user_requests_per_minute, ...
 * @param layer - the layer the limit is on
 * @param spec - the limit
 */
export const limitCode = (layer: Layer, spec: LimitSpec): string => `${layer}_${spec.counts}_${specName(spec)}`;

/**
 * The bucket's name inside its layer's item: r_per_minute, t_per_day, u_per_day.
 * @param spec - the limit
 */
export const bucketName = (spec: LimitSpec): string => `${spec.counts[0]}_${specName(spec)}`;

// Plan helpers: the shape of a limit reads in one line.
/**
 * Options of every limit helper (`requestsPerMinute(60, { shadow: true })`).
 * @example
 * requestsPerDay(1_000, { name: 'trial', shadow: true })
 */
export interface LimitOptions {
  /**
   * Names the bucket, and the limit in codes and headers; 1 to 40 of a-z, 0-9 and _. Two limits
   * of a layer that count the same thing need different names.
   * @default - its period: `per_minute`, `per_day`, ...
   */
  readonly name?: string;
  /**
   * Measure the limit, show it and log what it would deny (`shadow_denied`), without enforcing it.
   * Promote a shadow limit by dropping `shadow` and keeping its name: the bucket, and what it has counted, stay.
   * @default false
   */
  readonly shadow?: boolean;
  /** Token limits: what one output token counts (see LimitSpec.outputWeight). @default 1 */
  readonly outputWeight?: number;
  /** Calendar budgets: percents of the limit at which to alert, once per period each. @default [50, 80, 100] */
  readonly alertAt?: readonly number[];
}
/**
 * A limit on requests (each costs 1) with any bucket shape.
 * @param limit - the bucket, in requests
 * @param options - its name, shadow mode
 * @example
 * requests(leakyBucket(1, 10)) // at most one request per 100 ms, no bursts
 */
export const requests = (limit: Limit, options: LimitOptions = {}): LimitSpec => ({
  counts: 'requests',
  limit,
  ...options,
});
/**
 * A limit on tokens (input + output, reserved before the call and settled on actual usage) with any bucket shape.
 * @param limit - the bucket, in tokens
 * @param options - its name, shadow mode, output weight
 * @example
 * tokens(tokenBucket(50_000, 500)) // bursts of 50,000 tokens, 500 a second sustained
 */
export const tokens = (limit: Limit, options: LimitOptions = {}): LimitSpec => ({
  counts: 'tokens',
  limit,
  ...options,
});
/**
 * A spend limit with any bucket shape, counted in micro-dollars (1 USD = 1,000,000) from the
 * model's prices (`ModelPrice`): reserved at the request's bound, settled on actual usage.
 * @param limit - the bucket, in micro-dollars
 * @param options - its name, shadow mode
 * @example
 * usd(slidingWindow(10_000_000, '1 h')) // at most $10 in any hour
 */
export const usd = (limit: Limit, options: LimitOptions = {}): LimitSpec => ({ counts: 'usd', limit, ...options });
/**
 * At most `n` requests in any 60 seconds (a sliding window of 10 sub-windows, conservative by at most 6 seconds).
 * @param n - requests a minute, > 0
 * @param options - its name, shadow mode
 * @example
 * requestsPerMinute(60)
 */
export const requestsPerMinute = (n: number, options?: LimitOptions): LimitSpec =>
  requests(slidingWindow(n, '1 m'), options);
/**
 * At most `n` requests in any 24 hours (a sliding window of 24 one-hour sub-windows, conservative
 * by at most one hour).
 * @param n - requests a day, > 0
 * @param options - its name, shadow mode
 * @example
 * requestsPerDay(1_000, { shadow: true })
 */
export const requestsPerDay = (n: number, options?: LimitOptions): LimitSpec =>
  requests(slidingWindow(n, '1 d', 24), options);
/**
 * `n` tokens a minute: a token bucket of capacity `n` refilling `n`/60 a second, so a full bucket
 * allows a burst of `n` at once.
 * @param n - tokens a minute, > 0
 * @param options - its name, shadow mode, output weight
 * @example
 * tokensPerMinute(20_000)
 */
export const tokensPerMinute = (n: number, options?: LimitOptions): LimitSpec =>
  tokens(tokenBucket(n, n / 60), options);
/**
 * `n` tokens a day: a token bucket of capacity `n` refilling `n`/86,400 a second (a full day's
 * tokens may be spent at once, then they come back over 24 hours).
 * @param n - tokens a day, > 0
 * @param options - its name, shadow mode, output weight
 * @example
 * tokensPerDay(1_000_000)
 */
export const tokensPerDay = (n: number, options?: LimitOptions): LimitSpec =>
  tokens(tokenBucket(n, n / 86_400), options);
/**
 * `dollars` of spend a day, priced with the endpoint's model prices: a token bucket of `dollars`
 * × 1,000,000 micro-dollars refilling over 24 hours (a day's budget may be spent at once).
 * @param dollars - USD a day, > 0 (fractions allowed: 0.5 is 50 cents)
 * @param options - its name, shadow mode
 * @example
 * usdPerDay(50)
 */
export const usdPerDay = (dollars: number, options?: LimitOptions): LimitSpec =>
  usd(tokenBucket(dollars * 1_000_000, (dollars * 1_000_000) / 86_400), options);
/** Options of the calendar budget helpers: a limit's options and the zone its periods are reckoned in. */
export interface CalendarOptions extends LimitOptions {
  /** The IANA time zone whose local midnight starts each period ('Europe/Paris', 'America/New_York'). @default 'UTC' */
  readonly timeZone?: string;
}
const calendar = (period: Period, counts: 'tokens' | 'usd', n: number, options: CalendarOptions = {}): LimitSpec => {
  const { timeZone, ...rest } = options;
  return { counts, limit: calendarBudget(n, period, timeZone), ...rest };
};
/**
 * At most `n` tokens each calendar day of `timeZone`, from local midnight (a calendar budget).
 * @param n tokens a day
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export const tokensPerCalendarDay = (n: number, options?: CalendarOptions): LimitSpec =>
  calendar('day', 'tokens', n, options);
/**
 * At most `n` tokens each calendar month of `timeZone`, from the 1st at local midnight.
 * @param n tokens a month
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 * @example tokensPerMonth(50_000_000, { timeZone: 'America/New_York', alertAt: [80, 100] })
 */
export const tokensPerMonth = (n: number, options?: CalendarOptions): LimitSpec =>
  calendar('month', 'tokens', n, options);
/**
 * At most `dollars` each calendar day of `timeZone`, from local midnight.
 * @param dollars US dollars a day
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export const usdPerCalendarDay = (dollars: number, options?: CalendarOptions): LimitSpec =>
  calendar('day', 'usd', dollars * 1_000_000, options);
/**
 * At most `dollars` each ISO week (from Monday, local midnight) of `timeZone`.
 * @param dollars US dollars a week
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 */
export const usdPerWeek = (dollars: number, options?: CalendarOptions): LimitSpec =>
  calendar('week', 'usd', dollars * 1_000_000, options);
/**
 * At most `dollars` each calendar month of `timeZone`, from the 1st at local midnight: a
 * contract's monthly budget. A 429 says to retry when the next month starts there.
 * @param dollars US dollars a month
 * @param options the zone, and a limit's options (`alertAt`, `name`, `shadow`)
 * @example usdPerMonth(500, { timeZone: 'Europe/Paris' })
 */
export const usdPerMonth = (dollars: number, options?: CalendarOptions): LimitSpec =>
  calendar('month', 'usd', dollars * 1_000_000, options);

function fail(path: string, message: string): never {
  throw new InvalidLimitError(`${path}: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Rebuilds a Limit from JSON through its factory, so every rule of the factory applies.
 * @param value - the JSON: `{ shape, ... }`, a sliding window's `windowMs` also as `window: "1m"`
 * @param path - where it is, for the error message
 */
export function parseLimit(value: unknown, path: string): Limit {
  if (!isRecord(value)) fail(path, `expected a limit object, got ${JSON.stringify(value)}`);
  try {
    switch (value.shape) {
      case 'token_bucket': {
        const credit = value.burstCredit as { capacity: number; accruePerSecond: number } | undefined;
        return tokenBucket(value.capacity as number, value.refillPerSecond as number, credit);
      }
      case 'leaky_bucket':
        return leakyBucket(value.capacity as number, value.drainPerSecond as number);
      case 'sliding_window':
        if (value.calendar !== undefined) {
          const calendar = (isRecord(value.calendar) ? value.calendar : {}) as Record<string, unknown>;
          return calendarBudget(value.limit as number, calendar.period as Period, calendar.timeZone as string);
        }
        // windowMs, or window as a duration ("1m", "2h30m") for configurations written by hand.
        return slidingWindow(
          value.limit as number,
          (value.windowMs ?? value.window) as number | string,
          value.subWindows as number,
        );
      default:
        return fail(
          path,
          `unknown shape ${JSON.stringify(value.shape)}: use token_bucket, leaky_bucket or sliding_window`,
        );
    }
  } catch (err) {
    if (err instanceof InvalidLimitError && !err.message.startsWith(path)) fail(path, err.message);
    throw err;
  }
}

/**
 * Validates a layer's list of limits from JSON (a plan, overrides or global limits); throws
 * InvalidLimitError naming the path and the fix.
 * @param value - the JSON list
 * @param path - where it is, for the error message
 */
export function parseSpecs(value: unknown, path: string): LimitSpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail(path, 'expected a list of limits');
  const specs = value.map((item, i) => {
    const at = `${path}[${i}]`;
    if (!isRecord(item)) fail(at, 'expected { counts, limit, name?, shadow?, outputWeight?, alertAt? }');
    if (!COUNTS.includes(item.counts as Counts))
      fail(`${at}.counts`, `expected one of ${COUNTS.join(', ')}, got ${JSON.stringify(item.counts)}`);
    if (item.name !== undefined && (typeof item.name !== 'string' || !/^[a-z0-9_]{1,40}$/.test(item.name)))
      fail(`${at}.name`, 'use 1-40 of a-z, 0-9 and _');
    if (item.shadow !== undefined && typeof item.shadow !== 'boolean') fail(`${at}.shadow`, 'expected true or false');
    const weight = item.outputWeight;
    if (weight !== undefined) {
      if (item.counts !== 'tokens') fail(`${at}.outputWeight`, 'only a token limit weighs output');
      if (!(typeof weight === 'number' && Number.isFinite(weight) && weight >= 1 && weight <= MAX_OUTPUT_WEIGHT))
        fail(`${at}.outputWeight`, `expected a number from 1 to ${MAX_OUTPUT_WEIGHT}, got ${JSON.stringify(weight)}`);
    }
    const limit = parseLimit(item.limit, `${at}.limit`);
    const alertAt = item.alertAt;
    if (alertAt !== undefined) {
      if (limit.shape !== 'sliding_window' || !limit.calendar) fail(`${at}.alertAt`, 'only a calendar budget alerts');
      const percents = Array.isArray(alertAt) ? alertAt : [alertAt];
      if (!Array.isArray(alertAt) || percents.some((p) => !(Number.isInteger(p) && p >= 1 && p <= 100)))
        fail(`${at}.alertAt`, `expected a list of whole percents from 1 to 100, got ${JSON.stringify(alertAt)}`);
    }
    return {
      counts: item.counts as Counts,
      limit,
      ...(item.name ? { name: item.name as string } : {}),
      ...(item.shadow ? { shadow: true } : {}),
      ...(weight !== undefined && weight !== 1 ? { outputWeight: weight as number } : {}),
      ...(alertAt !== undefined ? { alertAt: [...new Set(alertAt as number[])].sort((a, b) => a - b) } : {}),
    };
  });
  const seen = new Set<string>();
  for (const spec of specs) {
    const id = bucketName(spec);
    if (seen.has(id))
      fail(path, `two ${spec.counts} limits are both named ${specName(spec)}: give one a distinct name`);
    seen.add(id);
  }
  return specs;
}

const PLAN_FIELDS = ['tenant', 'user', 'endpoints', 'outputReservation', 'globalReserve', 'globalWeight'];

/**
 * Validates a plan or a tenant's overrides from JSON; throws InvalidLimitError naming the path
 * and the fix (an unknown field included).
 * @param value - the JSON object
 * @param path - where it is, for the error message
 */
export function parsePlan(value: unknown, path: string): Plan {
  if (!isRecord(value)) fail(path, 'expected { tenant?, user?, endpoints? }');
  // A misspelt field ("users") would otherwise be ignored, and its limits never enforced.
  for (const field of Object.keys(value))
    if (!PLAN_FIELDS.includes(field)) fail(`${path}.${field}`, `unknown field: use ${PLAN_FIELDS.join(', ')}`);
  const endpoints: Record<string, LimitSpec[]> = {};
  if (value.endpoints !== undefined) {
    if (!isRecord(value.endpoints)) fail(`${path}.endpoints`, 'expected an object keyed by path');
    for (const [route, specs] of Object.entries(value.endpoints))
      endpoints[route] = parseSpecs(specs, `${path}.endpoints.${route}`);
  }
  let outputReservation: number | undefined;
  if (value.outputReservation !== undefined) {
    outputReservation = Number(value.outputReservation);
    if (!Number.isInteger(outputReservation) || outputReservation < 1)
      fail(
        `${path}.outputReservation`,
        `expected a whole number of tokens >= 1, got ${JSON.stringify(value.outputReservation)}`,
      );
  }
  let globalReserve: number | undefined;
  if (value.globalReserve !== undefined) {
    globalReserve = Number(value.globalReserve);
    if (
      typeof value.globalReserve !== 'number' ||
      !Number.isInteger(globalReserve) ||
      globalReserve < 1 ||
      globalReserve > 99
    )
      fail(
        `${path}.globalReserve`,
        `expected a whole percent from 1 to 99 of each global limit to keep from this plan, got ${JSON.stringify(value.globalReserve)}`,
      );
  }
  const globalWeight = value.globalWeight;
  if (
    globalWeight !== undefined &&
    !(
      typeof globalWeight === 'number' &&
      Number.isFinite(globalWeight) &&
      globalWeight >= 0.01 &&
      globalWeight <= 10_000
    )
  )
    fail(`${path}.globalWeight`, `expected a weight from 0.01 to 10000, got ${JSON.stringify(globalWeight)}`);
  return {
    tenant: parseSpecs(value.tenant, `${path}.tenant`),
    user: parseSpecs(value.user, `${path}.user`),
    endpoints,
    ...(outputReservation ? { outputReservation } : {}),
    ...(globalReserve ? { globalReserve } : {}),
    ...(globalWeight !== undefined ? { globalWeight: globalWeight as number } : {}),
  };
}

/**
 * Validates a whole configuration (from props at synth, or from JSON at a cold start).
 * @param value - the configuration as JSON
 */
export function parseConfig(value: unknown): LimiterConfig {
  if (!isRecord(value)) fail('config', 'expected an object');
  if (!isRecord(value.plans) || Object.keys(value.plans).length === 0)
    fail('config.plans', 'expected at least one plan');
  if (!isRecord(value.endpoints) || Object.keys(value.endpoints).length === 0)
    fail('config.endpoints', 'expected at least one endpoint');
  const endpoints: Record<string, EndpointConfig> = {};
  for (const [route, raw] of Object.entries(value.endpoints))
    endpoints[route] = parseEndpoint(route, raw, `config.endpoints.${route}`);
  const plans: Record<string, Plan> = {};
  for (const [name, plan] of Object.entries(value.plans)) plans[name] = parsePlanFor(endpoints, name, plan);
  const global = value.global === undefined ? undefined : parseGlobal(value.global);
  if (global) for (const [name, plan] of Object.entries(plans)) checkReserve(plan, global, `config.plans.${name}`);
  for (const [name, plan] of Object.entries(plans))
    if (plan.globalWeight !== undefined && !global?.fairShare)
      fail(
        `config.plans.${name}.globalWeight`,
        'a weight counts only in a shared global limit: set globalFairShare: true (with globalLimits), or remove it',
      );
  const perMinute = value.limitsRequestsPerMinute;
  if (perMinute !== undefined && !(Number.isInteger(perMinute) && (perMinute as number) >= 1))
    fail('config.limitsRequestsPerMinute', `expected a whole number >= 1, got ${JSON.stringify(perMinute)}`);
  return {
    plans,
    endpoints,
    ...(global ? { global } : {}),
    failureModes: parseFailureModes(value.failureModes),
    penalty: parsePenalty(value.penalty),
    ...(perMinute !== undefined ? { limitsRequestsPerMinute: perMinute as number } : {}),
  };
}

/**
 * A plan's global reserve must leave its tenants a line of at least one request per shard of every
 * global window (a window counts whole requests, and its line is rounded down per shard).
 */
function checkReserve(plan: Plan, global: NonNullable<LimiterConfig['global']>, at: string): void {
  const reserve = plan.globalReserve;
  if (!reserve) return;
  const shards = global.shards ?? DEFAULT_GLOBAL_SHARDS;
  for (const spec of global.limits) {
    if (spec.limit.shape !== 'sliding_window') continue;
    const perShard = Math.floor(spec.limit.limit / shards);
    const line = Math.floor((perShard * (100 - reserve)) / 100);
    if (line < 1)
      fail(
        `${at}.globalReserve`,
        `${reserve}% of ${specName(spec)}'s ${perShard} per shard leaves this plan no request on a shard: ` +
          'lower the reserve or the shards, or make the global limit a token bucket',
      );
  }
}

/**
 * The AI routes the proxy serves: OpenAI's Chat Completions, Embeddings and Responses, and
 * Anthropic's Messages (whose /v1/messages/count_tokens comes with it).
 */
export const SERVED_ROUTES = ['/v1/chat/completions', '/v1/embeddings', '/v1/responses', '/v1/messages'] as const;

function parseEndpoint(route: string, raw: unknown, at: string): EndpointConfig {
  if (!route.startsWith('/')) fail(at, 'an endpoint is a path that starts with /');
  if (!(SERVED_ROUTES as readonly string[]).includes(route))
    fail(at, `the proxy does not serve this route: use ${SERVED_ROUTES.join(', ')}`);
  if (!isRecord(raw) || !isRecord(raw.models) || Object.keys(raw.models).length === 0)
    fail(`${at}.models`, 'expected at least one allowed model with its prices');
  const models: Record<string, ModelPrice> = {};
  for (const [model, price] of Object.entries(raw.models)) models[model] = parsePrice(price, `${at}.models.${model}`);
  if (raw.scope !== undefined && raw.scope !== 'tenant' && raw.scope !== 'global')
    fail(`${at}.scope`, "expected 'tenant' or 'global'");
  if (raw.maxBodyBytes !== undefined && !(Number.isInteger(raw.maxBodyBytes) && (raw.maxBodyBytes as number) > 0))
    fail(`${at}.maxBodyBytes`, 'expected a whole number of bytes > 0');
  if (raw.allowN !== undefined && typeof raw.allowN !== 'boolean') fail(`${at}.allowN`, 'expected true or false');
  return {
    models,
    ...(raw.scope ? { scope: raw.scope as 'tenant' | 'global' } : {}),
    ...(raw.maxBodyBytes ? { maxBodyBytes: raw.maxBodyBytes as number } : {}),
    ...(raw.allowN !== undefined ? { allowN: raw.allowN as boolean } : {}),
  };
}

function parsePrice(price: unknown, at: string): ModelPrice {
  if (!isRecord(price) || !(Number(price.inputPerMillion) >= 0) || !(Number(price.outputPerMillion) >= 0))
    fail(at, 'expected { inputPerMillion, outputPerMillion } in USD, both >= 0');
  if (price.encoding !== undefined && !['o200k_base', 'cl100k_base', 'utf8_bytes'].includes(price.encoding as string))
    fail(`${at}.encoding`, "expected 'o200k_base', 'cl100k_base' or 'utf8_bytes'");
  const partTokens: { -readonly [K in keyof PartTokens]?: number } = {};
  if (price.partTokens !== undefined) {
    if (!isRecord(price.partTokens)) fail(`${at}.partTokens`, `expected { ${PART_TOKEN_FIELDS.join(', ')} } in tokens`);
    for (const [field, n] of Object.entries(price.partTokens)) {
      if (!(PART_TOKEN_FIELDS as readonly string[]).includes(field))
        fail(`${at}.partTokens.${field}`, `unknown part: use ${PART_TOKEN_FIELDS.join(', ')}`);
      if (!Number.isInteger(n) || (n as number) < 0)
        fail(`${at}.partTokens.${field}`, `expected a whole number of tokens >= 0, got ${JSON.stringify(n)}`);
      partTokens[field as keyof PartTokens] = n as number;
    }
  }
  const tokenCount = (field: 'maxOutputTokens' | 'defaultMaxTokens') => {
    const n = price[field];
    if (n !== undefined && !(Number.isInteger(n) && (n as number) >= 1))
      fail(`${at}.${field}`, `expected a whole number of tokens >= 1, got ${JSON.stringify(n)}`);
    return n === undefined ? {} : { [field]: n as number };
  };
  const usd = (field: string, value: unknown, path = `${at}.${field}`) => {
    if (value !== undefined && !(typeof value === 'number' && value >= 0))
      fail(path, 'expected USD per million tokens >= 0');
    return value === undefined ? {} : { [field]: value };
  };
  if (price.hiddenReasoning !== undefined && typeof price.hiddenReasoning !== 'boolean')
    fail(`${at}.hiddenReasoning`, 'expected true or false');
  if (price.outputCapField !== undefined && !OUTPUT_CAP_FIELDS.includes(price.outputCapField as OutputCapField))
    fail(`${at}.outputCapField`, `expected one of ${OUTPUT_CAP_FIELDS.map((f) => `'${f}'`).join(', ')}`);
  const upstreamModel = price.upstreamModel;
  if (
    upstreamModel !== undefined &&
    !(
      typeof upstreamModel === 'string' &&
      upstreamModel.length >= 1 &&
      upstreamModel.length <= MAX_UPSTREAM_MODEL_CHARS
    )
  )
    fail(`${at}.upstreamModel`, `expected the upstream's model id, 1-${MAX_UPSTREAM_MODEL_CHARS} characters`);
  const cached = price.cachedInputPerMillion;
  if (typeof cached === 'number' && cached > Number(price.inputPerMillion))
    fail(`${at}.cachedInputPerMillion`, 'expected at most inputPerMillion (a cached token never costs more)');
  return {
    inputPerMillion: Number(price.inputPerMillion),
    outputPerMillion: Number(price.outputPerMillion),
    ...(upstreamModel !== undefined ? { upstreamModel: upstreamModel as string } : {}),
    ...(price.encoding ? { encoding: price.encoding as NonNullable<ModelPrice['encoding']> } : {}),
    ...(Object.keys(partTokens).length ? { partTokens } : {}),
    ...tokenCount('maxOutputTokens'),
    ...tokenCount('defaultMaxTokens'),
    ...(price.outputCapField !== undefined ? { outputCapField: price.outputCapField as OutputCapField } : {}),
    ...usd('cachedInputPerMillion', cached),
    ...usd('audioInputPerMillion', price.audioInputPerMillion),
    ...usd('audioOutputPerMillion', price.audioOutputPerMillion),
    ...parseTiers(price.serviceTiers, `${at}.serviceTiers`),
    ...(typeof price.hiddenReasoning === 'boolean' ? { hiddenReasoning: price.hiddenReasoning } : {}),
  };
}

function parseTiers(raw: unknown, at: string): { serviceTiers?: Record<string, TierPrice> } {
  if (raw === undefined) return {};
  if (!isRecord(raw)) fail(at, 'expected { <tier>: { inputPerMillion, outputPerMillion } }');
  const tiers: Record<string, TierPrice> = {};
  for (const [tier, p] of Object.entries(raw)) {
    if (tier === 'auto' || tier === 'default') fail(`${at}.${tier}`, `'${tier}' uses the model's own prices`);
    const ok = (v: unknown) => typeof v === 'number' && v >= 0;
    if (!isRecord(p) || !ok(p.inputPerMillion) || !ok(p.outputPerMillion))
      fail(`${at}.${tier}`, 'expected { inputPerMillion, outputPerMillion } in USD, both >= 0');
    if (
      p.cachedInputPerMillion !== undefined &&
      !(ok(p.cachedInputPerMillion) && (p.cachedInputPerMillion as number) <= (p.inputPerMillion as number))
    )
      fail(`${at}.${tier}.cachedInputPerMillion`, "expected USD >= 0 and at most the tier's inputPerMillion");
    tiers[tier] = {
      inputPerMillion: p.inputPerMillion as number,
      outputPerMillion: p.outputPerMillion as number,
      ...(p.cachedInputPerMillion !== undefined ? { cachedInputPerMillion: p.cachedInputPerMillion as number } : {}),
    };
  }
  return { serviceTiers: tiers };
}

/** A plan whose endpoint limits name configured endpoints, and whose layers fit one DynamoDB expression each. */
function parsePlanFor(endpoints: Record<string, EndpointConfig>, name: string, raw: unknown): Plan {
  const plan = parsePlan(raw, `config.plans.${name}`);
  for (const route of Object.keys(plan.endpoints ?? {}))
    if (!endpoints[route])
      fail(
        `config.plans.${name}.endpoints.${route}`,
        `no such endpoint: add it to config.endpoints or remove the limits`,
      );
  requireExpressionsFit(plan.tenant, `config.plans.${name}.tenant`);
  requireExpressionsFit(plan.user, `config.plans.${name}.user`);
  for (const [route, specs] of Object.entries(plan.endpoints ?? {}))
    requireExpressionsFit(specs, `config.plans.${name}.endpoints.${route}`);
  return plan;
}

function parseGlobal(raw: unknown): NonNullable<LimiterConfig['global']> {
  if (!isRecord(raw)) fail('config.global', 'expected { limits, shards?, fairShare? }');
  const shards = raw.shards === undefined ? DEFAULT_GLOBAL_SHARDS : Number(raw.shards);
  if (!Number.isInteger(shards) || shards < 1 || shards > 1000)
    fail('config.global.shards', `expected an integer 1-1000, got ${JSON.stringify(raw.shards)}`);
  const limits = parseSpecs(raw.limits, 'config.global.limits');
  for (const spec of limits) {
    if (spec.limit.shape === 'sliding_window' && spec.limit.limit < shards)
      fail(
        'config.global.limits',
        `${specName(spec)} allows ${spec.limit.limit}, fewer than its ${shards} shards: lower the number of shards`,
      );
  }
  if (raw.fairShare !== undefined && typeof raw.fairShare !== 'boolean')
    fail('config.global.fairShare', `expected true or false, got ${JSON.stringify(raw.fairShare)}`);
  requireExpressionsFit(limits, 'config.global.limits');
  if (raw.fairShare && !limits.some((s) => s.limit.shape === 'token_bucket' || s.limit.shape === 'leaky_bucket'))
    fail(
      'config.global.fairShare',
      'shares apply to token and leaky buckets, and no global limit is one: give the limit to share as a token ' +
        'bucket (tokensPerMinute(n), requests(tokenBucket(n, n / 60))), or leave fairShare out',
    );
  return { limits, shards, ...(raw.fairShare ? { fairShare: true } : {}) };
}

function parseFailureModes(raw: unknown): Partial<Record<Layer, FailureMode>> {
  const failureModes: Partial<Record<Layer, FailureMode>> = {};
  if (raw === undefined) return failureModes;
  if (!isRecord(raw)) fail('config.failureModes', 'expected { tenant?, user?, endpoint?, global? }');
  for (const [layer, mode] of Object.entries(raw)) {
    if (!LAYERS.includes(layer as Layer))
      fail(`config.failureModes.${layer}`, `unknown layer: use ${LAYERS.join(', ')}`);
    if (mode !== 'open' && mode !== 'closed') fail(`config.failureModes.${layer}`, "expected 'open' or 'closed'");
    failureModes[layer as Layer] = mode;
  }
  return failureModes;
}

function parsePenalty(raw: unknown): Partial<PenaltyPolicy> {
  const penalty: { -readonly [K in keyof PenaltyPolicy]?: number } = {};
  if (raw === undefined) return penalty;
  if (!isRecord(raw)) fail('config.penalty', 'expected { threshold?, windowMs?, baseMs?, maxMs? }');
  for (const [field, n] of Object.entries(raw)) {
    if (!(field in DEFAULT_PENALTY)) fail(`config.penalty.${field}`, 'unknown field');
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0)
      fail(`config.penalty.${field}`, `expected a number >= 0, got ${JSON.stringify(n)}`);
    penalty[field as keyof PenaltyPolicy] = n;
  }
  return penalty;
}

/** A layer's limits share one item and one write: its expressions must fit DynamoDB's 4 KB per expression. */
function requireExpressionsFit(specs: readonly LimitSpec[] | undefined, at: string): void {
  if (!specs?.length) return;
  const bound = expressionBound(specs.map((s) => s.limit));
  const longest = Math.max(bound.condition, bound.update);
  if (longest > MAX_EXPRESSION_BYTES)
    fail(
      at,
      `the layer's DynamoDB expressions can reach ${longest} bytes, over DynamoDB's limit of ` +
        `${MAX_EXPRESSION_BYTES} per expression: use fewer subWindows or fewer limits in this layer`,
    );
}

/**
 * A plan with a tenant's overrides applied: an override replaces the limit of the same counts and name, or adds one.
 * @param plan - the tenant's plan
 * @param overrides - the tenant's overrides, if any
 */
export function applyOverrides(plan: Plan, overrides: Overrides | undefined): Plan {
  if (!overrides) return plan;
  const merge = (base: readonly LimitSpec[] = [], extra: readonly LimitSpec[] = []): LimitSpec[] => {
    const byName = new Map(base.map((s) => [bucketName(s), s]));
    for (const s of extra) byName.set(bucketName(s), s);
    return [...byName.values()];
  };
  const endpoints: Record<string, LimitSpec[]> = {};
  for (const route of new Set([...Object.keys(plan.endpoints ?? {}), ...Object.keys(overrides.endpoints ?? {})])) {
    endpoints[route] = merge(plan.endpoints?.[route], overrides.endpoints?.[route]);
  }
  const outputReservation = overrides.outputReservation ?? plan.outputReservation;
  const globalReserve = overrides.globalReserve ?? plan.globalReserve;
  const globalWeight = overrides.globalWeight ?? plan.globalWeight;
  return {
    tenant: merge(plan.tenant, overrides.tenant),
    user: merge(plan.user, overrides.user),
    endpoints,
    ...(outputReservation ? { outputReservation } : {}),
    ...(globalReserve ? { globalReserve } : {}),
    ...(globalWeight !== undefined ? { globalWeight } : {}),
  };
}

/**
 * One shard's share of a global limit, so that all shards together allow exactly the limit.
 * @param limit - the global limit
 * @param shard - which shard, from 0
 * @param shards - how many shards
 */
export function shardOf(limit: Limit, shard: number, shards: number): Limit {
  switch (limit.shape) {
    case 'token_bucket':
      return tokenBucket(
        limit.capacity / shards,
        limit.refillPerSecond / shards,
        limit.burstCredit && {
          capacity: limit.burstCredit.capacity / shards,
          accruePerSecond: limit.burstCredit.accruePerSecond / shards,
        },
      );
    case 'leaky_bucket':
      return leakyBucket(limit.capacity / shards, limit.drainPerSecond / shards);
    case 'sliding_window': {
      const base = Math.floor(limit.limit / shards);
      return limit.calendar
        ? calendarBudget(base + (shard < limit.limit % shards ? 1 : 0), limit.calendar.period, limit.calendar.timeZone)
        : slidingWindow(base + (shard < limit.limit % shards ? 1 : 0), limit.windowMs, limit.subWindows);
    }
  }
}
