import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { calendarBudget, type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { StoreUnavailableError } from '../../lambda/engine/errors';
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { type DynamoFaultProxy, startDynamoFaultProxy } from '../support/dynamo-faults';
import {
  type Admission,
  type LeaseStep,
  lastMoment,
  play,
  refillMs,
  sizeOf,
  targetedSchedules,
  worstOverrun,
} from '../support/lease-schedules';
import { runWorker } from '../support/workers';

const T0 = 1_800_000_000_000;

// Large enough that 1% of each is several units: these are leased.
const limits: [string, Limit][] = [
  ['token bucket', tokenBucket(800, 200)],
  ['leaky bucket', leakyBucket(800, 200)],
  ['sliding window', slidingWindow(600, '2 s', 4)],
  ['calendar day', calendarBudget(600, 'day', 'Europe/Paris')],
];

/**
 * Episodes of a schedule: a pause (often long enough to refill all), container `c` writing a few
 * small spends close together (the second write or so takes a lease), others' spends meanwhile,
 * then `c` spending at its lease's last moment or some time past its end, and a container taking
 * all the store has left; then anything (small and big spends, drains, more lease ends).
 */
function episodes(limit: Limit, containers: number): fc.Arbitrary<LeaseStep[]> {
  const c = fc.integer({ min: 0, max: containers - 1 });
  const small = fc.integer({ min: 1, max: 3 });
  const gapMs = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10 }));
  const refill = refillMs(limit);
  const size = sizeOf(limit);
  const spend = (cost: fc.Arbitrary<number>) =>
    fc.record({ kind: fc.constant('spend' as const), c, gapMs, cost }) as fc.Arbitrary<LeaseStep>;
  const anyStep: fc.Arbitrary<LeaseStep> = fc.oneof(
    { weight: 4, arbitrary: spend(small) },
    { weight: 2, arbitrary: spend(fc.integer({ min: Math.ceil(size / 20), max: Math.floor(size / 2) })) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('lease-end' as const), c, cost: small, all: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('drain' as const), c, gapMs }) },
  );
  const episode = fc.record({
    pauseMs: fc.integer({ min: 0, max: 2 * refill }),
    c,
    warm: fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 5 }), cost: small }), { minLength: 2, maxLength: 4 }),
    noise: fc.array(spend(small), { maxLength: 3 }),
    past: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 * refill })),
    all: fc.boolean(),
    drainer: c,
    drainGapMs: gapMs,
    tail: fc.array(anyStep, { maxLength: 6 }),
  });
  return fc
    .array(episode, { minLength: 3, maxLength: 6 })
    .map((list) =>
      list.flatMap((e): LeaseStep[] => [
        { kind: 'spend', c: e.c, gapMs: e.pauseMs, cost: e.warm[0]!.cost },
        ...e.warm.slice(1).map((w): LeaseStep => ({ kind: 'spend', c: e.c, gapMs: w.gapMs, cost: w.cost })),
        ...e.noise,
        ...(e.past > 0 ? [{ kind: 'past-end' as const, c: e.c, afterMs: e.past, cost: 1 }] : []),
        { kind: 'lease-end', c: e.c, cost: 1, all: e.all },
        { kind: 'drain', c: e.drainer, gapMs: e.drainGapMs },
        ...e.tail,
      ]),
    );
}

describe.each(limits)('%s with leases, three containers on one key', (_name, limit) => {
  it('never admits more than the limit allows in any stretch of time, though most runs reach it', async () => {
    let decisions = 0;
    let denials = 0;
    let denyingRuns = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(episodes(limit, 3), async (steps) => {
        const clock = { now: T0 };
        const containers = [0, 1, 2].map(() => testStore({ clock: () => clock.now, leases: true }));
        const played = await play(limit, containers, uniqueKey(), steps, clock);
        expect(worstOverrun(limit, played.admitted)).toBeLessThanOrEqual(1e-9);
        runs++;
        decisions += played.decisions;
        denials += played.denials;
        if (played.denials > 0) denyingRuns++;
      }),
      { numRuns: 12 },
    );
    // The schedules bind: the limit is what denied, in nearly every run.
    expect(denyingRuns).toBeGreaterThanOrEqual(runs - 1);
    expect(denials / decisions).toBeGreaterThan(0.05);
  }, 120_000);
});

// Mostly back to back, now and then a pause past a lease's end; offered about 400 units a second
// against 200 refilled (or 300 a window-second).
const step = fc.record({
  container: fc.integer({ min: 0, max: 2 }),
  gapMs: fc.oneof({ weight: 19, arbitrary: fc.integer({ min: 0, max: 10 }) }, fc.integer({ min: 30, max: 800 })),
  cost: fc.integer({ min: 1, max: 3 }),
});

describe.each(limits)('%s with leases, three containers short of the limit', (_name, limit) => {
  it('save writes, and never admit more than the limit allows', async () => {
    let decisions = 0;
    let calls = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 150, maxLength: 250 }), async (steps) => {
        const clock = { now: T0 };
        const containers = [0, 1, 2].map(() => testStore({ clock: () => clock.now, leases: true }));
        const played = await play(
          limit,
          containers,
          uniqueKey(),
          steps.map((s): LeaseStep => ({ kind: 'spend', c: s.container, gapMs: s.gapMs, cost: s.cost })),
          clock,
        );
        expect(worstOverrun(limit, played.admitted)).toBeLessThanOrEqual(1e-9);
        decisions += steps.length;
        calls += containers.reduce((a, c) => a + c.stats.calls, 0);
      }),
      { numRuns: 8 },
    );
    // Leases took part: fewer DynamoDB calls than decisions, though pauses let them lapse (back to
    // back, one container makes a call per five decisions or fewer: below).
    expect(calls / decisions).toBeLessThan(0.85);
  });
});

describe.each(limits)('%s with leases, two containers by hand', (_name, limit) => {
  it.each(targetedSchedules(limit))('admits no more than the limit when a lease is %s', async (_what, steps) => {
    const clock = { now: T0 };
    const containers = [0, 1].map(() => testStore({ clock: () => clock.now, leases: true }));
    const played = await play(limit, containers, uniqueKey(), steps, clock);
    expect(played.denials).toBeGreaterThan(0);
    expect(worstOverrun(limit, played.admitted)).toBeLessThanOrEqual(1e-9);
  });
});

describe('a calendar budget with leases, at the end of its period', () => {
  const limit = calendarBudget(600, 'day', 'Europe/Paris');
  // The lease is taken 5 s before midnight in Paris: it dies with the day, not 10 s later.
  const midnight = Date.parse('2027-03-28T00:00:00+01:00');
  it.each(targetedSchedules(limit))('admits no more than each day allows when a lease is %s', async (_what, steps) => {
    const clock = { now: midnight - 5_000 - 2 * refillMs(limit) };
    const containers = [0, 1].map(() => testStore({ clock: () => clock.now, leases: true }));
    const played = await play(limit, containers, uniqueKey(), steps, clock);
    expect(played.denials).toBeGreaterThan(0);
    expect(worstOverrun(limit, played.admitted)).toBeLessThanOrEqual(1e-9);
  });
});

/**
 * A container holds two leases on one bucket when the older was short of a request's cost (found
 * by mutation testing, docs/testing.md). Units given back to the older lease while it lived must
 * die with it, though the newer lives on: spent later, they were charged at a moment the bucket
 * has since refilled past.
 */
describe('a container with two leases on one bucket', () => {
  it('spends none of the older one after its end, refunds included, while the newer lives', async () => {
    const limit = tokenBucket(100_000, 1_000); // 1%: leases alive for 1 s, a unit refilled each ms
    const clock = { now: T0 };
    const [c0, c1] = [0, 1].map(() => testStore({ clock: () => clock.now, leases: true })) as [LimitStore, LimitStore];
    const key = uniqueKey();
    const admitted: Admission[] = [];
    const consume = async (store: LimitStore, cost: number) => {
      const allowed = (await store.consume(key, limit, cost)).allowed;
      if (allowed) admitted.push({ at: clock.now, cost });
      return allowed;
    };
    for (let i = 0; i < 10; i++) {
      clock.now += 1;
      await consume(c0, 1);
    }
    const older = { at: clock.now, units: c0.leased(key) };
    expect(older.units).toBeGreaterThan(5);
    // A reservation takes the whole older lease, without a write...
    clock.now += 1;
    const calls = c0.stats.calls;
    const reservation = await c0.decideItem(key, [{ name: '', limit, cost: older.units }]);
    expect(c0.stats.calls).toBe(calls);
    // ... so the next request needs a write, which takes the newer lease...
    clock.now = older.at + 400;
    expect(await consume(c0, 5)).toBe(true);
    const newer = { at: clock.now, units: c0.leased(key) };
    expect(c0.stats.calls).toBe(calls + 1);
    expect(newer.units).toBeGreaterThan(0);
    // ... and the reservation is refunded in full into the older lease, which still lives.
    clock.now = older.at + 500;
    await c0.settleOnce(uniqueKey('ledger'), [
      {
        key,
        adjustments: [
          { name: '', limit, delta: -older.units, admittedAt: older.at + 1, lease: reservation.leases?.[0] },
        ],
      },
    ]);
    expect(c0.leased(key)).toBe(newer.units + older.units);
    // At the newer lease's last moment the older one is over: only the newer's units are spent,
    // and another container takes all the store has left.
    clock.now = lastMoment(limit, newer.at);
    expect(c0.leased(key)).toBe(newer.units);
    while (c0.leased(key) >= 1) expect(await consume(c0, 1)).toBe(true);
    const rest = (await c1.peek(key, limit)).remaining;
    expect(await consume(c1, rest)).toBe(true);
    while (await consume(c1, 1)) {}
    expect(worstOverrun(limit, admitted)).toBeLessThanOrEqual(1e-9);
  });
});

/**
 * Burst credit accrues while a bucket is full; a lease's write stamped later would count the time
 * its own units are being spent as full, and credit would be earned on traffic at the rate. So a
 * bucket with burst credit is never leased: each decision is DynamoDB's.
 */
describe('a token bucket with burst credit, back to back in one container', () => {
  it('takes no lease: every decision is a write', async () => {
    const clock = { now: T0 };
    const store = testStore({ clock: () => clock.now, leases: true });
    const key = uniqueKey();
    const limit = tokenBucket(800, 200, { capacity: 10, accruePerSecond: 1 });
    for (let i = 0; i < 40; i++) {
      clock.now += 1;
      expect((await store.consume(key, limit, 1)).allowed).toBe(true);
    }
    expect(store.leased(key)).toBe(0);
    expect(store.stats.calls).toBe(40);
    // The same bucket without credit is leased (the check above is not vacuous).
    const plain = testStore({ clock: () => clock.now, leases: true });
    for (let i = 0; i < 40; i++) {
      clock.now += 1;
      await plain.consume(`${key}-plain`, tokenBucket(800, 200), 1);
    }
    expect(plain.stats.calls).toBeLessThan(20);
  });
});

describe('a container that dies with a lease', () => {
  it('loses at most its lease, which then comes back as the bucket refills', async () => {
    const limit = tokenBucket(10_000, 100); // 1%: leases of up to 100 units, stamped up to 1 s later
    const clock = { now: T0 };
    const dying = testStore({ clock: () => clock.now, leases: true });
    const key = uniqueKey();
    let spent = 0;
    for (let i = 0; i < 200; i++) {
      clock.now += 5;
      if ((await dying.consume(key, limit, 1)).allowed) spent++;
    }
    expect(spent).toBe(200);
    expect(dying.stats.calls).toBeLessThan(40); // most of them came out of leases
    // The container is gone. Another sees what it spent, its unspent lease, and the refill it gave up.
    const other = testStore({ clock: () => clock.now });
    const refilled = (200 * 5 * 100) / 1000; // over the 1 s it ran: already back in the bucket
    const remaining = (await other.peek(key, limit)).remaining;
    expect(remaining).toBeLessThanOrEqual(10_000 - 200 + refilled);
    // At most a lease (100 units) and one stamp's refill (1 s at 100/s) held back.
    expect(remaining).toBeGreaterThanOrEqual(10_000 - 200 + refilled - 100 - 100 - 1);
    // ... and the bucket refills: a bucket's fill time later it is full again.
    clock.now += 100_000;
    expect((await other.peek(key, limit)).remaining).toBe(10_000);
  });
});

/** Where `value` goes in the ascending `sorted`. */
function sortedIndex(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// Not under Stryker (npm run mutation): its children run unmutated code, so it kills no mutant, and takes a minute.
describe.skipIf(process.env.STRYKER_MUTATOR_WORKER !== undefined)(
  'four processes with leases on one key, one decision after another for 3 s',
  () => {
    const worker = fileURLToPath(new URL('../support/lease-worker.ts', import.meta.url));
    // 1% of 800 is 8: leases of up to 7 units, stamped up to 1 s later; 8 refill a second, slower
    // than four processes decide on the busiest machine seen (12 decisions a second in all, with two
    // busy loops, a Stryker run and other tests on 2 cores), so the limit is what stops them.
    const limit = tokenBucket(800, 8);

    // (Writes saved are measured elsewhere: here the bucket is drained, and a denial is DynamoDB's to make.)
    it('never admit more than the limit, and hold back no more than the documented bound', async () => {
      const key = uniqueKey();
      // Most of the bucket is taken first, at once, by a container without leases: what the four race
      // for is the rest and its refill, which they exhaust however slowly they decide.
      const drainedFrom = Date.now();
      expect((await testStore().consume(key, limit, 600)).allowed).toBe(true);
      const drained: [number, number][] = Array.from({ length: 600 }, () => [drainedFrom, Date.now()]);
      const startAt = Date.now() + 4_000; // tsx takes a second or more to start each
      const untilAt = startAt + 3_000;
      const results = await Promise.all(
        [0, 1, 2, 3].map(async () => {
          return runWorker<{ admitted: [number, number][]; decisions: number }>(
            worker,
            key,
            JSON.stringify(limit),
            String(startAt),
            String(untilAt),
            '30', // each denied 30 times at least: more than the limit was offered, however slow the machine
          );
        }),
      );
      // Every admission happened within [its call's start, its call's end]: for any stretch [a, b],
      // those that surely fell in it (started at or after a, ended by b) are at most C + r x (b - a).
      const spans = [...drained, ...results.flatMap((r) => r.admitted)].sort((x, y) => x[0] - y[0]);
      const ends = spans.map((s) => s[1]).sort((x, y) => x - y);
      let worst = Number.NEGATIVE_INFINITY;
      const endsFrom: number[] = []; // ends of the calls that started at or after a, in order
      for (const [a, to] of [...spans].reverse()) {
        endsFrom.splice(sortedIndex(endsFrom, to), 0, to);
        let inside = 0;
        for (const b of ends) {
          if (b < a) continue;
          while (inside < endsFrom.length && endsFrom[inside]! <= b) inside++;
          worst = Math.max(worst, inside - (limit.capacity + (limit.refillPerSecond * (b - a)) / 1000 + 1));
        }
      }
      expect(worst).toBeLessThanOrEqual(0);
      // Offered far more than the limit, all of it was taken but for what leases held back: at most
      // 2% of the capacity per container (a lease and what was left of the one before, 16 units),
      // the stamp's refill (1 s, 8 units) of a lease written on a full bucket, and the refill of the
      // last moments, after the final decisions (1 s, 8 units).
      const admitted = spans.length;
      const span = (Math.max(...ends) - spans[0]![0]) / 1000;
      const decisions = results.reduce((a, r) => a + r.decisions, 0);
      expect(decisions - (admitted - drained.length)).toBeGreaterThan(100); // the limit was what stopped them
      expect(admitted).toBeGreaterThanOrEqual(limit.capacity + limit.refillPerSecond * span - 4 * 16 - 4 * 8 - 8);
    }, 120_000); // on a busy machine the workers start late and decide slowly, until each is denied 30 times
  },
);

/** A container with leases whose DynamoDB calls go through the fault proxy. */
function leasingBehind(
  faulty: DynamoFaultProxy,
  clock: { now: number },
  options: { deadlineMs?: number; sdkAttempts?: number },
): LimitStore {
  return new LimitStore({
    client: localClient(faulty.endpoint, options.sdkAttempts),
    tableName: tableName(),
    clock: () => clock.now,
    leases: true,
    ...(options.deadlineMs === undefined ? {} : { deadlineMs: options.deadlineMs }),
  });
}

describe('a container with a lease when DynamoDB hangs', () => {
  it('spends what it leased, and no more: the next decision fails like any other', async () => {
    const faulty = await startDynamoFaultProxy(dynamoEndpoint());
    try {
      const clock = { now: T0 };
      // A deadline a busy machine's DynamoDB Local meets while it is healthy (300 ms was missed under load).
      const store = leasingBehind(faulty, clock, { deadlineMs: 1_500 });
      const limit = tokenBucket(10_000, 100);
      const key = uniqueKey();
      for (let i = 0; i < 50; i++) {
        clock.now += 5;
        await store.consume(key, limit, 1);
      }
      const held = store.leased(key);
      expect(held).toBeGreaterThan(0);
      faulty.faults.latencyMs = 5_000; // hung, well past the deadline
      // Units already taken from the bucket are spent from memory, without DynamoDB...
      for (let i = 0; i < held; i++) expect((await store.consume(key, limit, 1)).allowed).toBe(true);
      // ... and then the layer's failure mode applies, as without leases.
      await expect(store.consume(key, limit, 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      faulty.faults.latencyMs = 0;
      await faulty.stop();
    }
  });
});

describe('a settlement retried after its answer was lost', () => {
  it('gives a lease its refund once, however often the transaction is sent', async () => {
    const faulty = await startDynamoFaultProxy(dynamoEndpoint());
    try {
      const clock = { now: T0 };
      const store = leasingBehind(faulty, clock, { sdkAttempts: 1 }); // no SDK retries: each attempt is one transaction
      const limit = tokenBucket(100_000, 1_000); // 1%: leases of up to 1,000 units, alive for 1 s
      const [leased, plain] = [uniqueKey(), uniqueKey()];
      for (let i = 0; i < 10; i++) {
        clock.now += 1;
        await store.consume(leased, limit, 1);
      }
      // A reservation of 6 spent from the lease, with no write...
      const calls = store.stats.calls;
      const reservation = await store.decideItem(leased, [{ name: '', limit, cost: 6 }]);
      const lease = reservation.leases?.[0];
      expect(lease).toBeDefined();
      expect(store.stats.calls).toBe(calls);
      const held = store.leased(leased);
      // ... settles at 1: 5 go back into the lease, and a debit of 3 on another item needs the transaction.
      const items = [
        { key: leased, adjustments: [{ name: '', limit, delta: -5, admittedAt: clock.now, lease }] },
        { key: plain, adjustments: [{ name: '', limit, delta: 3 }] },
      ];
      const ledger = uniqueKey('ledger');
      faulty.faults.dropAfterWrite = 1; // the transaction lands, its answer never arrives: twice
      const outcomes: string[] = [];
      for (let attempt = 0; attempt < 3; attempt++) {
        if (attempt === 2) faulty.faults.dropAfterWrite = 0;
        outcomes.push(await store.settleOnce(ledger, items).catch((err: Error) => err.name));
      }
      expect(faulty.injected.drops).toBe(2);
      expect(outcomes).toEqual(['StoreUnavailableError', 'StoreUnavailableError', 'already-settled']);
      // The lease took the 5 once: the container spends exactly that many more units without DynamoDB.
      expect(store.leased(leased)).toBe(held + 5);
      const before = store.stats.calls;
      for (let i = 0; i < held + 5; i++) expect((await store.consume(leased, limit, 1)).allowed).toBe(true);
      expect(store.stats.calls).toBe(before);
      // The other item was debited once.
      expect((await testStore({ clock: () => clock.now }).peek(plain, limit)).remaining).toBe(100_000 - 3);
    } finally {
      await faulty.stop();
    }
  });
});

/**
 * Settlements that meet a lease (found by mutation testing, docs/testing.md): a debit the lease
 * cannot cover, and two settlements in one container, must each land in full, on the lease or on
 * the item, never on neither.
 */
describe('settlements against a lease', () => {
  const limit = tokenBucket(100_000, 1_000); // 1%: leases of up to 1,000 units, alive for 1 s
  async function leasing(clock: { now: number }) {
    const store = new LimitStore({
      client: localClient(dynamoEndpoint()),
      tableName: tableName(),
      clock: () => clock.now,
      leases: true,
    });
    const key = uniqueKey();
    for (let i = 0; i < 10; i++) {
      clock.now += 1;
      await store.consume(key, limit, 1);
    }
    const reservation = await store.decideItem(key, [{ name: '', limit, cost: 6 }]);
    const lease = reservation.leases?.[0];
    expect(lease).toBeDefined();
    return { store, key, lease };
  }
  const remaining = async (key: string, clock: { now: number }) =>
    (await testStore({ clock: () => clock.now }).peek(key, limit)).remaining;

  it('puts on the item the whole of a debit larger than the lease holds', async () => {
    const clock = { now: T0 };
    const { store, key, lease } = await leasing(clock);
    const held = store.leased(key);
    const before = await remaining(key, clock);
    const debit = held + 50;
    await store.settleOnce(uniqueKey('ledger'), [
      { key, adjustments: [{ name: '', limit, delta: debit, admittedAt: clock.now, lease }] },
    ]);
    expect(store.leased(key)).toBe(held);
    expect(await remaining(key, clock)).toBe(before - debit);
  });

  it('puts on the item a debit that comes after the lease has ended, as for a key without a lease', async () => {
    const clock = { now: T0 };
    const { store, key, lease } = await leasing(clock);
    // The lease still holds units: a debit of one would fit in it, were it alive.
    expect(store.leased(key)).toBeGreaterThanOrEqual(1);
    const plain = uniqueKey();
    await testStore({ clock: () => clock.now }).consume(plain, limit, limit.capacity - (await remaining(key, clock)));
    expect(await remaining(plain, clock)).toBe(await remaining(key, clock));
    // Past the lease's last moment (1 s after its write's late end, which allows for clock skew),
    // nothing in the container having looked at the lease since.
    clock.now += 5_000;
    const adjust = (k: string, withLease: boolean) => ({
      key: k,
      adjustments: [{ name: '', limit, delta: 1, admittedAt: clock.now - 5_000, ...(withLease ? { lease } : {}) }],
    });
    await store.settleOnce(uniqueKey('ledger'), [adjust(key, true)]);
    await store.settleOnce(uniqueKey('ledger'), [adjust(plain, false)]);
    expect(await remaining(key, clock)).toBe(await remaining(plain, clock));
  });

  it('gives a lease each of two settlements made in one container', async () => {
    const clock = { now: T0 };
    const { store, key, lease } = await leasing(clock);
    const held = store.leased(key);
    const refund = { key, adjustments: [{ name: '', limit, delta: -2, admittedAt: clock.now, lease }] };
    await store.settleOnce(uniqueKey('ledger'), [refund]);
    await store.settleOnce(uniqueKey('ledger'), [refund]);
    expect(store.leased(key)).toBe(held + 4);
  });
});
