import { describe, expect, it } from 'vitest';
import { leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { testStore, uniqueKey } from '../support/dynamo';

const T0 = 1_800_000_000_000;

describe('several buckets in one item', () => {
  const requests = { name: 'r', limit: slidingWindow(3, '1 m'), cost: 1 };
  const tokens = { name: 't', limit: tokenBucket(100, 1), cost: 1, mode: 'admit' as const };

  it('decides a request limit and a token admission with one conditional write', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    await store.decideItem(key, [requests, tokens]);
    const calls = store.stats.calls;
    const outcome = await store.decideItem(key, [requests, tokens]);
    expect(store.stats.calls - calls).toBe(1);
    expect(outcome.allowed).toBe(true);
    expect(outcome.decisions.map((d) => d.remaining)).toEqual([1, 100]);
  });

  it('admission spends nothing, and denies once the bucket is exhausted or in debt', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    await store.adjustItem(key, [{ name: 't', limit: tokens.limit, delta: 120 }]);
    const outcome = await store.decideItem(key, [requests, tokens]);
    expect(outcome.allowed).toBe(false);
    expect(outcome.deniedAt).toBe(1); // the tokens check, 't'
    expect(outcome.decisions[1]!.retryAfterMs).toBe(21_000);
    // the request limit was not spent by the denied decision
    expect((await store.peekItem(key, [requests])).decisions[0]!.remaining).toBe(3);
  });

  it('first hit wins: the earliest failing check is the one reported', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    const a = { name: 'a', limit: leakyBucket(1, 1), cost: 1 };
    const b = { name: 'b', limit: leakyBucket(1, 1), cost: 1 };
    await store.decideItem(key, [a, b]);
    const outcome = await store.decideItem(key, [a, b]);
    expect(outcome.deniedAt).toBe(0); // 'a', the first that denied
    expect(outcome.decisions.every((d) => !d.allowed)).toBe(true);
  });

  it('a shadow limit is spent and reported but never denies', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    const shadow = { name: 's', limit: slidingWindow(1, '1 m'), cost: 1, shadow: true };
    const first = await store.decideItem(key, [requests, shadow]);
    const second = await store.decideItem(key, [requests, shadow]);
    expect([first.allowed, second.allowed]).toEqual([true, true]);
    expect(second.decisions[1]!.allowed).toBe(false);
    expect((await store.peekItem(key, [requests])).decisions[0]!.remaining).toBe(1);
  });

  it('a block attribute in the future denies every decision without spending', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    await store.compareAndSet(key, { until: undefined }, { until: T0 + 5_000 }, T0 + 5_000);
    const outcome = await store.decideItem(key, [requests], { block: 'until' });
    expect(outcome).toMatchObject({ allowed: false, blockedUntil: T0 + 5_000 });
    expect((await store.peekItem(key, [requests])).decisions[0]!.remaining).toBe(3);
    const later = testStore({ clock: () => T0 + 5_000 });
    expect((await later.decideItem(key, [requests], { block: 'until' })).allowed).toBe(true);
  });

  it('compareAndSet fails when the attribute moved, and returns what is there', async () => {
    const store = testStore({ clock: () => T0 });
    const key = uniqueKey();
    expect((await store.compareAndSet(key, { v: undefined }, { v: 1 }, T0)).ok).toBe(true);
    const clash = await store.compareAndSet(key, { v: undefined }, { v: 2 }, T0);
    expect(clash.ok).toBe(false);
    expect(clash.item?.v).toBe(1);
  });
});
