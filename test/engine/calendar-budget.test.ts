/**
 * A calendar budget as a tenant meets it: a plan's monthly dollars in the tenant's zone, reserved
 * and settled like any limit, denied with Retry-After until the month starts there, shown by
 * GET /v1/limits, and kept across a change of plan mid-month.
 */
import { describe, expect, it } from 'vitest';
import { Limiter } from '../../lambda/engine/limiter';
import { parseConfig, usdPerMonth } from '../../lambda/engine/plans';
import { usageOf } from '../../lambda/limits/usage';
import { testStore, uniqueKey } from '../support/dynamo';

const CHAT = '/v1/chat/completions';
const configWith = (dollars: number) =>
  parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: { pro: { tenant: [usdPerMonth(dollars, { timeZone: 'Asia/Tokyo' })] } },
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      }),
    ),
  );

describe('a monthly budget in dollars, in Tokyo', () => {
  // March starts in Tokyo (UTC+9) at 15:00 UTC on the last day of February.
  const marchInTokyo = Date.parse('2027-02-28T15:00:00Z');

  it('is spent to its limit, denied until the month starts there, then whole again, and keeps its spend across a plan change', async () => {
    const clock = { now: marchInTokyo - 60_000 };
    const store = testStore({ clock: () => clock.now });
    const ns = uniqueKey('ns');
    const tenant = { id: uniqueKey('tenant'), plan: 'pro' };
    const identity = { tenant: tenant.id, user: 'ann' };
    const limiterOf = (dollars: number) =>
      new Limiter({ store, config: configWith(dollars), log: () => {}, namespace: ns });
    const limiter = limiterOf(10);
    // $6 reserved, $4 settled: $6 left of $10.
    const first = await limiter.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 6_000_000 }, 0);
    expect(first.allowed).toBe(true);
    await limiter.settle(
      uniqueKey('req'),
      {
        identity,
        tenant,
        route: CHAT,
        shard: 0,
        reserved: { tokens: 0, microUsd: 6_000_000 },
        failedOpen: [],
        admittedAt: first.admittedAt!,
        ...(first.spending ? { spending: first.spending } : {}),
      },
      { tokens: 0, microUsd: 4_000_000 },
    );
    expect((await limiter.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 6_000_000 }, 0)).allowed).toBe(true);
    // Nothing is left this month: $0.01 more is denied until March starts in Tokyo, 60 s from now.
    const denied = await limiter.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 10_000 }, 0);
    expect(denied.allowed).toBe(false);
    expect(denied.code).toBe('tenant_usd_per_calendar_month');
    expect(denied.retryAfterMs).toBe(60_000);
    const usage = await usageOf(store, limiter, configWith(10), tenant, 'ann', ns);
    expect(usage.limits[0]).toMatchObject({
      code: 'tenant_usd_per_calendar_month',
      limit: 10,
      remaining: 0,
      resetSeconds: 60,
      calendar: { period: 'month', timeZone: 'Asia/Tokyo' },
    });
    // A plan raised to $20 mid-month keeps what was spent: $10 left of $20.
    const raised = limiterOf(20);
    expect((await raised.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 10_000_000 }, 0)).allowed).toBe(true);
    expect((await raised.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 10_000 }, 0)).allowed).toBe(false);
    // March in Tokyo: the whole budget again, though it is still February in UTC.
    clock.now = marchInTokyo;
    expect((await raised.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 20_000_000 }, 0)).allowed).toBe(true);
    expect((await raised.reserve(identity, tenant, CHAT, { tokens: 0, microUsd: 10_000 }, 0)).allowed).toBe(false);
  });
});
