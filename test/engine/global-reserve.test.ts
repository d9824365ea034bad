/**
 * A priority tier (Plan.globalReserve): a plan's tenants may not take the last part of a global
 * limit, which the other plans keep however hard those tenants push. Exact, against DynamoDB Local:
 * the global's own conditional write decides, never a lease.
 */
import { describe, expect, it } from 'vitest';
import { slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { GLOBAL_RESERVE_CODE, Limiter, type TenantRecord } from '../../lambda/engine/limiter';
import { parseConfig, requests, tokens } from '../../lambda/engine/plans';
import { testStore, uniqueKey } from '../support/dynamo';

const CHAT = '/v1/chat/completions';
/** A global pool of 1,000 tokens that does not refill while the test runs; batch may use 80% of it. */
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { batch: { globalReserve: 20 }, interactive: {} },
      endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      global: { limits: [tokens(tokenBucket(1_000, 0.001), { name: 'pool' })], shards: 1 },
    }),
  ),
);
const batch: TenantRecord = { id: 'b', plan: 'batch' };
const interactive: TenantRecord = { id: 'i', plan: 'interactive' };
const who = (t: TenantRecord) => ({ tenant: t.id, user: 'u' });
const amounts = (n: number) => ({ tokens: n, microUsd: 0 });

function limiter(ns: string, leases = false): Limiter {
  return new Limiter({ store: testStore(leases ? { leases: true } : {}), config, log: () => {}, namespace: ns });
}

describe('a plan with a global reserve', () => {
  it('stops its tenants at the line with code global_reserve and a wait; the other plans use the rest', async () => {
    const l = limiter(uniqueKey('ns'));
    for (let i = 0; i < 8; i++) expect((await l.reserve(who(batch), batch, CHAT, amounts(100), 0)).allowed).toBe(true);
    const stopped = await l.reserve(who(batch), batch, CHAT, amounts(100), 0);
    expect(stopped).toMatchObject({ allowed: false, code: GLOBAL_RESERVE_CODE });
    // Until 100 more tokens have refilled at 0.001 a second.
    expect(stopped.retryAfterMs).toBeGreaterThan(99_000_000);
    for (let i = 0; i < 2; i++)
      expect((await l.reserve(who(interactive), interactive, CHAT, amounts(100), 0)).allowed).toBe(true);
    const full = await l.reserve(who(interactive), interactive, CHAT, amounts(1), 0);
    expect(full).toMatchObject({ allowed: false, code: 'global_tokens_pool' });
  });

  it('does not count the reserve twice: what interactive tenants spent first is out of the same 1,000', async () => {
    const l = limiter(uniqueKey('ns'));
    expect((await l.reserve(who(interactive), interactive, CHAT, amounts(500), 0)).allowed).toBe(true);
    expect((await l.reserve(who(batch), batch, CHAT, amounts(300), 0)).allowed).toBe(true);
    expect((await l.reserve(who(batch), batch, CHAT, amounts(1), 0)).code).toBe(GLOBAL_RESERVE_CODE);
    expect((await l.reserve(who(interactive), interactive, CHAT, amounts(200), 0)).allowed).toBe(true);
  });

  it('gets back exactly what a settlement refunds, into the whole bucket', async () => {
    const l = limiter(uniqueKey('ns'));
    const verdicts = [];
    for (let i = 0; i < 8; i++) verdicts.push(await l.reserve(who(batch), batch, CHAT, amounts(100), 0));
    expect((await l.reserve(who(batch), batch, CHAT, amounts(100), 0)).allowed).toBe(false);
    // The first request used 30 of its 100.
    const v = verdicts[0]!;
    await l.settle(
      uniqueKey('req'),
      {
        identity: who(batch),
        tenant: batch,
        route: CHAT,
        shard: v.shard,
        reserved: amounts(100),
        failedOpen: v.failedOpen,
        admittedAt: v.admittedAt!,
        ...(v.spending ? { spending: v.spending } : {}),
      },
      amounts(30),
    );
    expect((await l.reserve(who(batch), batch, CHAT, amounts(70), 0)).allowed).toBe(true);
    expect((await l.reserve(who(batch), batch, CHAT, amounts(1), 0)).code).toBe(GLOBAL_RESERVE_CODE);
    expect((await l.reserve(who(interactive), interactive, CHAT, amounts(200), 0)).allowed).toBe(true);
  });

  it.each([
    ['without leases', false, 0],
    ['with leases in every container', true, 4],
  ])(
    'under a flood from four containers at once (%s): the global is never exceeded, batch never passes the line, the rest reach theirs',
    async (_name, leases, leftInLeases) => {
      const ns = uniqueKey('ns');
      const containers = [0, 1, 2, 3].map(() => limiter(ns, leases));
      const results = await Promise.all([
        ...Array.from({ length: 120 }, (_, i) =>
          containers[i % 4]!.reserve(who(batch), batch, CHAT, amounts(10), 0).then((v) => ['batch', v] as const),
        ),
        ...Array.from({ length: 30 }, (_, i) =>
          containers[i % 4]!.reserve(who(interactive), interactive, CHAT, amounts(10), 0).then(
            (v) => ['interactive', v] as const,
          ),
        ),
      ]);
      const admitted = (kind: string) => results.filter(([k, v]) => k === kind && v.allowed).length * 10;
      expect(admitted('batch') + admitted('interactive')).toBeLessThanOrEqual(1_000);
      expect(admitted('batch')).toBeLessThanOrEqual(800);
      // Interactive asked for 300: it gets at least the 200 batch cannot take (less what a
      // container's lease holds unspent, at most one request's worth per container).
      expect(admitted('interactive')).toBeGreaterThanOrEqual(200 - leftInLeases * 10);
      const denials = results.filter(([k, v]) => k === 'batch' && !v.allowed).map(([, v]) => v.code);
      expect(new Set(denials)).toEqual(new Set([GLOBAL_RESERVE_CODE]));
    },
  );

  it("never spends from a lease another plan's requests took in the same container (a lease is a share of the whole bucket)", async () => {
    const ns = uniqueKey('ns');
    const big = parseConfig(
      JSON.parse(
        JSON.stringify({
          ...config,
          global: { limits: [tokens(tokenBucket(10_000, 0.001), { name: 'pool' })], shards: 1 },
        }),
      ),
    );
    const store = testStore({ leases: true });
    const a = new Limiter({ store, config: big, log: () => {}, namespace: ns });
    const b = new Limiter({ store: testStore(), config: big, log: () => {}, namespace: ns });
    // Container A serves an interactive tenant busily: it comes to hold a lease on the global pool.
    for (let i = 0; i < 40 && store.leased(`${ns}g:0`, 't_pool') === 0; i++)
      await a.reserve(who(interactive), interactive, CHAT, amounts(1), 0);
    expect(store.leased(`${ns}g:0`, 't_pool')).toBeGreaterThan(1);
    // Container B's batch tenant takes the pool down to its line.
    let taken = 0;
    while ((await b.reserve(who(batch), batch, CHAT, amounts(100), 0)).allowed) taken++;
    while ((await b.reserve(who(batch), batch, CHAT, amounts(1), 0)).allowed) taken++;
    expect(taken).toBeGreaterThan(0);
    // A batch request in container A is decided by the bucket, not by A's lease: past the line, refused.
    expect((await a.reserve(who(batch), batch, CHAT, amounts(1), 0)).code).toBe(GLOBAL_RESERVE_CODE);
  });

  it('is a whole percent from 1 to 99, named in the error', () => {
    const plan = (globalReserve: unknown) => () =>
      parseConfig({
        plans: { batch: { globalReserve } },
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      });
    for (const bad of [0, 100, 12.5, '20', -1])
      expect(plan(bad)).toThrow(/config\.plans\.batch\.globalReserve: expected a whole percent from 1 to 99/);
    expect(plan(99)).not.toThrow();
  });

  it('is refused where it would leave a window less than a request per shard (a window counts whole requests)', () => {
    const withGlobal = (globalReserve: number) => () =>
      parseConfig(
        JSON.parse(
          JSON.stringify({
            plans: { batch: { globalReserve } },
            endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
            global: { limits: [requests(slidingWindow(16, '1 m'))], shards: 8 },
          }),
        ),
      );
    expect(withGlobal(50)).not.toThrow(); // 2 per shard, 1 left to the plan
    expect(withGlobal(60)).toThrow(
      "config.plans.batch.globalReserve: 60% of per_minute's 2 per shard leaves this plan no request on a shard",
    );
  });
});
