import type { Identity, Limiter, TenantRecord } from '../engine/limiter';
import { layerKey } from '../engine/limiter';
import {
  bucketName,
  DEFAULT_GLOBAL_SHARDS,
  type Layer,
  type LimiterConfig,
  type LimitSpec,
  limitCode,
  periodSeconds,
  shardOf,
} from '../engine/plans';
import type { LimitStore } from '../engine/store';

export interface LimitUsage {
  readonly layer: Layer;
  readonly code: string;
  readonly counts: LimitSpec['counts'];
  /** What limit and remaining count: requests, tokens, or US dollars (usd limits are kept in micro-dollars, shown in dollars). */
  readonly unit: 'requests' | 'tokens' | 'usd';
  readonly route?: string;
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until the limit is wholly available again. */
  readonly resetSeconds: number;
  readonly windowSeconds: number;
  /**
   * Sliding windows count in slots of this many seconds: a request counts for between
   * windowSeconds and windowSeconds + slotSeconds, never less (so no window ever holds more
   * than the limit), which is why a reset can exceed the window by up to a slot.
   */
  readonly slotSeconds?: number;
  /**
   * A calendar budget: it counts each day, ISO week or month of this IANA time zone and starts
   * again at the period's first moment there (`resetSeconds` is until then; `windowSeconds` is
   * the longest such a period lasts).
   */
  readonly calendar?: { readonly period: 'day' | 'week' | 'month'; readonly timeZone: string };
  readonly shadow: boolean;
  /**
   * Shared with every tenant (a global limit, or an endpoint whose scope is global). A tenant sees
   * only its state, never the others' spend: `remaining` is left out and `resetSeconds` is 0
   * unless the limit is reached.
   */
  readonly shared?: true;
  readonly state?: SharedState;
}

/** A shared limit as a tenant sees it: room left, under a tenth left, or none. */
export type SharedState = 'ok' | 'near' | 'reached';

/** Who reads the usage: a tenant (shared limits as their state only) or the operators (every figure). */
export type Audience = 'tenant' | 'operator';

export interface Usage {
  readonly tenant: string;
  readonly user?: string;
  readonly plan: string;
  readonly limits: readonly LimitUsage[];
  /** The enforced limit with the smallest share left: the one a person should watch. */
  readonly closest: string | null;
}

/**
 * Every limit of a tenant's plan (and, with a user, the user's), then the system-wide global
 * limits summed over their shards, with what is left of each, read with one consistent read per
 * item; nothing is spent. Usd limits are shown in dollars, whatever the store counts them in.
 * For a tenant, limits shared with other tenants show only their state (`redactShared`).
 */
export async function usageOf(
  store: LimitStore,
  limiter: Limiter,
  config: LimiterConfig,
  tenant: TenantRecord,
  user: string | undefined,
  namespace = '',
  audience: Audience = 'tenant',
): Promise<Usage> {
  const plan = limiter.planOf(tenant);
  const identity: Identity = { tenant: tenant.id, user: user ?? '' };
  const items: { layer: Layer; key: string; specs: readonly LimitSpec[]; route?: string }[] = [
    { layer: 'tenant', key: layerKey.tenant(identity, namespace), specs: plan.tenant ?? [] },
  ];
  if (user !== undefined)
    items.push({ layer: 'user', key: layerKey.user(identity, namespace), specs: plan.user ?? [] });
  for (const [route, specs] of Object.entries(plan.endpoints ?? {})) {
    items.push({
      layer: 'endpoint',
      key: layerKey.endpoint(identity, route, config.endpoints[route]?.scope, namespace),
      specs,
      route,
    });
  }
  const limits: LimitUsage[] = [];
  for (const item of items.filter((i) => i.specs.length > 0)) {
    const outcome = await store.peekItem(
      item.key,
      item.specs.map((spec) => ({ name: bucketName(spec), limit: spec.limit, cost: 1 })),
    );
    outcome.decisions.forEach((d, i) => {
      limits.push(entry(item.layer, item.specs[i]!, d.limit, d.remaining, d.resetMs, item.route));
    });
  }
  if (config.global) {
    // The global limits are split over shards: what the system has left is the sum of theirs.
    const shards = config.global.shards ?? DEFAULT_GLOBAL_SHARDS;
    const specs = config.global.limits;
    const outcomes = await Promise.all(
      Array.from({ length: shards }, (_, shard) =>
        store.peekItem(
          layerKey.global(shard, namespace),
          specs.map((spec) => ({ name: bucketName(spec), limit: shardOf(spec.limit, shard, shards), cost: 1 })),
        ),
      ),
    );
    specs.forEach((spec, i) => {
      const of = outcomes.map((o) => o.decisions[i]!);
      limits.push(
        entry(
          'global',
          spec,
          of.reduce((a, d) => a + d.limit, 0),
          of.reduce((a, d) => a + d.remaining, 0),
          Math.max(...of.map((d) => d.resetMs)),
          undefined,
        ),
      );
    });
  }
  const enforced = limits.filter((l) => !l.shadow && l.limit > 0 && (audience === 'operator' || !isShared(l, config)));
  const closest = enforced.length
    ? enforced.reduce((a, b) => (b.remaining / b.limit < a.remaining / a.limit ? b : a)).code
    : null;
  const shown = audience === 'operator' ? limits : limits.map((l) => (isShared(l, config) ? redactShared(l) : l));
  return { tenant: tenant.id, ...(user !== undefined ? { user } : {}), plan: tenant.plan, limits: shown, closest };
}

const isShared = (l: LimitUsage, config: LimiterConfig): boolean =>
  l.layer === 'global' || (l.layer === 'endpoint' && config.endpoints[l.route ?? '']?.scope === 'global');

/** A shared limit without what other tenants spent: its size, and whether it has room, little, or none. */
export function redactShared(l: LimitUsage): LimitUsage {
  const { remaining, resetSeconds, ...rest } = l;
  const state: SharedState = remaining <= 0 ? 'reached' : remaining < l.limit * 0.1 ? 'near' : 'ok';
  return { ...rest, resetSeconds: state === 'reached' ? resetSeconds : 0, shared: true, state } as LimitUsage;
}

function entry(
  layer: Layer,
  spec: LimitSpec,
  limit: number,
  remaining: number,
  resetMs: number,
  route: string | undefined,
): LimitUsage {
  const usd = spec.counts === 'usd';
  const shown = (n: number) => (usd ? n / 1_000_000 : n);
  return {
    layer,
    code: limitCode(layer, spec),
    counts: spec.counts,
    unit: spec.counts,
    ...(route ? { route } : {}),
    limit: shown(limit),
    remaining: shown(remaining),
    resetSeconds: Math.ceil(resetMs / 1000),
    windowSeconds: Math.round(periodSeconds(spec.limit)),
    ...(spec.limit.shape === 'sliding_window'
      ? spec.limit.calendar
        ? { calendar: { ...spec.limit.calendar } }
        : { slotSeconds: spec.limit.windowMs / spec.limit.subWindows / 1000 }
      : {}),
    shadow: spec.shadow ?? false,
  };
}
