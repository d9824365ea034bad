import type { Identity, Limiter, TenantRecord } from '../engine/limiter';
import { layerKey } from '../engine/limiter';
import { bucketName, type Layer, type LimiterConfig, type LimitSpec, limitCode, periodSeconds } from '../engine/plans';
import type { LimitStore } from '../engine/store';

export interface LimitUsage {
  readonly layer: Layer;
  readonly code: string;
  readonly counts: LimitSpec['counts'];
  readonly route?: string;
  readonly limit: number;
  readonly remaining: number;
  /** Seconds until the limit is wholly available again. */
  readonly resetSeconds: number;
  readonly windowSeconds: number;
  readonly shadow: boolean;
}

export interface Usage {
  readonly tenant: string;
  readonly user?: string;
  readonly plan: string;
  readonly limits: readonly LimitUsage[];
}

/**
 * Every limit of a tenant's plan (and, with a user, the user's) with what is left of it, read
 * with one consistent read per layer item; nothing is spent. The global layer is system-wide and
 * not reported here.
 */
export async function usageOf(store: LimitStore, limiter: Limiter, config: LimiterConfig, tenant: TenantRecord, user: string | undefined, namespace = ''): Promise<Usage> {
  const plan = limiter.planOf(tenant);
  const identity: Identity = { tenant: tenant.id, user: user ?? '' };
  const items: { layer: Layer; key: string; specs: readonly LimitSpec[]; route?: string }[] = [{ layer: 'tenant', key: layerKey.tenant(identity, namespace), specs: plan.tenant ?? [] }];
  if (user !== undefined) items.push({ layer: 'user', key: layerKey.user(identity, namespace), specs: plan.user ?? [] });
  for (const [route, specs] of Object.entries(plan.endpoints ?? {})) {
    items.push({ layer: 'endpoint', key: layerKey.endpoint(identity, route, config.endpoints[route]?.scope, namespace), specs, route });
  }
  const limits: LimitUsage[] = [];
  for (const item of items.filter((i) => i.specs.length > 0)) {
    const outcome = await store.peekItem(item.key, item.specs.map((spec) => ({ name: bucketName(spec), limit: spec.limit, cost: 1 })));
    outcome.outcomes.forEach((o, i) => {
      const spec = item.specs[i]!;
      limits.push({
        layer: item.layer,
        code: limitCode(item.layer, spec),
        counts: spec.counts,
        ...(item.route ? { route: item.route } : {}),
        limit: o.decision.limit,
        remaining: o.decision.remaining,
        resetSeconds: Math.ceil(o.decision.resetMs / 1000),
        windowSeconds: Math.round(periodSeconds(spec.limit)),
        shadow: spec.shadow ?? false,
      });
    });
  }
  return { tenant: tenant.id, ...(user !== undefined ? { user } : {}), plan: tenant.plan, limits };
}
