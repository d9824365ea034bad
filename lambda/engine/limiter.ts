import { type AlertSink, type BudgetAlert, crossings } from './alerts';
import type { LimitOutcome } from './contract';
import { ItemThrottledError, LayerUnavailableError, LimiterError, UnknownPlanError } from './errors';
import type { Limit } from './limits';
import { escalate, PENALTY_ATTR } from './penalty';
import {
  applyOverrides,
  bucketName,
  DEFAULT_FAILURE_MODE,
  DEFAULT_GLOBAL_SHARDS,
  DEFAULT_PENALTY,
  type FailureMode,
  type Layer,
  type LimiterConfig,
  type LimitSpec,
  limitCode,
  type Overrides,
  type PenaltyPolicy,
  type Plan,
  requests,
  shardOf,
  specName,
  DEFAULT_LIMITS_REQUESTS_PER_MINUTE,
} from './plans';
import { slidingWindow } from './limits';
import { SHARE, ShareMeter } from './share';
import { type Check, type ItemOutcome, type LimitStore, type Spending, spendingOf } from './store';

export interface Identity {
  readonly tenant: string;
  readonly user: string;
}

export interface TenantRecord {
  readonly id: string;
  readonly plan: string;
  readonly overrides?: Overrides;
}

export type Strategy = 'parallel' | 'transaction';

/** What a request costs on token and usd limits. */
export interface Amounts {
  /** Input and output tokens. */
  readonly tokens: number;
  readonly microUsd: number;
  /** Of `tokens`, the output: counted `outputWeight` times on a limit that weighs output. @default 0 */
  readonly outputTokens?: number;
  /** Of the input, tokens read from the upstream's prompt cache (the usage ledger's; no limit counts them apart). @default 0 */
  readonly cachedTokens?: number;
  /** Of `outputTokens`, reasoning the upstream reported (the usage ledger's). @default 0 */
  readonly reasoningTokens?: number;
}

/** What `a` costs on a limit: its tokens (output weighed as the limit says), its micro-dollars, or nothing (requests). */
export function amountOn(spec: LimitSpec, a: Amounts): number {
  if (spec.counts === 'tokens') return a.tokens + ((spec.outputWeight ?? 1) - 1) * (a.outputTokens ?? 0);
  return spec.counts === 'usd' ? a.microUsd : 0;
}

export interface Verdict {
  readonly allowed: boolean;
  /** Every limit evaluated, in layer order (shadow limits included). */
  readonly limits: readonly LimitOutcome[];
  /** The first limit that denied (absent for a penalty-box denial). */
  readonly denied?: LimitOutcome;
  /** The denial's code: the limit's, or the one that put the identity in the penalty box. */
  readonly code?: string;
  readonly retryAfterMs?: number;
  /** Denied by the penalty box, or the wait was lengthened by it. */
  readonly penalized?: boolean;
  /** The layer whose item DynamoDB throttled (a denial no limit made: code <layer>_throughput). */
  readonly throttled?: Layer;
  /** Layers let through because the store failed and their failure mode is open. */
  readonly failedOpen: readonly Layer[];
  /** The global shard this request used (settlement must use the same). */
  readonly shard: number;
  /** The store's clock (epoch ms) just before this decision's writes: no later than their stamps. */
  readonly admittedAt?: number;
  /**
   * By item key, then bucket name: what each admitted check spent and the lease it used, so a
   * settlement gives back exactly what has not refilled since (store.ts, spendingOf).
   */
  readonly spending?: ReadonlyMap<string, ReadonlyMap<string, Spending>>;
}

/** What a limit costs in one decision: undefined leaves it out (its bucket is still kept in the item). */
export type Costing = (spec: LimitSpec) => { readonly mode: 'consume' | 'admit'; readonly cost: number } | undefined;

interface LayerCall {
  readonly layer: Layer;
  readonly key: string;
  readonly specs: readonly LimitSpec[];
  readonly checks: readonly Check[];
  readonly failureMode: FailureMode;
  readonly block?: string;
  readonly alsoHolds: readonly Limit[];
  /** Per spec, the code of a denial when the check is against part of its bucket (a reserve or a share); else the limit's. */
  readonly lineCodes?: readonly (string | undefined)[];
}

/** The 429 code of a request denied by the global reserve its plan keeps (Plan.globalReserve). */
export const GLOBAL_RESERVE_CODE = 'global_reserve';

/** The 429 code of a request denied because its tenant is past its share of a shared global limit (Plan.globalWeight). */
export const GLOBAL_SHARE_CODE = 'global_share';

/**
 * A limit with `part` (0 to 1) of it held back: the part of the bucket a check may use (a plan's
 * global reserve, a tenant's fair share). The bucket, its state and its refill are the same; only
 * the line is lower.
 */
function below(limit: Limit, part: number): Limit {
  const kept = (n: number) => n * (1 - part);
  // A window counts whole requests per slot: its line is rounded down, never under 1 (parseConfig
  // refuses a reserve that would leave less).
  if (limit.shape === 'sliding_window') return { ...limit, limit: Math.max(1, Math.floor(kept(limit.limit))) };
  // A bucket's line may fall between whole units (it is kept in ticks); its burst credit is the
  // headroom too, and is not the reserved plan's to spend.
  if (limit.shape === 'token_bucket')
    return { shape: 'token_bucket', capacity: kept(limit.capacity), refillPerSecond: limit.refillPerSecond };
  return { ...limit, capacity: kept(limit.capacity) };
}

/** Item keys per layer. Tenant and user ids never contain ':' (checked where identities are read). */
/** A user in the penalty box, as this container remembers it. */
interface PenaltyBox {
  readonly until: number;
  readonly code: string;
  readonly strikes: number;
  readonly last: number;
  /** The limits as they stood when the box closed (for the 429's headers). */
  readonly limits: readonly LimitOutcome[];
}

/** Retry-After of a 429 for a throttled item: DynamoDB's per-item budget is per second. */
export const THROTTLED_RETRY_AFTER_MS = 1_000;

export const layerKey = {
  tenant: (id: Identity, ns = '') => `${ns}t:${id.tenant}`,
  user: (id: Identity, ns = '') => `${ns}u:${id.tenant}:${id.user}`,
  endpoint: (id: Identity, route: string, scope: 'tenant' | 'global' = 'tenant', ns = '') =>
    `${ns}e:${scope === 'global' ? '*' : id.tenant}:${route}`,
  global: (shard: number, ns = '') => `${ns}g:${shard}`,
  /** The user's own budget for reading its limits (GET /v1/limits). */
  limitsReads: (id: Identity, ns = '') => `${ns}q:${id.tenant}:${id.user}`,
} as const;

export interface LimiterOptions {
  readonly store: LimitStore;
  readonly config: LimiterConfig;
  /** Parallel conditional writes with compensating refunds, or one transaction. @default 'parallel' */
  readonly strategy?: Strategy;
  /** Picks the global shard. @default Math.random */
  readonly random?: () => number;
  /** Prefix of every item key: several deployments (or test runs) can share one table. @default '' */
  readonly namespace?: string;
  /** Where compensation and escalation failures are reported. @default console.error as one JSON line */
  readonly log?: (entry: Record<string, unknown>) => void;
  /** Where calendar budgets' alerts go (lambda/engine/alerts.ts); none are claimed or sent without it. */
  readonly alerts?: AlertSink;
}

/**
 * Layered limits: tenant, user, endpoint, global, checked in that order, first hit wins. Each
 * layer is one DynamoDB item holding all of that layer's buckets, so a decision writes each
 * layer's item once; the layers go out in parallel (one round-trip of latency).
 */
export class Limiter {
  /** Penalty boxes this container knows of, with the strike count they were set at. */
  private readonly blocks = new Map<string, PenaltyBox>();
  /** Budget alerts this container claimed, or saw claimed by another: never claimed twice. */
  private readonly claimed = new Set<string>();
  private readonly penalty: PenaltyPolicy;
  private readonly strategy: Strategy;
  private readonly random: () => number;
  private readonly log: (entry: Record<string, unknown>) => void;
  /** Every tenant's recent use of the shared global limits (when `global.fairShare`). */
  private readonly share: ShareMeter | undefined;

  constructor(private readonly options: LimiterOptions) {
    this.penalty = { ...DEFAULT_PENALTY, ...options.config.penalty };
    this.strategy = options.strategy ?? 'parallel';
    this.random = options.random ?? Math.random;
    this.log = options.log ?? ((entry) => console.error(JSON.stringify(entry)));
    const global = options.config.global;
    if (global?.fairShare) {
      const topWeight = Math.max(...Object.values(options.config.plans).map((p) => p.globalWeight ?? 1));
      this.share = new ShareMeter(options.store, global.limits, topWeight, options.namespace ?? '', this.log);
    }
  }

  /** The tenant's plan with its overrides; throws UnknownPlanError (fail closed) when it names none. */
  planOf(tenant: TenantRecord): Plan {
    const plan = this.options.config.plans[tenant.plan];
    if (!plan) throw new UnknownPlanError(tenant.id, tenant.plan);
    return applyOverrides(plan, tenant.overrides);
  }

  private get ns(): string {
    return this.options.namespace ?? '';
  }

  /** The store this limiter decides on. */
  get store(): LimitStore {
    return this.options.store;
  }

  get shards(): number {
    return this.options.config.global?.shards ?? DEFAULT_GLOBAL_SHARDS;
  }

  pickShard(): number {
    return Math.min(this.shards - 1, Math.floor(this.random() * this.shards));
  }

  /**
   * The authorizer's decision: request limits spend 1; token and usd limits admit only while not
   * exhausted or in debt (the amounts are settled by the proxy, which sees the body).
   */
  async admit(identity: Identity, tenant: TenantRecord, route: string): Promise<Verdict> {
    const shard = this.pickShard();
    const userKey = layerKey.user(identity, this.ns);
    const blocked = this.blocks.get(userKey);
    const now = this.options.store.now().early;
    if (blocked && blocked.until > now) {
      // In the box: denied without touching any bucket; hammering on only makes the wait longer.
      const seen = { [PENALTY_ATTR.strikes]: blocked.strikes, [PENALTY_ATTR.last]: blocked.last };
      const escalation = await this.escalate(userKey, seen, now, blocked.until - now, blocked.code, blocked.limits);
      // The limits seen when the box closed: their quotas and policy make the 429's headers like every other 429's.
      return {
        allowed: false,
        limits: blocked.limits,
        code: blocked.code,
        retryAfterMs: escalation.retryAfterMs,
        penalized: true,
        failedOpen: [],
        shard,
      };
    }
    const costing: Costing = (spec) =>
      spec.counts === 'requests' ? { mode: 'consume', cost: 1 } : { mode: 'admit', cost: 1 };
    // A layer with only token and usd limits (often the endpoint's and the global one) is not
    // written here: admitting would write it only to check it is not exhausted, and the proxy's
    // reservation checks the same item moments later, with the real amount, as the hard limit. A
    // layer with request limits checks its token limits in the same write, for free.
    const plan = this.planOf(tenant);
    const calls = this.calls(identity, plan, route, costing, shard, true).filter(
      (c) => c.block || c.checks.some((check) => check.mode !== 'admit'),
    );
    return this.decideSharing(identity, plan, calls, shard, route);
  }

  /**
   * The proxy's reservation: input + expected output on every token limit, micro-dollars on every
   * usd limit, in every layer, one round-trip; request limits are not touched (the authorizer
   * spent those). `shard` is the one the authorizer picked; when the global limits count no
   * requests (so the authorizer wrote no shard), a shard this container holds a lease on is used
   * instead: one container's requests then draw on one lease, not on one per shard.
   */
  async reserve(
    identity: Identity,
    tenant: TenantRecord,
    route: string,
    amounts: Amounts,
    shard: number,
  ): Promise<Verdict> {
    const costing: Costing = (spec) => {
      const cost = amountOn(spec, amounts);
      return cost > 0 ? { mode: 'consume', cost } : undefined;
    };
    const s = this.leasedShard() ?? shard;
    const plan = this.planOf(tenant);
    return this.decideSharing(identity, plan, this.calls(identity, plan, route, costing, s, false), s, route);
  }

  /**
   * decide, and with shared global limits: the tenant's meter written alongside when due (same
   * round-trip), and what an admission spent on them counted in it.
   */
  private async decideSharing(
    identity: Identity,
    plan: Plan,
    calls: readonly LayerCall[],
    shard: number,
    route: string,
  ): Promise<Verdict> {
    const share = this.share;
    if (!share) return this.decide(identity, calls, shard, route);
    const now = this.options.store.now().late;
    const [verdict] = await Promise.all([
      this.decide(identity, calls, shard, route),
      share.flush(identity.tenant, plan.globalWeight ?? 1, now),
    ]);
    const global = calls.find((c) => c.layer === 'global');
    if (verdict.allowed && global && !verdict.failedOpen.includes('global'))
      for (const check of global.checks)
        if (check.mode !== 'admit') share.record(identity.tenant, check.name, check.cost, now);
    if (verdict.code === GLOBAL_SHARE_CODE && verdict.denied)
      share.refused(identity.tenant, bucketName(verdict.denied.spec), costOf(global, verdict.denied.spec), now);
    return verdict;
  }

  /** The global shard this container holds a live lease on, when the authorizer wrote none. */
  private leasedShard(): number | undefined {
    const global = this.options.config.global;
    if (!global || global.limits.some((s) => s.counts === 'requests')) return undefined;
    const names = global.limits.map(bucketName);
    for (let s = 0; s < this.shards; s++)
      if (this.options.store.holdsLease(layerKey.global(s, this.ns), names)) return s;
    return undefined;
  }

  /**
   * Settles a reservation exactly once (keyed by `requestId`): the difference between what was
   * used and what was reserved is debited (possibly into debt) or refunded on every token and usd
   * limit. Layers that failed open at reservation reserved nothing: they are debited in full.
   */
  async settle(
    requestId: string,
    reservation: {
      identity: Identity;
      tenant: TenantRecord;
      route: string;
      shard: number;
      reserved: Amounts;
      failedOpen: readonly Layer[];
      admittedAt: number;
      /** The reservation's Verdict.spending. */
      spending?: Verdict['spending'];
    },
    used: Amounts,
  ): Promise<'settled' | 'already-settled'> {
    const { identity, tenant, route, shard, reserved, admittedAt } = reservation;
    const all: Costing = (spec) => (spec.counts === 'requests' ? undefined : { mode: 'consume', cost: 1 });
    const items = this.calls(identity, this.planOf(tenant), route, all, shard, false, true).map((call) => {
      const skipped = reservation.failedOpen.includes(call.layer);
      const adjustments = call.checks.flatMap((c, j) => {
        const spec = call.specs[j]!;
        const delta = amountOn(spec, used) - (skipped ? 0 : amountOn(spec, reserved));
        if (Math.abs(delta) <= 1e-9) return [];
        const spending = skipped ? undefined : reservation.spending?.get(call.key)?.get(c.name);
        return [{ name: c.name, limit: c.limit, delta, admittedAt, ...spending }];
      });
      if (call.layer === 'global' && this.share) {
        const now = this.options.store.now().late;
        for (const a of adjustments) this.share.record(identity.tenant, a.name, a.delta, now);
      }
      return { key: call.key, adjustments, alsoHolds: call.alsoHolds };
    });
    const record = {
      tenant: identity.tenant,
      user: identity.user,
      route,
      tokens: used.tokens,
      microUsd: used.microUsd,
    };
    return this.options.store.settleOnce(
      `${this.ns}${requestId}`,
      items.filter((it) => it.adjustments.length > 0),
      record,
    );
  }

  /** GET /v1/limits: one request from the user's own small budget (each read costs DynamoDB a read). */
  async admitLimitsRead(identity: Identity): Promise<LimitOutcome> {
    const spec = requests(
      slidingWindow(this.options.config.limitsRequestsPerMinute ?? DEFAULT_LIMITS_REQUESTS_PER_MINUTE, '1 m'),
      { name: 'limits_per_minute' },
    );
    const decision = await this.options.store.consume(layerKey.limitsReads(identity, this.ns), spec.limit);
    return { layer: 'user', spec, code: 'user_requests_limits_per_minute', decision };
  }

  /** Layer calls for one decision, in layer order. */
  calls(
    identity: Identity,
    plan: Plan,
    route: string,
    costing: Costing,
    shard: number,
    withBlock: boolean,
    forSettlement = false,
  ): LayerCall[] {
    const config = this.options.config;
    const endpoint = config.endpoints[route];
    const ns = this.ns;
    // Each layer's item key, the limits checked, and (the global's, under a reserve) the whole limits its item holds.
    const layers: [Layer, string, readonly LimitSpec[], (readonly LimitSpec[])?][] = [
      ['tenant', layerKey.tenant(identity, ns), plan.tenant ?? []],
      ['user', layerKey.user(identity, ns), plan.user ?? []],
    ];
    if (endpoint)
      layers.push(['endpoint', layerKey.endpoint(identity, route, endpoint.scope, ns), plan.endpoints?.[route] ?? []]);
    // Admissions of a plan with a global reserve, or of a tenant with a line in a shared global,
    // see the global limits without that part (the same buckets, under their own names);
    // settlements see them whole, so refunds go back exactly.
    let lineCodes: (string | undefined)[] | undefined;
    let exact = false;
    if (endpoint && config.global) {
      const whole = config.global.limits.map((s) => ({ ...s, limit: shardOf(s.limit, shard, this.shards) }));
      let specs = whole;
      if (!forSettlement) {
        const reserve = (plan.globalReserve ?? 0) / 100;
        const lines = this.share?.lines(identity.tenant, plan.globalWeight ?? 1, this.options.store.now().late);
        const parts = whole.map((s) => {
          const share = partOf(lines?.get(bucketName(s)), s.limit, costing(s)?.cost ?? 0);
          return share > reserve
            ? { part: share, code: GLOBAL_SHARE_CODE }
            : { part: reserve, code: reserve > 0 ? GLOBAL_RESERVE_CODE : undefined };
        });
        specs = whole.map((s, i) =>
          parts[i]!.part > 0 ? { ...s, name: specName(s), limit: below(s.limit, parts[i]!.part) } : s,
        );
        lineCodes = parts.map((p) => p.code);
        // A lease is a share of the whole bucket: a check against part of it is written every time.
        exact = reserve > 0 || this.share !== undefined;
      }
      layers.push(['global', layerKey.global(shard, ns), specs, whole]);
    }
    const calls: LayerCall[] = [];
    for (const [layer, key, specs, held = specs] of layers) {
      const checks: Check[] = [];
      const used: LimitSpec[] = [];
      for (const spec of specs) {
        const cost = costing(spec);
        if (!cost) continue;
        checks.push({
          name: bucketName(spec),
          limit: spec.limit,
          cost: cost.cost,
          mode: cost.mode,
          ...(spec.shadow ? { shadow: true } : {}),
          ...(layer === 'global' && exact ? { noLease: true } : {}),
        });
        used.push(spec);
      }
      const block = withBlock && layer === 'user' ? PENALTY_ATTR.until : undefined;
      if (checks.length === 0 && !block) continue;
      calls.push({
        layer,
        key,
        specs: used,
        checks,
        failureMode: config.failureModes?.[layer] ?? DEFAULT_FAILURE_MODE,
        ...(block ? { block } : {}),
        alsoHolds: held.map((s) => s.limit),
        ...(layer === 'global' && lineCodes
          ? { lineCodes: specs.flatMap((s, i) => (costing(s) ? [lineCodes![i]] : [])) }
          : {}),
      });
    }
    return calls;
  }

  /**
   * A request's decision over its layers: one question to the store (every layer admits, or none
   * keeps its spend), then the verdict: an outage, a throttled item, an admission, or the denial
   * with its escalated Retry-After.
   */
  async decide(identity: Identity, calls: readonly LayerCall[], shard: number, route?: string): Promise<Verdict> {
    const clock = this.options.store.now();
    const admittedAt = (clock.early + clock.late) / 2;
    const results = await this.options.store.decideTogether(
      calls.map((c) => ({
        key: c.key,
        checks: c.checks,
        options: { ...(c.block ? { block: c.block } : {}), alsoHolds: c.alsoHolds },
        required: c.failureMode === 'closed',
      })),
      {
        atomic: this.strategy === 'transaction',
        onRefundFailed: (index, err) => this.swallow(err, 'compensating refund failed', calls[index]!.layer),
      },
    );
    const failure = results.findIndex(
      (r, i) => r instanceof Error && !(r instanceof ItemThrottledError) && calls[i]!.failureMode === 'closed',
    );
    if (failure >= 0) throw new LayerUnavailableError(calls[failure]!.layer, { cause: results[failure] });
    const { limits, failedOpen } = this.outcomes(calls, results);
    const throttled = results.findIndex((r) => r instanceof ItemThrottledError);
    if (throttled >= 0) return this.throttledVerdict(calls[throttled]!.layer, limits, failedOpen, shard);
    const deniedAt = results.findIndex((r) => !(r instanceof Error) && !r.allowed);
    if (deniedAt < 0) {
      if (this.options.alerts) await this.alert(this.options.alerts, identity, calls, limits, route);
      return { allowed: true, limits, failedOpen, shard, spending: spendingByItem(calls, results), admittedAt };
    }
    return this.denialVerdict(identity, calls, results, deniedAt, { limits, failedOpen, shard });
  }

  /** Every limit decided, in layer order, and the layers let through because the store failed (failure mode open). */
  private outcomes(
    calls: readonly LayerCall[],
    results: readonly (ItemOutcome | Error)[],
  ): { limits: LimitOutcome[]; failedOpen: Layer[] } {
    const limits: LimitOutcome[] = [];
    const failedOpen: Layer[] = [];
    results.forEach((r, i) => {
      const call = calls[i]!;
      if (r instanceof ItemThrottledError) return;
      if (r instanceof Error) {
        failedOpen.push(call.layer);
        this.log({
          level: 'error',
          message: 'limit store failed, layer let through (failure mode open)',
          layer: call.layer,
          error: r.name,
        });
        return;
      }
      r.decisions.forEach((decision, j) => {
        const spec = call.specs[j]!;
        limits.push({ layer: call.layer, spec, code: limitCode(call.layer, spec), decision });
      });
    });
    return { limits, failedOpen };
  }

  /**
   * DynamoDB takes no more writes on this layer's item for now: its traffic is more than one item
   * carries. Not an outage (no alarm, in either failure mode) but a limit reached: 429.
   */
  private throttledVerdict(layer: Layer, limits: LimitOutcome[], failedOpen: Layer[], shard: number): Verdict {
    const code = `${layer}_throughput`;
    this.log({ level: 'warn', message: 'item throttled by DynamoDB: denied with 429', layer, code });
    return {
      allowed: false,
      limits,
      code,
      retryAfterMs: THROTTLED_RETRY_AFTER_MS,
      throttled: layer,
      failedOpen,
      shard,
    };
  }

  /** A denial: by the penalty box, or by the first limit that denied; either way the wait escalates for a repeat offender. */
  private async denialVerdict(
    identity: Identity,
    calls: readonly LayerCall[],
    results: readonly (ItemOutcome | Error)[],
    deniedAt: number,
    seen: { limits: LimitOutcome[]; failedOpen: Layer[]; shard: number },
  ): Promise<Verdict> {
    const { limits } = seen;
    const denial = results[deniedAt] as ItemOutcome;
    const userKey = layerKey.user(identity, this.ns);
    const now = this.options.store.now().early;
    if (denial.blockedUntil !== undefined) {
      const code = String(denial.item?.[PENALTY_ATTR.code] ?? 'penalty_box');
      const escalation = await this.escalate(userKey, denial.item, now, denial.blockedUntil - now, code, limits);
      return { ...seen, allowed: false, code, retryAfterMs: escalation.retryAfterMs, penalized: true };
    }
    const call = calls[deniedAt]!;
    const spec = call.specs[denial.deniedAt!]!;
    const denied: LimitOutcome = {
      layer: call.layer,
      spec,
      code: call.lineCodes?.[denial.deniedAt!] ?? limitCode(call.layer, spec),
      decision: denial.decisions[denial.deniedAt!]!,
    };
    const userResult = results[calls.findIndex((c) => c.layer === 'user')];
    const userItem = userResult instanceof Error ? undefined : userResult?.item;
    const escalation = await this.escalate(userKey, userItem, now, denied.decision.retryAfterMs, denied.code, limits);
    return {
      ...seen,
      allowed: false,
      denied,
      code: denied.code,
      retryAfterMs: escalation.retryAfterMs,
      penalized: escalation.retryAfterMs > denied.decision.retryAfterMs,
    };
  }

  private async escalate(
    userKey: string,
    item: Readonly<Record<string, unknown>> | undefined,
    now: number,
    naturalMs: number,
    code: string,
    limits: readonly LimitOutcome[],
  ) {
    let current = item;
    for (let attempt = 0; attempt < 2; attempt++) {
      const num = (attr: string) => (typeof current?.[attr] === 'number' ? (current[attr] as number) : undefined);
      const state = { strikes: num(PENALTY_ATTR.strikes), last: num(PENALTY_ATTR.last) };
      const next = escalate(state, now, naturalMs, this.penalty);
      const set: Record<string, number | string> = {
        [PENALTY_ATTR.strikes]: next.strikes,
        [PENALTY_ATTR.last]: next.last,
        [PENALTY_ATTR.code]: code,
      };
      if (next.until !== undefined) set[PENALTY_ATTR.until] = next.until;
      try {
        const result = await this.options.store.compareAndSet(
          userKey,
          { [PENALTY_ATTR.strikes]: state.strikes, [PENALTY_ATTR.last]: state.last },
          set,
          now + this.penalty.windowMs + this.penalty.maxMs,
        );
        if (result.ok) {
          if (next.until !== undefined)
            this.block(userKey, { until: next.until, code, strikes: next.strikes, last: next.last, limits });
          return next;
        }
        current = result.item;
      } catch (err) {
        this.swallow(err, 'penalty escalation failed', 'user');
        break;
      }
    }
    return { retryAfterMs: naturalMs };
  }

  /** Remembers a penalty box in this container (bounded: the oldest entries go first). */
  private block(userKey: string, box: PenaltyBox): void {
    this.blocks.delete(userKey);
    this.blocks.set(userKey, box);
    if (this.blocks.size > 10_000) this.blocks.delete(this.blocks.keys().next().value!);
  }

  /**
   * Claims and publishes the thresholds this admission found reached on calendar budgets, each
   * once per period (lambda/engine/alerts.ts). A global budget is split over shards, none of which
   * sees the whole: it does not alert. A claim that fails (DynamoDB) is tried again by a later
   * request; an alert claimed but not published after three tries is logged whole.
   */
  private async alert(
    sink: AlertSink,
    identity: Identity,
    calls: readonly LayerCall[],
    limits: readonly LimitOutcome[],
    route: string | undefined,
  ): Promise<void> {
    const now = this.options.store.now().late;
    for (const call of calls) {
      if (call.layer === 'global') continue;
      const outcomes = limits.filter((l) => l.layer === call.layer && call.specs.includes(l.spec));
      const who = { tenant: identity.tenant, user: identity.user, ...(route ? { route } : {}) };
      for (const c of crossings(call.key, outcomes, who, now)) {
        if (this.claimed.has(c.claim)) continue;
        let mine: boolean;
        try {
          mine = await this.options.store.claimOnce(c.claim, c.expiresAtMs, {
            budget: c.alert.budget,
            tenant: c.alert.tenant,
          });
        } catch (err) {
          this.swallow(err, 'budget alert not claimed: a later request tries again', call.layer);
          continue;
        }
        if (this.claimed.size >= 10_000) this.claimed.clear();
        this.claimed.add(c.claim);
        if (mine) await this.publish(sink, c.alert);
      }
    }
  }

  private async publish(sink: AlertSink, alert: BudgetAlert): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await sink.publish(alert);
        this.log({ level: 'info', outcome: 'budget_alert', ...alert });
        return;
      } catch (err) {
        if (attempt >= 3) {
          this.log({ level: 'error', outcome: 'budget_alert_lost', error: (err as Error).name, alert });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  }

  private swallow(err: unknown, message: string, layer: string): void {
    if (!(err instanceof LimiterError)) throw err;
    this.log({ level: 'error', message, layer, error: err.name });
  }
}

/**
 * The part of a shared global limit's bucket a tenant may not use: its line, raised by
 * SHARE.refusedMargin requests of this cost when it was refused at it lately (never past the top line).
 */
function partOf(share: { line: number; refused: boolean } | undefined, limit: Limit, cost: number): number {
  if (!share) return 0;
  if (!share.refused) return share.line;
  const size = limit.shape === 'sliding_window' ? limit.limit : limit.capacity;
  return Math.min(SHARE.topLine, share.line + (SHARE.refusedMargin * cost) / size);
}

/** What `call` would have spent on `spec` (1 for a check that only admits). */
function costOf(call: LayerCall | undefined, spec: LimitSpec): number {
  const check = call?.checks[call.specs.indexOf(spec)];
  return check?.mode === 'consume' ? check.cost : 1;
}

/** What each admitted check spent and the lease it used, by item key and bucket name. */
function spendingByItem(
  calls: readonly LayerCall[],
  results: readonly (ItemOutcome | Error)[],
): Map<string, Map<string, Spending>> {
  const byItem = new Map<string, Map<string, Spending>>();
  results.forEach((r, i) => {
    if (r instanceof Error) return;
    const call = calls[i]!;
    byItem.set(call.key, new Map(call.checks.map((c, j) => [c.name, spendingOf(c, r, j)])));
  });
  return byItem;
}
