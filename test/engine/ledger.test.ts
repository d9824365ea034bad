import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Ledger,
  type LedgerOptions,
  ledgerDay,
  ledgerZone,
  readLedger,
  summarizeLedger,
} from '../../lambda/engine/ledger';
import { tokensPerMonth } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { type DynamoFaultProxy, startDynamoFaultProxy } from '../support/dynamo-faults';
import { dynamoEndpoint, ledgerTableName, uniqueKey } from '../support/dynamo';

const client = () => localClient(dynamoEndpoint());
const DAY = '2026-12-03';
const AT = Date.parse(`${DAY}T12:00:00Z`);
const who = (tenant: string, user = 'alice', model = 'gpt-4o-mini') => ({ tenant, user, model, timeZone: 'UTC' });
const use = (input: number, output: number, microUsd: number) => ({
  inputTokens: input,
  outputTokens: output,
  microUsd,
});

function ledger(options: Partial<LedgerOptions> = {}): Ledger {
  return new Ledger({ client: client(), tableName: ledgerTableName(), ...options });
}

describe('the usage ledger', () => {
  it('adds up what each container settled, by user, model and day, with denials by code', async () => {
    const tenant = uniqueKey('tenant');
    const a = ledger();
    const b = ledger();
    a.recordUse(who(tenant, 'alice'), AT, { ...use(100, 20, 27.0), cachedTokens: 40, reasoningTokens: 5 });
    a.recordUse(who(tenant, 'alice'), AT + 1, use(10, 2, 2.7));
    b.recordUse(who(tenant, 'alice'), AT + 2, use(1, 1, 0.75));
    b.recordUse(who(tenant, 'bob', 'gpt-4o'), AT + 3, use(7, 3, 0.3333));
    b.recordUse(who(tenant, 'bob', 'gpt-4o'), AT + 86_400_000, use(5, 5, 1));
    a.recordDenial(who(tenant, 'bob', '-'), AT, 'user_requests_per_minute');
    a.recordDenial(who(tenant, 'bob', '-'), AT, 'user_requests_per_minute');
    b.recordDenial(who(tenant, 'alice', '-'), AT, 'tenant_tokens_per_day');
    await Promise.all([a.flush(), b.flush()]);

    const rows = await readLedger(client(), ledgerTableName(), tenant, '2026-12-01', '2026-12-31');
    const [total] = summarizeLedger(rows);
    expect(total).toEqual({
      requests: 5,
      inputTokens: 123,
      outputTokens: 31,
      cachedTokens: 40,
      reasoningTokens: 5,
      // Billionths of a dollar (a thousand to the micro-dollar), each request's rounded: 27,000 + 2,700 + 750 + 333.3 (333) + 1,000.
      nanoUsd: 31_783,
      denied: { user_requests_per_minute: 2, tenant_tokens_per_day: 1 },
    });
    expect(summarizeLedger(rows, 'user').map((l) => [l.group, l.requests, l.nanoUsd])).toEqual([
      ['alice', 3, 30_450],
      ['bob', 2, 1_333],
    ]);
    expect(summarizeLedger(rows, 'model').map((l) => [l.group, l.requests])).toEqual([
      ['-', 0],
      ['gpt-4o', 2],
      ['gpt-4o-mini', 3],
    ]);
    expect(summarizeLedger(rows, 'day').map((l) => [l.group, l.requests])).toEqual([
      [DAY, 4],
      ['2026-12-04', 1],
    ]);
    // A range of days reads those days only; nothing is in memory any more.
    const firstDay = await readLedger(client(), ledgerTableName(), tenant, DAY, DAY);
    expect(summarizeLedger(firstDay)[0]!.requests).toBe(4);
    expect(a.unwritten().requests + b.unwritten().requests).toBe(0);
  });

  it('counts a write whose answer was lost once: the resend carries the same sequence number and is refused', async () => {
    const faults: DynamoFaultProxy = await startDynamoFaultProxy(dynamoEndpoint(), 7);
    try {
      const tenant = uniqueKey('tenant');
      const l = new Ledger({
        client: localClient(faults.endpoint),
        tableName: ledgerTableName(),
        deadlineMs: 5_000,
        backoffMs: 0,
      });
      let recorded = 0;
      for (let i = 0; i < 30; i++) {
        l.recordUse(who(tenant), AT, use(10, 1, 1));
        recorded++;
        // Half the writes land and their answer never comes back (the SDK's own retry included).
        faults.faults.dropAfterWrite = 0.5;
        await l.endInvocation(AT);
      }
      faults.faults.dropAfterWrite = 0;
      await l.flush();
      expect(faults.injected.drops).toBeGreaterThan(5);
      const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
      expect(total!.requests).toBe(recorded);
      expect(total!.inputTokens).toBe(10 * recorded);
    } finally {
      await faults.stop();
    }
  });

  it('keeps what it could not write and writes it at a later invocation, nothing lost', async () => {
    const faults = await startDynamoFaultProxy(dynamoEndpoint(), 3);
    try {
      const tenant = uniqueKey('tenant');
      const logged: Record<string, unknown>[] = [];
      let now = AT;
      const l = new Ledger({
        client: localClient(faults.endpoint, 1),
        tableName: ledgerTableName(),
        log: (e) => logged.push(e),
        now: () => now,
      });
      faults.refuse.push('ProvisionedThroughputExceededException');
      l.recordUse(who(tenant), AT, use(10, 1, 1));
      await l.endInvocation(AT);
      expect(logged.map((e) => e.outcome)).toContain('ledger_write_failed');
      expect(l.unwritten().requests).toBe(1);
      // Within the back-off (30 s) nothing is tried; after it, what was held is written.
      now += 10_000;
      l.recordUse(who(tenant), AT, use(10, 1, 1));
      await l.endInvocation(now - 10);
      expect(l.unwritten().requests).toBe(2);
      now += 25_000;
      await l.endInvocation(now - 10);
      expect(l.unwritten().requests).toBe(0);
      const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
      expect(total!.requests).toBe(2);
    } finally {
      await faults.stop();
    }
  });

  it('writes at the end of every invocation by default: a container that stops loses nothing', async () => {
    const tenant = uniqueKey('tenant');
    const l = ledger();
    for (let i = 0; i < 5; i++) {
      l.recordUse(who(tenant), AT, use(1, 1, 1));
      await l.endInvocation(Date.now());
      expect(l.unwritten().requests).toBe(0);
    }
    expect(l.stats.calls).toBe(5);
  });

  it('with flushSeconds, a busy container writes once a period, and one that stops loses at most that period', async () => {
    const tenant = uniqueKey('tenant');
    let now = AT;
    const l = ledger({ flushSeconds: 10, now: () => now });
    let settled = 0;
    // One request a second, back to back: the container is busy.
    for (let i = 0; i < 35; i++) {
      const started = now;
      now += 1_000;
      l.recordUse(who(tenant), started, use(1, 1, 1));
      settled++;
      await l.endInvocation(started);
      expect(l.unwritten().requests).toBeLessThanOrEqual(10);
    }
    // Stopped here without a word (Lambda retired it): what is lost is what it held, at most 10 s of requests.
    const lost = l.unwritten().requests;
    const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
    expect(total!.requests + lost).toBe(settled);
    expect(lost).toBeLessThanOrEqual(10);
    expect(l.stats.calls).toBeLessThanOrEqual(4);
  });

  it('writes at once when the container was idle before the invocation (sparse traffic is never held)', async () => {
    const tenant = uniqueKey('tenant');
    let now = AT;
    const l = ledger({ flushSeconds: 60, now: () => now });
    for (let i = 0; i < 3; i++) {
      now += 30_000; // a request every 30 s: idle in between
      l.recordUse(who(tenant), now, use(1, 1, 1));
      await l.endInvocation(now - 100);
      expect(l.unwritten().requests).toBe(0);
    }
  });

  it('holds denials of a busy container up to denialFlushSeconds (a client hammering a limit costs no write per 429)', async () => {
    const tenant = uniqueKey('tenant');
    let now = AT;
    const l = ledger({ now: () => now });
    await l.endInvocation(now); // the container's first invocation
    // A 429 every 50 ms, back to back, for 70 s: written once the oldest held is a minute old.
    let denied = 0;
    while (now < AT + 70_000) {
      const started = now;
      now += 50;
      l.recordDenial(who(tenant, 'alice', '-'), started, 'user_requests_per_minute');
      denied++;
      await l.endInvocation(started);
      if (now < AT + 60_000) expect(l.stats.calls).toBe(0);
    }
    expect(l.stats.calls).toBe(1);
    const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
    expect(total!.denied.user_requests_per_minute).toBe(denied - l.unwritten().denied.user_requests_per_minute!);
    expect(total!.denied.user_requests_per_minute).toBeGreaterThanOrEqual(60_000 / 50);
  });

  it('waits for one round of writes at most, and none for a while after a failure (a slow DynamoDB holds no invocation)', async () => {
    const faults = await startDynamoFaultProxy(dynamoEndpoint(), 5);
    try {
      const tenant = uniqueKey('tenant');
      let now = AT;
      const l = new Ledger({
        client: localClient(faults.endpoint, 1),
        tableName: ledgerTableName(),
        deadlineMs: 200,
        now: () => now,
      });
      for (let i = 0; i < 40; i++) l.recordUse(who(tenant, `u${i}`), AT, use(1, 0, 0));
      faults.faults.latencyMs = 5_000; // DynamoDB answers nothing in time
      const timed = async () => {
        const t0 = performance.now();
        await l.endInvocation(now);
        return performance.now() - t0;
      };
      expect(await timed()).toBeLessThan(1_500); // 16 rows at once, 200 ms each, not 40 rows one after another
      expect(await timed()).toBeLessThan(50); // backing off: nothing tried
      faults.faults.latencyMs = 0;
      now += 31_000;
      await l.endInvocation(now - 10);
      await l.flush();
      const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
      expect(total!.requests).toBe(40);
    } finally {
      await faults.stop();
    }
  });

  it('writes a row it forgot and made again (a late request of a past day): its sequence only grows', async () => {
    const tenant = uniqueKey('tenant');
    let now = AT;
    const l = ledger({ now: () => now });
    l.recordUse(who(tenant), AT, use(1, 0, 0));
    await l.flush();
    now += 3 * 86_400_000; // days later: the empty row of DAY is forgotten at the next write
    l.recordUse(who(tenant), now, use(1, 0, 0));
    await l.flush();
    l.recordUse(who(tenant), AT, use(1, 0, 0)); // settled late, admitted on DAY
    await l.flush();
    const [total] = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY));
    expect(total!.requests).toBe(2);
  });

  it("keeps a date's rows of two zones apart (a tenant whose budget moved zone)", async () => {
    const tenant = uniqueKey('tenant');
    const l = ledger();
    l.recordUse({ ...who(tenant), timeZone: 'UTC' }, AT, use(1, 0, 0));
    l.recordUse({ ...who(tenant), timeZone: 'Europe/Paris' }, AT, use(2, 0, 0));
    await l.flush();
    const rows = await readLedger(client(), ledgerTableName(), tenant, DAY, DAY);
    expect(rows.map((r) => [r.timeZone, r.inputTokens]).sort()).toEqual([
      ['Europe/Paris', 2],
      ['UTC', 1],
    ]);
  });

  it("reckons days in the zone of the plan's calendar budget, UTC without one", async () => {
    const plan = { tenant: [tokensPerMonth(1_000_000, { timeZone: 'Asia/Tokyo' })] };
    expect(ledgerZone(plan)).toBe('Asia/Tokyo');
    expect(ledgerZone({ tenant: [] })).toBe('UTC');
    const late = Date.parse('2026-12-31T16:30:00Z'); // 01:30 on New Year's Day in Tokyo
    expect(ledgerDay(late, 'Asia/Tokyo')).toBe('2027-01-01');
    expect(ledgerDay(late, 'UTC')).toBe('2026-12-31');
    const tenant = uniqueKey('tenant');
    const l = ledger();
    l.recordUse({ tenant, user: 'u', model: 'm', timeZone: 'Asia/Tokyo' }, late, use(1, 1, 1));
    await l.flush();
    const rows = await readLedger(client(), ledgerTableName(), tenant, '2027-01-01', '2027-01-31');
    expect(rows.map((r) => [r.day, r.timeZone])).toEqual([['2027-01-01', 'Asia/Tokyo']]);
  });

  it('leaves out rows past their retention that TTL has not deleted yet (DynamoDB deletes them days later)', async () => {
    const tenant = uniqueKey('tenant');
    const old = Date.parse('2020-03-01T12:00:00Z');
    const l = ledger({ retentionDays: 1 });
    l.recordUse(who(tenant), old, use(1, 0, 0));
    await l.flush();
    expect(await readLedger(client(), ledgerTableName(), tenant, '2020-03-01', '2020-03-01')).toEqual([]);
    const kept = ledger({ retentionDays: 3_650 });
    kept.recordUse(who(tenant), old, use(1, 0, 0));
    await kept.flush();
    expect(await readLedger(client(), ledgerTableName(), tenant, '2020-03-01', '2020-03-01')).toHaveLength(1);
  });

  it('keeps user and model ids that contain the key separator apart', async () => {
    const tenant = uniqueKey('tenant');
    const l = ledger();
    l.recordUse({ tenant, user: 'a#b', model: 'c', timeZone: 'UTC' }, AT, use(1, 0, 0));
    l.recordUse({ tenant, user: 'a', model: 'b#c', timeZone: 'UTC' }, AT, use(2, 0, 0));
    await l.flush();
    const byUser = summarizeLedger(await readLedger(client(), ledgerTableName(), tenant, DAY, DAY), 'user');
    expect(byUser.map((l) => [l.group, l.inputTokens])).toEqual([
      ['a', 2],
      ['a#b', 1],
    ]);
  });
});

describe('reading the ledger', () => {
  let many: string;
  beforeAll(async () => {
    // More rows than one page of a Query holds (1 MB): long ids make each row large.
    many = uniqueKey('tenant');
    const l = ledger({ writer: 'w'.repeat(16) });
    const long = 'x'.repeat(900);
    for (let i = 0; i < 1_300; i++)
      l.recordUse({ tenant: many, user: `${long}${i}`, model: 'm', timeZone: 'UTC' }, AT, use(1, 0, 0));
    await l.flush();
  }, 60_000);
  afterAll(() => {});

  it('reads every page', async () => {
    const rows = await readLedger(client(), ledgerTableName(), many, DAY, DAY);
    expect(rows).toHaveLength(1_300);
  });

  it('refuses days that are not YYYY-MM-DD', async () => {
    await expect(readLedger(client(), ledgerTableName(), 't', '2026-1-1', DAY)).rejects.toThrow(/YYYY-MM-DD/);
  });
});
