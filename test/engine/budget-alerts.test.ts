/**
 * Budget alerts (lambda/engine/alerts.ts, lambda/runtime/alerts.ts): each threshold of a calendar
 * budget fires once per period, whatever the concurrency, as an EventBridge event the real SDK
 * client puts on a local endpoint that speaks PutEvents.
 */
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Limiter } from '../../lambda/engine/limiter';
import { parseConfig, tokensPerCalendarDay } from '../../lambda/engine/plans';
import { ALERT_DETAIL_TYPE, ALERT_SOURCE, eventBridgeSink } from '../../lambda/runtime/alerts';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { testStore, uniqueKey } from '../support/dynamo';

const CHAT = '/v1/chat/completions';
let aws: SsmLocal;
beforeAll(async () => {
  aws = await startSsmLocal();
});
afterAll(() => aws.stop());

const client = () =>
  new EventBridgeClient({
    endpoint: aws.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });

describe('a daily token budget with alerts at 50, 80 and 100 percent', () => {
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: { pro: { tenant: [tokensPerCalendarDay(10_000, { timeZone: 'Europe/Paris' })] } },
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      }),
    ),
  );

  it('fires each threshold reached once, when 200 requests in four containers cross them at once', async () => {
    const ns = uniqueKey('ns');
    const tenant = { id: uniqueKey('tenant'), plan: 'pro' };
    const before = aws.events.length;
    const containers = [0, 1, 2, 3].map(
      () =>
        new Limiter({ store: testStore(), config, log: () => {}, namespace: ns, alerts: eventBridgeSink(client()) }),
    );
    // 7,000 of 10,000 spent without alerts, then 200 requests of 10 tokens (7,000 to 9,000) at once.
    const quiet = new Limiter({ store: testStore(), config, log: () => {}, namespace: ns });
    expect(
      (await quiet.reserve({ tenant: tenant.id, user: 'u' }, tenant, CHAT, { tokens: 7_000, microUsd: 0 }, 0)).allowed,
    ).toBe(true);
    const verdicts = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        containers[i % 4]!.reserve({ tenant: tenant.id, user: `u${i}` }, tenant, CHAT, { tokens: 10, microUsd: 0 }, 0),
      ),
    );
    expect(verdicts.every((v) => v.allowed)).toBe(true);
    const fired = aws.events.slice(before).filter((e) => (e.detail as { tenant: string }).tenant === tenant.id);
    // 50% was reached (by the first of them to look) and 80% was crossed: one event each; 100% was not reached.
    expect(fired.map((e) => (e.detail as { threshold: number }).threshold).sort((a, b) => a - b)).toEqual([50, 80]);
    const eighty = fired.find((e) => (e.detail as { threshold: number }).threshold === 80)!;
    expect(eighty).toMatchObject({ bus: 'default', source: ALERT_SOURCE, detailType: ALERT_DETAIL_TYPE });
    const detail = eighty.detail as Record<string, unknown>;
    expect(detail).toMatchObject({
      tenant: tenant.id,
      layer: 'tenant',
      budget: 'tenant_tokens_per_calendar_day',
      unit: 'tokens',
      limit: 10_000,
      threshold: 80,
      period: { period: 'day', timeZone: 'Europe/Paris' },
    });
    expect(detail.spent).toBeGreaterThanOrEqual(8_000);
    expect(detail.spent).toBeLessThanOrEqual(9_000);
    expect(detail).not.toHaveProperty('user'); // a tenant's budget, not one user's
    // Later requests this period never fire them again; reaching 100% fires once more.
    for (const limiter of containers)
      await limiter.reserve({ tenant: tenant.id, user: 'late' }, tenant, CHAT, { tokens: 250, microUsd: 0 }, 0);
    const all = aws.events.slice(before).filter((e) => (e.detail as { tenant: string }).tenant === tenant.id);
    expect(all.map((e) => (e.detail as { threshold: number }).threshold).sort((a, b) => a - b)).toEqual([50, 80, 100]);
  });

  it('claims a threshold with one conditional write: a container that restarts does not fire it again', async () => {
    const ns = uniqueKey('ns');
    const tenant = { id: uniqueKey('tenant'), plan: 'pro' };
    const before = aws.events.length;
    const first = new Limiter({
      store: testStore(),
      config,
      log: () => {},
      namespace: ns,
      alerts: eventBridgeSink(client()),
    });
    await first.reserve({ tenant: tenant.id, user: 'u' }, tenant, CHAT, { tokens: 6_000, microUsd: 0 }, 0);
    const restarted = new Limiter({
      store: testStore(),
      config,
      log: () => {},
      namespace: ns,
      alerts: eventBridgeSink(client()),
    });
    await restarted.reserve({ tenant: tenant.id, user: 'u' }, tenant, CHAT, { tokens: 100, microUsd: 0 }, 0);
    const fired = aws.events.slice(before).filter((e) => (e.detail as { tenant: string }).tenant === tenant.id);
    expect(fired).toHaveLength(1);
  });

  it('takes entries EventBridge refused inside a 200 answer as a failure: tried three times, then logged whole', async () => {
    const ns = uniqueKey('ns');
    const tenant = { id: uniqueKey('tenant'), plan: 'pro' };
    const logged: Record<string, unknown>[] = [];
    const calls = aws.calls.PutEvents ?? 0;
    aws.failEvents = true;
    try {
      const limiter = new Limiter({
        store: testStore(),
        config,
        log: (e) => logged.push(e),
        namespace: ns,
        alerts: eventBridgeSink(client()),
      });
      await limiter.reserve({ tenant: tenant.id, user: 'u' }, tenant, CHAT, { tokens: 5_000, microUsd: 0 }, 0);
    } finally {
      aws.failEvents = false;
    }
    expect((aws.calls.PutEvents ?? 0) - calls).toBe(3);
    expect(logged).toEqual([
      expect.objectContaining({
        outcome: 'budget_alert_lost',
        error: 'AlertRefused',
        alert: expect.objectContaining({ threshold: 50 }),
      }),
    ]);
  });

  it('logs an alert EventBridge refused, whole, and fires nothing twice', async () => {
    const ns = uniqueKey('ns');
    const tenant = { id: uniqueKey('tenant'), plan: 'pro' };
    const logged: Record<string, unknown>[] = [];
    const refusing = { publish: async () => Promise.reject(Object.assign(new Error('no'), { name: 'AlertRefused' })) };
    const limiter = new Limiter({
      store: testStore(),
      config,
      log: (e) => logged.push(e),
      namespace: ns,
      alerts: refusing,
    });
    const verdict = await limiter.reserve(
      { tenant: tenant.id, user: 'u' },
      tenant,
      CHAT,
      { tokens: 5_000, microUsd: 0 },
      0,
    );
    expect(verdict.allowed).toBe(true);
    expect(logged).toEqual([
      expect.objectContaining({
        level: 'error',
        outcome: 'budget_alert_lost',
        error: 'AlertRefused',
        alert: expect.objectContaining({ threshold: 50 }),
      }),
    ]);
  });
});
