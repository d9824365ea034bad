import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { describe, expect, it } from 'vitest';
import { ATTR, KEY_PREFIX, TABLE } from '../../lambda/engine/constants';
import { InvalidCostError, StoreUnavailableError } from '../../lambda/engine/errors';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { ensureTable, type ItemOutcome, LimitStore, spendingOf } from '../../lambda/engine/store';
import { expressionBound } from '../../lambda/engine/expressions';
import { parseConfig, requests } from '../../lambda/engine/plans';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { localClient, startDynamoDbLocal } from '../../local/dynamodb-local';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const T0 = 1_800_000_000_000;

function clock(start = T0) {
  const c = { now: start, read: () => c.now };
  return c;
}

async function rawItem(key: string): Promise<Record<string, unknown> | undefined> {
  const out = await localClient(dynamoEndpoint()).send(
    new GetItemCommand({
      TableName: tableName(),
      Key: { [TABLE.partitionKey]: { S: KEY_PREFIX.bucket + key } },
      ConsistentRead: true,
    }),
  );
  return out.Item ? unmarshall(out.Item) : undefined;
}

describe.each<[string, Limit, number, number]>([
  // [name, limit of 3 that refills one unit per second, ms until one unit is back, ms the item's state can matter]
  ['token bucket', tokenBucket(3, 1), 1000, 3000],
  ['leaky bucket', leakyBucket(3, 1), 1000, 3000],
  // A window counts the slot an admission falls in plus S before it: a unit frees W + W/S after its slot began.
  // Its ring holds S + 3 slots of 1 s (two spare for clocks behind): 6 s.
  ['sliding window', slidingWindow(3, '3 s', 3), 4000, 6000],
])('%s in DynamoDB', (_name, limit, unitBackMs, memoryMs) => {
  it('admits up to the limit, then denies with a Retry-After that is honoured', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push(await store.consume(key, limit));
    expect(seen.map((d) => [d.allowed, d.remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
    expect(seen[3]!.retryAfterMs).toBe(unitBackMs);
    expect(seen[3]!.limit).toBe(3);

    c.now += seen[3]!.retryAfterMs - 1;
    expect((await store.consume(key, limit)).allowed).toBe(false);
    c.now += 1;
    expect((await store.consume(key, limit)).allowed).toBe(true);
  });

  it('makes one DynamoDB call per decision in steady state, admits and denials alike', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    await store.consume(key, limit);
    const before = store.stats.calls;
    for (let i = 0; i < 10; i++) await store.consume(key, limit);
    expect(store.stats.calls - before).toBe(10);
    expect(store.stats.reads).toBe(0);
  });

  it('decides with one call right after a settlement, whose transaction returns no state', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    await store.consume(key, limit, 2); // a reservation of two
    await store.settleOnce(`settle-${key}`, [{ key, adjustments: [{ name: '', limit, delta: -1, admittedAt: T0 }] }]);
    const before = { ...store.stats };
    const next = await store.consume(key, limit);
    expect(next).toMatchObject({ allowed: true, remaining: 1 }); // 2 - 1 refunded + 1
    expect(store.stats.calls - before.calls).toBe(1);
    expect(store.stats.conditionFailures - before.conditionFailures).toBe(0);
  });

  it('writes every item with a TTL beyond the moment its state stops mattering', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    await store.consume(key, limit, 2);
    const item = await rawItem(key);
    // Epoch seconds: the longest the state can matter (a full refill, or the whole ring) plus a day's margin for debt.
    expect(item?.[TABLE.ttlAttribute]).toBe(Math.ceil((T0 + memoryMs) / 1000) + 86_400);
    // ... which is no sooner than the two units it took are back (a bucket refills them one after the other; a window frees its slot at once).
    expect(memoryMs).toBeGreaterThanOrEqual(limit.shape === 'sliding_window' ? unitBackMs : 2 * unitBackMs);
  });

  it('settles a debit into debt and denies until time repays it', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    await store.consume(key, limit, 1);
    await store.adjust(key, limit, 4); // 5 spent of 3: 2 in debt
    const denied = await store.consume(key, limit, 1);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    c.now += denied.retryAfterMs;
    expect((await store.consume(key, limit, 1)).allowed).toBe(true);
  });

  it('refunds what a settlement gives back, never past full', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    await store.consume(key, limit, 3);
    await store.adjust(key, limit, -2, T0);
    expect((await store.peek(key, limit)).remaining).toBe(2);
    await store.adjust(key, limit, -3, T0);
    expect((await store.peek(key, limit)).remaining).toBe(3);
  });

  it('admits, and says so, when its own view is stale and another container has given room back', async () => {
    const c = clock();
    const mine = testStore({ clock: c.read });
    const other = testStore({ clock: c.read });
    const key = uniqueKey();
    await mine.consume(key, limit, 3); // this container now believes the bucket is empty
    await other.adjust(key, limit, -2, T0); // another container refunds two
    const calls = mine.stats.calls;
    const d = await mine.consume(key, limit, 1);
    expect(d).toMatchObject({ allowed: true, remaining: 1 });
    expect(mine.stats.calls - calls).toBe(1); // the probe write decided it, no read
    expect((await other.peek(key, limit)).remaining).toBe(1);
  });

  it('rejects a cost that is not a positive number and writes nothing', async () => {
    const store = testStore();
    const key = uniqueKey();
    for (const cost of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(store.consume(key, limit, cost)).rejects.toBeInstanceOf(InvalidCostError);
    }
    expect(await rawItem(key)).toBeUndefined();
  });

  it('denies a cost larger than the whole limit as exceeding it, without writing', async () => {
    const store = testStore();
    const key = uniqueKey();
    const d = await store.consume(key, limit, 4);
    expect(d).toMatchObject({ allowed: false, exceedsLimit: true });
    expect(await rawItem(key)).toBeUndefined();
  });
});

describe('burst credit in DynamoDB', () => {
  it('accrues while the bucket stays full and is spent only after the main bucket is empty', async () => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    const limit = tokenBucket(2, 1, { capacity: 2, accruePerSecond: 0.5 });
    expect((await store.consume(key, limit)).allowed).toBe(true);
    c.now += 5_000; // full again after 1 s, then 4 s of accrual at 0.5/s: 2 credits (the cap)
    const taken = [];
    for (let i = 0; i < 5; i++) taken.push((await store.consume(key, limit)).allowed);
    expect(taken).toEqual([true, true, true, true, false]);
    const item = await rawItem(key);
    expect(item?.[ATTR.credit]).toBe(0);
  });
});

// DynamoDB stores `tat + 86.39999999999999` exactly as a decimal, which reads back as a different
// double: a compare-and-set on the value read (the refill branch of a refund) then never matches.
// Real plans have such intervals: tokensPerDay(1e6) refills a token every 86.39999999999999 ms.
describe('numbers DynamoDB and JavaScript both hold exactly', () => {
  const awkward = [
    tokensPerDayLimit(1_000_000),
    tokenBucket(7, 3),
    leakyBucket(5, 0.7),
    tokenBucket(10, 1 / 3, { capacity: 3, accruePerSecond: 0.3 }),
  ];
  function tokensPerDayLimit(perDay: number) {
    return tokenBucket(perDay, perDay / 86_400);
  }

  it.each(awkward.map((l, i) => [i, l] as const))(
    'stores only whole numbers, and a refund that must refill succeeds (limit %i)',
    async (_i, limit) => {
      const c = clock();
      const store = testStore({ clock: c.read });
      const key = uniqueKey();
      expect((await store.consume(key, limit, 1)).allowed).toBe(true);
      c.now += 3;
      expect((await store.consume(key, limit, 1)).allowed).toBe(true);
      for (const [name, value] of Object.entries((await rawItem(key))!)) {
        if (typeof value === 'number') expect(Number.isInteger(value), `${name} = ${value}`).toBe(true);
      }
      // Refund more than is owed: the refill branch compares tat with the value it read.
      await store.adjust(key, limit, -5);
      const after = await store.peek(key, limit);
      expect(after.remaining).toBe(limit.capacity);
    },
  );
});

describe('clock skew between containers', () => {
  // Two containers, one 300 ms ahead of true time and one 300 ms behind, share a bucket.
  async function race(clockSkewMs: number, limit: Limit) {
    const truth = clock();
    const fast = testStore({ clock: () => truth.now + 300, clockSkewMs });
    const slow = testStore({ clock: () => truth.now - 300, clockSkewMs });
    const key = uniqueKey();
    const admitted: number[] = [];
    for (let step = 0; step < 240; step++) {
      truth.now += 25;
      for (const store of step % 2 ? [fast, slow] : [slow, fast]) {
        if ((await store.consume(key, limit)).allowed) admitted.push(truth.now);
      }
    }
    return admitted;
  }

  const worstWindow = (admitted: number[], windowMs: number) =>
    Math.max(...admitted.map((t) => admitted.filter((u) => u >= t && u < t + windowMs).length));

  it('with clockSkewMs covering the skew, a token bucket admits no more than capacity + rate x true time', async () => {
    const admitted = await race(300, tokenBucket(5, 10));
    for (const a of admitted)
      for (const b of admitted)
        if (b >= a)
          expect(admitted.filter((t) => t >= a && t <= b).length).toBeLessThanOrEqual(
            5 + Math.floor(((b - a) * 10) / 1000),
          );
  });

  it('with clockSkewMs covering the skew, a sliding window admits no more than its limit in any true window', async () => {
    const admitted = await race(300, slidingWindow(5, '1200 ms', 1));
    expect(admitted.length).toBeGreaterThan(5);
    expect(worstWindow(admitted, 1200)).toBeLessThanOrEqual(5);
  });

  it('without clockSkewMs the skewed containers over-admit (why it exists)', async () => {
    const token = await race(0, tokenBucket(5, 10));
    const window = await race(0, slidingWindow(5, '1200 ms', 1));
    const tokenExcess = Math.max(
      ...token.flatMap((a) =>
        token
          .filter((b) => b >= a)
          .map((b) => token.filter((t) => t >= a && t <= b).length - 5 - Math.floor(((b - a) * 10) / 1000)),
      ),
    );
    expect(Math.max(tokenExcess, worstWindow(window, 1200) - 5)).toBeGreaterThan(0);
  });

  it('refuses a sliding window whose slots are shorter than 4 x clockSkewMs', async () => {
    const store = testStore({ clockSkewMs: 300 });
    await expect(store.consume(uniqueKey(), slidingWindow(5, '1 s', 5))).rejects.toThrow(
      /200 ms slots, shorter than 4 x clockSkewMs \(300 ms\)/,
    );
  });
});

describe('DynamoDB Local as the tests and npm start run it', () => {
  it('sends no telemetry and leaves no metadata file in the folder it was started from', async () => {
    const here = join(process.cwd(), 'dynamodb-local-metadata.json');
    rmSync(here, { force: true });
    const dynamo = await startDynamoDbLocal();
    try {
      await ensureTable(localClient(dynamo.endpoint), 'metadata-check');
      expect(existsSync(here)).toBe(false);
    } finally {
      await dynamo.stop();
    }
  });
});

describe('when DynamoDB goes away mid-run', () => {
  it('raises a typed error naming the operation, and nothing crashes', async () => {
    const dynamo = await startDynamoDbLocal();
    const client = localClient(dynamo.endpoint, 1);
    await ensureTable(client, 'outage');
    const store = new LimitStore({ client, tableName: 'outage' });
    const limit = tokenBucket(10, 1);
    expect((await store.consume('k', limit)).allowed).toBe(true);
    await dynamo.stop();
    const failure = await store.consume('k', limit).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect((failure as StoreUnavailableError).operation).toBe('UpdateItem');
    expect((failure as Error).message).toMatch(/^limit store UpdateItem on bucket b#k failed: /);
    await expect(store.adjust('k', limit, 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.peek('k', limit)).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

// DynamoDB refuses an expression over 4 KB (DynamoDB Local too). A layer's limits share one write,
// so plans are checked at synth with an upper bound of the expressions the store can send.
describe('expression size', () => {
  const windows = (n: number) => Array.from({ length: n }, () => slidingWindow(1_000, '1 m', 60));
  const run = async (limits: Limit[]) => {
    const c = clock();
    const store = testStore({ clock: c.read });
    const key = uniqueKey();
    // First write (init), more in the same slot (add), then into later slots (roll).
    for (let i = 0; i < 5; i++) {
      await store.decideItem(
        key,
        limits.map((limit, j) => ({ name: `w${j}`, limit, cost: 1 })),
      );
      c.now += 1_500;
    }
  };

  it('refuses at synth a layer whose expressions could pass 4 KB, naming it', () => {
    expect(() =>
      parseConfig({
        plans: { team: { user: windows(4).map((limit, i) => requests(limit, { name: `w${i}` })) } },
        endpoints: { '/v1/chat/completions': { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
      }),
    ).toThrow(
      new RegExp(
        [
          /config.plans.team.user: the layer's DynamoDB expressions can reach \d+ bytes, /.source,
          /over DynamoDB's limit of 4096 per expression: use fewer subWindows or fewer limits in this layer/.source,
        ].join(''),
      ),
    );
  });

  it('the bound is real: a layer under it writes through DynamoDB, the refused one DynamoDB refuses too', async () => {
    const accepted = [...windows(2), tokenBucket(10, 1, { capacity: 2, accruePerSecond: 1 })];
    expect(Math.max(...Object.values(expressionBound(accepted)))).toBeLessThanOrEqual(4096);
    await run(accepted);
    expect(Math.max(...Object.values(expressionBound(windows(4))))).toBeGreaterThan(4096);
    await expect(run(windows(4))).rejects.toThrow(/Expression size has exceeded the maximum allowed size/);
  });
});

describe('one decision over several items (decideTogether)', () => {
  const one = slidingWindow(1, '1 m');
  const three = slidingWindow(3, '1 m');
  const request = (key: string, limit: Limit) => ({ key, checks: [{ name: '', limit, cost: 1 }], required: true });

  it.each([false, true])('every item admits, or none keeps what it spent (atomic: %s)', async (atomic) => {
    const store = testStore({ clock: () => T0 });
    const [a, b] = [uniqueKey(), uniqueKey()];
    const first = await store.decideTogether([request(a, three), request(b, one)], { atomic });
    expect(first.map((r) => (r instanceof Error ? r.name : r.allowed))).toEqual([true, true]);
    // b is spent: the next decision denies there, and a gets back what it spent.
    const second = await store.decideTogether([request(a, three), request(b, one)], { atomic });
    // a alone would admit (in a transaction it was never written; in parallel it was, then refunded).
    expect(second.map((r) => (r instanceof Error ? r.name : r.allowed))).toEqual([true, false]);
    expect((await store.peek(a, three)).remaining).toBe(2); // only the first decision's unit
    expect((await store.peek(b, one)).remaining).toBe(0);
  });
});

describe('refunds give back only what has not refilled since', () => {
  /** Gives back `refund` of what `admission` (one check of `cost` on the bucket '' at T0) spent, as a settlement does. */
  const giveBack = (
    store: LimitStore,
    key: string,
    limit: Limit,
    refund: number,
    admission: { cost: number; outcome: ItemOutcome },
  ) =>
    store.adjustItem(key, [
      {
        name: '',
        limit,
        delta: -refund,
        admittedAt: T0,
        ...spendingOf({ name: '', limit, cost: admission.cost }, admission.outcome, 0),
      },
    ]);

  // One admission's units sit in the bucket's timeline until its tat: a unit whose place has
  // passed has been refilled already. Giving it back again let capacity plus the refund through
  // at once, which the rule "tat >= floor -> tat -= refund" (the one before this) did.
  it('does not let capacity plus a refund through after the bucket refilled', async () => {
    const limit = tokenBucket(10, 1);
    const c = clock();
    const mine = testStore({ clock: c.read });
    const other = testStore({ clock: c.read });
    const key = uniqueKey();
    const reservation = await mine.decideItem(key, [{ name: '', limit, cost: 10 }]);
    c.now += 12_000; // full again
    expect((await other.consume(key, limit, 8)).allowed).toBe(true);
    c.now += 1_000;
    expect((await mine.peek(key, limit)).remaining).toBe(3); // it sees the bucket as it is
    // The request used 5 of its 10: its whole stretch of the timeline lies in the past.
    await giveBack(mine, key, limit, 5, { cost: 10, outcome: reservation });
    // 8 taken a second ago and one unit refilled since: 3 left, not 8 (8 + 8 in one second would be 16 > 10 + 1).
    const d = await other.consume(key, limit, 8);
    expect(d).toMatchObject({ allowed: false, remaining: 3 });
  });

  it('gives back all of a refund whose units still lie ahead, with no read, as one write', async () => {
    const limit = tokenBucket(100, 1);
    const c = clock();
    const mine = testStore({ clock: c.read });
    const other = testStore({ clock: c.read });
    const key = uniqueKey();
    expect((await other.consume(key, limit, 80)).allowed).toBe(true);
    const reservation = await mine.decideItem(key, [{ name: '', limit, cost: 20 }]); // drained: ends 100 s ahead
    c.now += 10_000; // 10 refilled meanwhile
    const before = { ...mine.stats };
    await giveBack(mine, key, limit, 15, { cost: 20, outcome: reservation });
    expect(mine.stats.calls - before.calls).toBe(1);
    expect(mine.stats.reads - before.reads).toBe(0);
    expect((await other.peek(key, limit)).remaining).toBe(25); // 0 + 10 refilled + 15 back
  });

  it('gives back less when another refund moved its units toward the present meanwhile', async () => {
    const limit = tokenBucket(100, 1);
    const c = clock();
    const [first, second, third] = [
      testStore({ clock: c.read }),
      testStore({ clock: c.read }),
      testStore({ clock: c.read }),
    ];
    const key = uniqueKey();
    const a = await first.decideItem(key, [{ name: '', limit, cost: 60 }]); // its units: 0..60 s
    const b = await second.decideItem(key, [{ name: '', limit, cost: 10 }]); // 60..70 s
    await third.decideItem(key, [{ name: '', limit, cost: 20 }]); // 70..90 s
    c.now += 55_000;
    // The first gives back 50 of its 60, of which only 5 (55..60 s) have not refilled: the rest move 5 s earlier.
    await giveBack(first, key, limit, 50, { cost: 60, outcome: a });
    c.now += 7_000;
    // The second, whose view predates that, sees its units at 60..70 s, 8 ahead; they are at 55..65 s, 3 ahead.
    const before = { ...second.stats };
    await giveBack(second, key, limit, 10, { cost: 10, outcome: b });
    expect(second.stats.conditionFailures - before.conditionFailures).toBe(1); // its condition caught it
    // As if the three had cost 55, 7 and 20: the third's units end 82 s in, 20 ahead of 62 s: 80 left, not 85.
    expect((await third.peek(key, limit)).remaining).toBe(80);
  });

  it('settles with no read and no write when every refund has refilled, and from an unseen item reads once', async () => {
    const fast = tokenBucket(1_000, 1_000); // refills a unit a millisecond
    const c = clock();
    const [a, b] = [uniqueKey(), uniqueKey()];
    const reserving = testStore({ clock: c.read });
    const check = { name: '', limit: fast, cost: 100 };
    const [ra, rb] = [await reserving.decideItem(a, [check]), await reserving.decideItem(b, [check])];
    c.now += 1_000; // both full again
    const adjustments = (key: string, r: typeof ra) => ({
      key,
      adjustments: [{ name: '', limit: fast, delta: -60, admittedAt: T0, ...spendingOf(check, r, 0) }],
    });
    const before = { ...reserving.stats };
    expect(await reserving.settleOnce(uniqueKey('ledger'), [adjustments(a, ra), adjustments(b, rb)])).toBe('settled');
    expect(reserving.stats.calls - before.calls).toBe(0);
    // Another container that has never seen the items reads both in one request, and writes nothing either.
    const settling = testStore({ clock: c.read });
    expect(await settling.settleOnce(uniqueKey('ledger'), [adjustments(a, ra), adjustments(b, rb)])).toBe('settled');
    expect(settling.stats).toMatchObject({ calls: 1, reads: 2 });
    expect((await settling.peek(a, fast)).remaining).toBe(1_000);
    expect((await settling.peek(b, fast)).remaining).toBe(1_000);
  });
});
