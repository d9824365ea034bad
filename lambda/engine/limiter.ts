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
import { lineOf, SHARE, ShareMeter, type Standing, sustainedRate } from './share';
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
  /** The global layer's checks: per spec, the line it was checked at (a reserve, a share) and the whole limit. */
  readonly lines?: readonly GlobalLine[];
}

/** The 429 code of a request denied by the global reserve its plan keeps (Plan.globalReserve). */
export const GLOBAL_RESERVE_CODE = 'global_reserve';

/** The 429 code of a request denied because its tenant is past its share of a shared global limit (Plan.globalWeight). */
export const GLOBAL_SHARE_CODE = 'global_share';

/** How a global limit was checked: against part of its bucket, and why. */
interface GlobalLine {
  /** The part of the bucket held back (0: the whole bucket). */
  readonly part: number;
  /** Of it, the plan's reserve (a tier's floor). */
  readonly reserve: number;
  /** The tenant's standing the share part came from (none: no share line). */
  readonly standing?: Standing;
  /** What a share line is multiplied by (tiers fit it between reserves), and the most it may be. */
  readonly scale: number;
  readonly room: number;
  /** The request's cost (the refused tenant's margin is counted in it). */
  readonly cost: number;
  /** The shard's whole limit. */
  readonly whole: Limit;
  /** The code a refusal by the whole limit has. */
  readonly code: string;
}

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
  /** The smallest global reserve of any plan (0: none): with shares, every reserved plan's line is above every other's. */
  private readonly minReserve: number;

  constructor(private readonly options: LimiterOptions) {
    this.penalty = { ...DEFAULT_PENALTY, ...options.config.penalty };
    this.strategy = options.strategy ?? 'parallel';
    this.random = options.random ?? Math.random;
    this.log = options.log ?? ((entry) => console.error(JSON.stringify(entry)));
    const reserves = Object.values(options.config.plans).flatMap((p) =>
      p.globalReserve ? [p.globalReserve / 100] : [],
    );
    this.minReserve = reserves.length ? Math.min(...reserves) : 0;
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
    const flushing = share.flush(identity.tenant, plan.globalWeight ?? 1, now);
    const verdict = await this.decide(identity, calls, shard, route);
    // The meter's write went out with the decision's; the answer waits for it only a little longer
    // (a slow or throttled meter must not hold requests; what it reads back then lands later).
    if (flushing) await settleWithin(flushing, METER_GRACE_MS);
    const global = calls.find((c) => c.layer === 'global');
    if (verdict.allowed && global && !verdict.failedOpen.includes('global'))
      for (const check of global.checks)
        if (check.mode !== 'admit') share.record(identity.tenant, check.name, check.cost, now);
    if (verdict.code === GLOBAL_SHARE_CODE && verdict.denied)
      share.refused(identity.tenant, bucketName(verdict.denied.spec), deniedCost(global, verdict.denied.spec), now);
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
      return { key: call.key, adjustments, alsoHolds: call.alsoHolds, layer: call.layer };
    });
    const record = {
      tenant: identity.tenant,
      user: identity.user,
      route,
      tokens: used.tokens,
      microUsd: used.microUsd,
    };
    const result = await this.options.store.settleOnce(
      `${this.ns}${requestId}`,
      items.filter((it) => it.adjustments.length > 0),
      record,
    );
    // The tenant's meter counts what this settlement moved on a shared global, once.
    const share = this.share;
    if (share && result === 'settled') {
      const now = this.options.store.now().late;
      for (const it of items)
        if (it.layer === 'global') for (const a of it.adjustments) share.record(identity.tenant, a.name, a.delta, now);
    }
    return result;
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

  /**
   * The line a global limit is checked at for a request of `cost`: the plan's reserve, plus the
   * tenant's share line (share.ts) when the global is shared. With both in play, every reserved
   * plan's line lies above every other plan's (a tier keeps its priority): reserved plans' share
   * lines are fitted between their reserve and the top line, the others' under half the smallest
   * reserve (the other half keeps the tiers apart, so the refill goes to the higher tier first).
   * A share line never stops a request the whole bucket could take (a request too large
   * for the limit is the limit's to refuse, with a 400); a reserve does.
   */
  private globalLine(reserve: number, standing: Standing | undefined, spec: LimitSpec, cost: number): GlobalLine {
    const whole = spec.limit;
    const code = limitCode('global', spec);
    const size = whole.shape === 'sliding_window' ? whole.limit : whole.capacity;
    const scale = Math.max(
      0,
      !this.minReserve
        ? 1
        : reserve > 0
          ? (SHARE.topLine - reserve) / SHARE.topLine
          : (this.minReserve * TIER_GAP) / SHARE.topLine,
    );
    // One unit of margin: the kept capacity is a float, and a bucket keeps it in whole ticks.
    const room = Math.max(0, 1 - (cost + 1) / size - reserve);
    const line = { reserve, scale, room, cost, whole, code, ...(standing ? { standing } : {}) };
    return { ...line, part: partAt(line, standing?.s ?? 0) };
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
    let lines: GlobalLine[] | undefined;
    let exact = false;
    if (endpoint && config.global) {
      const whole = config.global.limits.map((s) => ({ ...s, limit: shardOf(s.limit, shard, this.shards) }));
      let specs = whole;
      const reserve = (plan.globalReserve ?? 0) / 100;
      // Without a reserve or shares, every request checks the whole buckets (nothing to work out).
      if (!forSettlement && (reserve > 0 || this.share)) {
        const shares = this.share?.lines(identity.tenant, plan.globalWeight ?? 1, this.options.store.now().late);
        lines = whole.map((s) => this.globalLine(reserve, shares?.get(bucketName(s)), s, costing(s)?.cost ?? 0));
        specs = whole.map((s, i) =>
          lines![i]!.part > 0 ? { ...s, name: specName(s), limit: below(s.limit, lines![i]!.part) } : s,
        );
        // A lease is a share of the whole bucket: a check against part of it is written every time.
        exact = true;
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
        ...(layer === 'global' && lines ? { lines: specs.flatMap((s, i) => (costing(s) ? [lines![i]!] : [])) } : {}),
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
    const decision = denial.decisions[denial.deniedAt!]!;
    const line = call.lines?.[denial.deniedAt!];
    const why = line ? lineDenial(line, decision.retryAfterMs) : undefined;
    const denied: LimitOutcome = {
      layer: call.layer,
      spec,
      code: why?.code ?? limitCode(call.layer, spec),
      decision: why ? { ...decision, retryAfterMs: why.retryAfterMs } : decision,
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

/** With tiers on top of shares, the part of the smallest reserve the other plans' share lines may reach. */
const TIER_GAP = 0.5;

/** How long a decision waits past its own writes for the fair-share meter's write (ms). */
const METER_GRACE_MS = 20;

/** Waits for `promise` (which never rejects) at most `ms`. */
async function settleWithin(promise: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/**
 * The part of a global bucket held back from a tenant whose use is `s`: its reserve, plus its
 * share line (raised by SHARE.refusedMargin requests when it is refused lately, never past the
 * top line), scaled to fit between tiers, and never so high that the request could not fit.
 */
function partAt(line: Omit<GlobalLine, 'part'>, s: number): number {
  const whole = line.whole;
  let share = 0;
  if (line.standing && whole.shape !== 'sliding_window') {
    const margin = line.standing.refused ? (SHARE.refusedMargin * line.cost) / whole.capacity : 0;
    share = lineOf(s) > 0 ? Math.min(SHARE.topLine, lineOf(s) + margin) : 0;
  }
  const shared = Math.min(share * line.scale, line.room);
  return line.scale === 1 ? Math.max(line.reserve, shared) : line.reserve + shared;
}

/**
 * How long a tenant refused at its share line waits (ms): until the bucket has refilled past the
 * line, or the line, falling as the tenant's use decays while it is refused, has come down to the
 * bucket, whichever is first. `naturalMs` is the first alone.
 */
function shareWaitMs(line: GlobalLine, naturalMs: number, rate: number, capacity: number): number {
  const s = line.standing?.s ?? 0;
  const short = (naturalMs / 1000) * rate;
  // The line stops falling when the use is under SHARE.least, and is 0 at the latest once the
  // tenant's last admission has left the meter's window.
  const end = Math.min(SHARE.decaySeconds * Math.log(Math.max(1, s / SHARE.least)), SHARE.windowMs / 1000 + 1) + 0.05;
  for (let t = 0.05; t < Math.min(end, naturalMs / 1000); t += 0.05) {
    const fallen = (line.part - partAt(line, s * Math.exp(-t / SHARE.decaySeconds))) * capacity;
    if (rate * t + fallen >= short) return t * 1000;
  }
  const fallen = (line.part - partAt(line, 0)) * capacity;
  return Math.min(naturalMs, Math.max(end, (short - fallen) / rate) * 1000);
}

/**
 * Why a global check against part of its bucket refused, and the wait: the whole limit's code
 * when the whole bucket would have refused too; `global_reserve` when the bucket is under the
 * plan's reserve; else `global_share`, with the wait until the bucket has refilled past the
 * tenant's line or the line, falling while the tenant is refused, has come down to the bucket:
 * whichever is first.
 */
function lineDenial(line: GlobalLine, naturalMs: number): { code: string; retryAfterMs: number } {
  if (line.part === 0) return { code: line.code, retryAfterMs: naturalMs };
  const whole = line.whole;
  // A reserve alone (or on a window, which has no share line): the tier's code, as without shares.
  if (whole.shape === 'sliding_window' || line.part - line.reserve <= 1e-12)
    return { code: line.reserve > 0 ? GLOBAL_RESERVE_CODE : line.code, retryAfterMs: naturalMs };
  const rate = sustainedRate(whole)!;
  // The wait counts the share line falling, whatever refuses: it is seconds, never the refill to it.
  const retryAfterMs = shareWaitMs(line, naturalMs, rate, whole.capacity);
  // What the request lacks, in units: past the line; past the reserve's line; past the whole bucket.
  const short = (naturalMs / 1000) * rate;
  const unit = rate / 1000; // what refills in a millisecond (naturalMs is rounded up to one)
  if (line.reserve > 0 && short > (line.part - line.reserve) * whole.capacity + unit)
    return { code: GLOBAL_RESERVE_CODE, retryAfterMs };
  if (short > line.part * whole.capacity + unit) return { code: line.code, retryAfterMs };
  return { code: GLOBAL_SHARE_CODE, retryAfterMs };
}

/** What the global layer's check of `spec` would have cost (its line holds it). */
function deniedCost(call: LayerCall | undefined, spec: LimitSpec): number {
  return call?.lines?.[call.specs.indexOf(spec)]?.cost ?? 1;
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
