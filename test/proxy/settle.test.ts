/**
 * Settlement as operators and clients see it (lambda/proxy/settle.ts, pricing.ts): the retries and
 * their backoff, what is logged and counted at each step, the flags on usage that cannot be
 * trusted, and prices at the dearest rate a request can use. Cases found by mutation testing
 * (docs/testing.md) that the end-to-end classes did not pin down.
 */
import { describe, expect, it, vi } from 'vitest';
import { StoreUnavailableError } from '../../lambda/engine/errors';
import type { Limiter } from '../../lambda/engine/limiter';
import { boundMicroUsd, costMicroUsd, NO_AUDIO, type Rates } from '../../lambda/proxy/pricing';
import { answer, type ProxyDeps, type Reservation, settle, usedAmounts } from '../../lambda/proxy/settle';
import type { MetricEvent } from '../../lambda/runtime/metrics';

const reservation = {
  model: 'm',
  identity: { tenant: 'acme', user: 'ann' },
  tenant: { id: 'acme', plan: 'team' },
  route: '/v1/chat/completions',
  shard: 0,
  reserved: { tokens: 1_000, outputTokens: 600, microUsd: 500 },
  failedOpen: [],
  admittedAt: 0,
  spending: undefined,
} as unknown as Reservation;

function depsWith(settleImpl: () => Promise<'settled' | 'already-settled'>) {
  const logs: Record<string, unknown>[] = [];
  const metrics: MetricEvent[] = [];
  const calls: number[] = [];
  const deps = {
    limiter: {
      settle: () => {
        calls.push(Date.now());
        return settleImpl();
      },
    } as unknown as Limiter,
    log: (e: Record<string, unknown>) => logs.push(e),
    metrics: (m: MetricEvent) => metrics.push(m),
    settleAttempts: 5,
    settleBackoffMs: 20,
  } as unknown as ProxyDeps;
  return { deps, logs, metrics, calls };
}

describe('settle, into the usage ledger', () => {
  /** Deps whose limiter answers `results` in turn (an Error is thrown) and whose ledger records what it is given. */
  function withLedger(results: ('settled' | 'already-settled' | Error)[]) {
    const recorded: unknown[][] = [];
    const { deps } = depsWith(async () => {
      const next = results.shift()!;
      if (next instanceof Error) throw next;
      return next;
    });
    const ledgerDeps = {
      ...deps,
      settleBackoffMs: 1,
      limiter: { ...deps.limiter, settle: deps.limiter.settle, planOf: () => ({}) },
      ledger: { recordUse: (...args: unknown[]) => recorded.push(args) },
    } as unknown as ProxyDeps;
    return { deps: ledgerDeps, recorded };
  }
  const used = { tokens: 700, outputTokens: 300, microUsd: 200, cachedTokens: 50, reasoningTokens: 20 };
  const entry = [
    { tenant: 'acme', user: 'ann', model: 'm', timeZone: 'UTC' },
    0,
    { inputTokens: 400, outputTokens: 300, cachedTokens: 50, reasoningTokens: 20, microUsd: 200 },
  ];

  it('enters a settled request once, with its parts', async () => {
    const { deps, recorded } = withLedger(['settled']);
    await settle(deps, 'r', reservation, used, 'complete');
    expect(recorded).toEqual([entry]);
  });

  it('enters it once when a retry finds it settled already (the first answer was lost)', async () => {
    const { deps, recorded } = withLedger([new StoreUnavailableError('UpdateItem', 'k'), 'already-settled']);
    await settle(deps, 'r', reservation, used, 'complete');
    expect(recorded).toEqual([entry]);
  });

  it('enters what was used when the settlement gives up: the tenant used it, whatever DynamoDB answered', async () => {
    const down = () => new StoreUnavailableError('UpdateItem', 'k');
    const { deps, recorded } = withLedger([down(), down(), down(), down(), down()]);
    await settle(deps, 'r', reservation, used, 'complete');
    expect(recorded).toEqual([entry]);
  });
});

describe('settle', () => {
  it('counts what was settled: tokens, dollars, and the input pre-count against what was settled for it', async () => {
    const { deps, logs, metrics } = depsWith(async () => 'settled');
    await settle(deps, 'req-1', reservation, { tokens: 700, outputTokens: 300, microUsd: 200 }, 'complete');
    expect(metrics).toHaveLength(1);
    expect(metrics[0]!.metrics).toEqual({
      TokensSettled: { value: 700, unit: 'Count' },
      MicroUsdSettled: { value: 200, unit: 'None' },
      ReservationError: { value: 300, unit: 'Count' },
      InputReserved: { value: 400, unit: 'Count' },
      InputSettled: { value: 400, unit: 'Count' },
    });
    expect(metrics[0]!.properties).toEqual({ user: 'ann', requestId: 'req-1', why: 'complete' });
    expect(logs).toEqual([
      expect.objectContaining({ outcome: 'settled', result: 'settled', attempts: 1, usedTokens: 700 }),
    ]);
  });

  it('retries a store failure with doubling waits, warns on each but the last, then gives up loudly, reservation standing', async () => {
    const { deps, logs, metrics, calls } = depsWith(async () => {
      throw new StoreUnavailableError('TransactWriteItems', 'k');
    });
    vi.useFakeTimers({ now: 0 });
    try {
      let returnedAt = -1;
      const done = settle(deps, 'req-2', reservation, { tokens: 1, microUsd: 1 }, 'complete').then(() => {
        returnedAt = Date.now();
      });
      await vi.runAllTimersAsync();
      await done;
      // Waits of 20, 40, 80 and 160 ms between the five attempts, none after the last.
      expect(calls).toEqual([0, 20, 60, 140, 300]);
      expect(returnedAt).toBe(300);
    } finally {
      vi.useRealTimers();
    }
    expect(logs.map((l) => [l.outcome, l.level])).toEqual([
      ['settle_retry', 'warn'],
      ['settle_retry', 'warn'],
      ['settle_retry', 'warn'],
      ['settle_retry', 'warn'],
      ['settle_retry', 'error'],
      ['settle_failed', 'error'],
    ]);
    expect(logs[0]).toMatchObject({ requestId: 'req-2', attempt: 1, error: 'StoreUnavailableError' });
    expect(logs.at(-1)).toEqual({
      requestId: 'req-2',
      level: 'error',
      outcome: 'settle_failed',
      message: 'settlement gave up: the reservation stands (conservative)',
    });
    expect(metrics.map((m) => m.metrics)).toEqual([
      ...Array.from({ length: 5 }, () => ({ SettleRetries: { value: 1, unit: 'Count' } })),
      { SettleFailures: { value: 1, unit: 'Count' } },
    ]);
    expect(metrics.every((m) => m.dimensions.Function === 'proxy')).toBe(true);
  });

  it('does not retry what is not the store failing: a bug surfaces at once', async () => {
    const { deps, calls } = depsWith(async () => {
      throw new TypeError('bug');
    });
    await expect(settle(deps, 'req-3', reservation, { tokens: 1, microUsd: 1 }, 'complete')).rejects.toThrow('bug');
    expect(calls).toHaveLength(1);
  });
});

describe('usedAmounts', () => {
  const who = { requestId: 'r', route: '/v1/chat/completions', tenant: 'acme', user: 'ann' };
  const rates: Rates = { input: 1, cachedInput: 0.5, audioInput: 4, output: 2, audioOutput: 8 };
  const bounds = { input: 100, output: 50, outputMax: 4_000, outputless: false, audio: NO_AUDIO };

  it('flags usage it did not believe, usage that never came, and an upstream that ignored the cap, each logged and counted', () => {
    const run = (reported: unknown, provesOutput: boolean) => {
      const { deps, logs, metrics } = depsWith(async () => 'settled');
      const used = usedAmounts(deps, who, reported as never, { output: 10, provesOutput }, bounds, rates);
      return { used, logs, metrics: metrics.map((m) => Object.keys(m.metrics)[0]) };
    };
    const believed = run({ prompt_tokens: 80, completion_tokens: 30 }, false);
    expect(believed).toEqual({
      used: { tokens: 110, outputTokens: 30, microUsd: 140, cachedTokens: 0, reasoningTokens: 0 },
      logs: [],
      metrics: [],
    });
    const rejected = run({ prompt_tokens: -1, completion_tokens: 30 }, false);
    expect(rejected.logs).toEqual([
      {
        ...who,
        level: 'warn',
        outcome: 'usage_rejected',
        fields: ['prompt_tokens'],
        message: 'the upstream reported usage that cannot be right: settled at the bound',
      },
    ]);
    expect(rejected.metrics).toEqual(['UsageRejected']);
    const unknown = run(undefined, false);
    expect(unknown.logs).toEqual([
      {
        ...who,
        level: 'warn',
        outcome: 'usage_unknown',
        message: 'no usage arrived and the answer does not prove its size: settled at the bound',
      },
    ]);
    expect(unknown.metrics).toEqual(['UsageUnknown']);
    // A whole answer proves its own size: nothing to flag.
    expect(run(undefined, true)).toMatchObject({ logs: [], metrics: [] });
    const ignored = run({ prompt_tokens: 80, completion_tokens: 70 }, false);
    expect(ignored.logs).toEqual([
      {
        ...who,
        level: 'warn',
        outcome: 'upstream_ignored_cap',
        reportedOutput: 70,
        cap: 50,
        message: 'the upstream produced more than the output cap it was sent: check the model’s outputCapField',
      },
    ]);
    expect(ignored.metrics).toEqual(['UpstreamIgnoredCap']);
  });
});

describe('prices', () => {
  const rates: Rates = { input: 1, cachedInput: 0.5, audioInput: 4, output: 2, audioOutput: 8 };

  it('bound a request at the dearest rate it can use, audio included', () => {
    expect(boundMicroUsd(10, 10, rates, NO_AUDIO)).toBe(10 * 1 + 10 * 2);
    expect(boundMicroUsd(10, 10, rates, { input: true, output: true })).toBe(10 * 4 + 10 * 8);
    const cheapAudio = { ...rates, audioInput: 0.5, audioOutput: 1 };
    expect(boundMicroUsd(10, 10, cheapAudio, { input: true, output: true })).toBe(10 * 1 + 10 * 2);
  });

  it('charge each part at its own rate', () => {
    expect(costMicroUsd({ input: 100, cachedInput: 20, audioInput: 30, output: 10, audioOutput: 4 }, rates)).toBe(
      50 * 1 + 20 * 0.5 + 30 * 4 + 6 * 2 + 4 * 8,
    );
  });

  it('answer errors as JSON a client can parse', () => {
    const a = answer(429, { 'retry-after': '3' }, 'slow down', 'rate_limit_exceeded', 'tenant_tokens_per_day');
    expect(a.headers).toEqual({ 'retry-after': '3', 'content-type': 'application/json' });
    expect(JSON.parse(a.body as string)).toMatchObject({
      error: { message: 'slow down', code: 'tenant_tokens_per_day' },
    });
  });
});
