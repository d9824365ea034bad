/**
 * DynamoDB as it behaves on AWS, not as DynamoDB Local does (docs/aws-fidelity.md): writes refused
 * because another transaction holds the item, throttling past an item's write rate, answers lost
 * after the write landed. Injected by a proxy that speaks DynamoDB's wire protocol, so the real
 * SDK and the real engine meet them. Nothing may be over-admitted, and every settlement must land
 * exactly once.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import type { MetricEvent } from '../../lambda/runtime/metrics';
import { createHandler, depsFromEnvironment } from '../../lambda/authorizer/handler';
import { layerKey } from '../../lambda/engine/limiter';
import { bucketName, requestsPerMinute, tokens } from '../../lambda/engine/plans';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';
import { createProxyHandler, proxyDepsFromEnvironment } from '../../lambda/proxy/handler';
import { authorizerEvent, lambdaContext, proxyEvent } from '../support/events';
import { localFunctionEnvironment } from '../support/function-environment';
import { type Limit, leakyBucket, slidingWindow, tokenBucket } from '../../lambda/engine/limits';
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { ItemThrottledError } from '../../lambda/engine/errors';
import { type DynamoFaultProxy, startDynamoFaultProxy } from '../support/dynamo-faults';

const run = promisify(execFile);
const worker = fileURLToPath(new URL('../support/consume-worker.ts', import.meta.url));

let proxy: DynamoFaultProxy;
beforeAll(async () => {
  proxy = await startDynamoFaultProxy(dynamoEndpoint(), 20261128);
});
afterAll(() => proxy.stop());
beforeEach(() => proxy.reset());

/**
 * `workers` processes x `each` concurrent unit decisions on one key, through the proxy, all told to
 * fire at one moment (tsx takes a second or more to start each). They must really overlap: every
 * process still busy when the last one began, and calls of at least two processes in flight at
 * the proxy at one moment (each process names itself in its user-agent).
 */
async function storm(key: string, limit: Limit, workers = 4, each = 40) {
  const startAt = Date.now() + 4_000;
  const results = await Promise.all(
    Array.from({ length: workers }, async () => {
      const { stdout } = await run(process.execPath, [
        '--import',
        'tsx',
        worker,
        proxy.endpoint,
        tableName(),
        key,
        JSON.stringify(limit),
        JSON.stringify(Array.from({ length: each }, () => 1)),
        String(startAt),
      ]);
      return JSON.parse(stdout) as {
        admitted: number;
        failed: number;
        conflicts: number;
        busyFrom: number;
        busyUntil: number;
      };
    }),
  );
  const lastStart = Math.max(...results.map((r) => r.busyFrom));
  for (const r of results) expect(r.busyUntil).toBeGreaterThanOrEqual(lastStart);
  expect(proxy.inFlight.sources).toBeGreaterThanOrEqual(2);
  return {
    admitted: results.reduce((a, r) => a + r.admitted, 0),
    failed: results.reduce((a, r) => a + r.failed, 0),
    conflicts: results.reduce((a, r) => a + r.conflicts, 0),
  };
}

const shapes: [string, (n: number) => Limit][] = [
  ['token bucket', (n) => tokenBucket(n, n / 86_400)],
  ['leaky bucket', (n) => leakyBucket(n, n / 86_400)],
  ['sliding window', (n) => slidingWindow(n, '1 d')],
];

describe('a throttled transaction (TransactionCanceledException, reason ThrottlingError, as on an on-demand table)', () => {
  const slow = tokenBucket(1_000, 1);
  const throughProxy = () => new LimitStore({ client: localClient(proxy.endpoint), tableName: tableName() });

  it('is throughput, not contention: a decision fails once as ItemThrottledError, admitting and spending nothing', async () => {
    proxy.faults.throttleTransactions = 1;
    const store = throughProxy();
    const keys = [uniqueKey(), uniqueKey()];
    const before = proxy.calls.length;
    const results = await store.decideTogether(
      keys.map((key) => ({ key, checks: [{ name: '', limit: slow, cost: 10 }], required: true })),
      { atomic: true },
    );
    for (const r of results) expect(r).toBeInstanceOf(ItemThrottledError);
    // One transaction, not seven sent as if its conditions had failed.
    expect(proxy.calls.slice(before).filter((c) => c.action === 'TransactWriteItems')).toHaveLength(1);
    proxy.faults.throttleTransactions = 0;
    for (const key of keys) expect((await testStore().peek(key, slow)).remaining).toBe(1_000);
  });

  it('at settlement: one transaction per try, the error says throughput, and a later try settles exactly once', async () => {
    const direct = testStore();
    const key = uniqueKey();
    await direct.consume(key, slow, 100);
    proxy.faults.throttleTransactions = 1;
    const store = throughProxy();
    const ledger = uniqueKey('ledger');
    const items = [{ key, adjustments: [{ name: '', limit: slow, delta: 50 }] }];
    const before = proxy.calls.length;
    await expect(store.settleOnce(ledger, items)).rejects.toBeInstanceOf(ItemThrottledError);
    expect(proxy.calls.slice(before).filter((c) => c.action === 'TransactWriteItems')).toHaveLength(1);
    proxy.faults.throttleTransactions = 0;
    expect(await store.settleOnce(ledger, items)).toBe('settled');
    expect(await store.settleOnce(ledger, items)).toBe('already-settled');
    expect((await direct.peek(key, slow)).remaining).toBe(850);
  });
});

describe.each(shapes)('%s', (_name, make) => {
  it('treats TransactionConflictException as contention: retried, counted, never an outage, exactly the limit', async () => {
    proxy.faults.conflict = 0.3;
    const key = uniqueKey();
    const { admitted, failed, conflicts } = await storm(key, make(50));
    expect(proxy.injected.conflicts).toBeGreaterThan(10);
    expect(conflicts).toBe(proxy.injected.conflicts);
    expect(failed).toBe(0);
    expect(admitted).toBe(50);
    proxy.faults.conflict = 0;
    expect((await testStore().peek(key, make(50))).remaining).toBe(0);
  });

  it('never over-admits when answers are lost after the write and items are throttled', async () => {
    proxy.faults.dropAfterWrite = 0.1;
    proxy.faults.itemWritesPerSecond = 100;
    proxy.faults.conflict = 0.1;
    const key = uniqueKey();
    const { admitted } = await storm(key, make(50));
    expect(proxy.injected.drops + proxy.injected.throttles).toBeGreaterThan(0);
    expect(admitted).toBeLessThanOrEqual(50);
    proxy.reset();
    // What the bucket holds is at least what was admitted: a lost answer may spend without admitting, never the reverse.
    expect(50 - (await testStore().peek(key, make(50))).remaining).toBeGreaterThanOrEqual(admitted);
  });
});

describe('settlement', () => {
  // AWS: BatchGetItem may return only part of its items and the rest as UnprocessedKeys, which
  // the caller asks again (DynamoDB API Reference, BatchGetItem). Local never does: injected here.
  it('reads the items a settlement has never seen in one BatchGetItem, and asks again for keys left unprocessed', async () => {
    proxy.faults.unprocessedReads = 1;
    const slow = tokenBucket(1_000, 1); // nothing worth a unit refills during the test
    const clock = { now: Date.now() };
    const keys = [uniqueKey(), uniqueKey(), uniqueKey()];
    const direct = testStore({ clock: () => clock.now });
    for (const key of keys) await direct.consume(key, slow, 100);
    // A container that has never seen the items refunds 60 of each: it reads them first.
    const store = new LimitStore({
      client: localClient(proxy.endpoint),
      tableName: tableName(),
      clock: () => clock.now,
    });
    const items = keys.map((key) => ({ key, adjustments: [{ name: '', limit: slow, delta: -60 }] }));
    const before = proxy.calls.length;
    expect(await store.settleOnce(uniqueKey('ledger'), items)).toBe('settled');
    // Three keys: answered one at a time, two of them left unprocessed once each, then the transaction.
    expect(proxy.injected.unprocessed).toBe(2);
    expect(proxy.calls.slice(before).map((c) => c.action)).toEqual([
      'BatchGetItem',
      'BatchGetItem',
      'BatchGetItem',
      'TransactWriteItems',
    ]);
    expect(store.stats.reads).toBe(3); // each item read once
    for (const key of keys) expect((await direct.peek(key, slow)).remaining).toBe(960);
  });

  it('lands exactly once per request under conflicts and lost answers', async () => {
    proxy.faults.conflict = 0.3;
    proxy.faults.dropAfterWrite = 0.2;
    const limit = tokenBucket(1_000_000, 0.001); // no refill worth a unit during the test
    const key = uniqueKey();
    // Each settlement is retried by its caller until it reports an outcome, as the proxy does.
    const store = new LimitStore({ client: localClient(proxy.endpoint, 2), tableName: tableName(), deadlineMs: 5_000 });
    const settle = async (ledger: string, delta: number) => {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          return await store.settleOnce(ledger, [{ key, adjustments: [{ name: '', limit, delta }] }]);
        } catch {
          // an outage seen by the caller: try again (the ledger makes that safe)
        }
      }
      throw new Error(`settlement ${ledger} never reported`);
    };
    const ledgers = Array.from({ length: 40 }, (_, i) => [uniqueKey('ledger'), 100 + i] as const);
    await Promise.all(ledgers.map(([ledger, delta]) => settle(ledger, delta)));
    // Settle every one again: the ledger refuses all of them.
    expect(new Set(await Promise.all(ledgers.map(([ledger, delta]) => settle(ledger, delta))))).toEqual(
      new Set(['already-settled']),
    );
    expect(proxy.injected.conflicts).toBeGreaterThan(0);
    expect(proxy.injected.drops).toBeGreaterThan(0);
    proxy.reset();
    const total = ledgers.reduce((a, [, d]) => a + d, 0);
    expect(1_000_000 - (await testStore().peek(key, limit)).remaining).toBe(total);
  });
});

// The request path as Lambda runs it (functions built from the environment, real clients), with
// DynamoDB behind the fault proxy: authorizer, reservation, streamed answer, settlement.
describe('the request path', () => {
  installLambdaStreamingGlobals();
  const CHAT = '/v1/chat/completions';
  // Refills a thousandth of a token a second: the spent figure below is exact however long the test takes.
  const TOKENS = tokens(tokenBucket(100_000, 0.001), { name: 'budget' });
  const config = {
    plans: {
      team: { tenant: [requestsPerMinute(1_000), TOKENS], user: [requestsPerMinute(1_000)], outputReservation: 50 },
    },
    endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
  };
  const USAGE = { prompt_tokens: 5, completion_tokens: 3 };
  let ssm: SsmLocal;
  let upstream: UpstreamStandIn;
  const saved = { ...process.env };
  beforeAll(async () => {
    ssm = await startSsmLocal();
    ssm.secrets.set('fidelity/key', 'sk-upstream');
    upstream = await startUpstreamStandIn({ usage: USAGE });
    Object.assign(process.env, {
      ...localFunctionEnvironment({
        tableName: tableName(),
        brakeParameterName: `/test/${uniqueKey('brake')}`,
        config,
        dynamoEndpoint: proxy.endpoint,
        ssmEndpoint: ssm.endpoint,
      }),
      UPSTREAM_BASE_URL: upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: 'fidelity/key',
    });
  });
  afterAll(async () => {
    process.env = saved;
    await upstream.stop();
    await ssm.stop();
  });

  it('answers every request and settles each exactly once while a quarter of the writes meet another transaction', async () => {
    const client = localClient(dynamoEndpoint());
    const tenant = uniqueKey('tenant');
    const apiKey = `sk-${uniqueKey('key')}`;
    await putTenant(client, tableName(), { id: tenant, plan: 'team' });
    await putApiKey(client, tableName(), apiKey, { tenant, user: 'alice', status: 'active' });
    const authorizer = createHandler(depsFromEnvironment());
    const proxyDeps = proxyDepsFromEnvironment();
    const proxyHandler = createProxyHandler(proxyDeps);
    proxy.faults.conflict = 0.25;
    const N = 30;
    // Three at a time: the functions run with their production deadlines (DynamoDB 1 s), which a
    // busy test machine must not be the one to miss.
    const statuses: number[] = [];
    for (let batch = 0; batch < N / 3; batch++) {
      statuses.push(
        ...(await Promise.all(
          Array.from({ length: 3 }, async () => {
            const decision = await authorizer(
              authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } }),
              lambdaContext(),
            );
            expect(decision.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
            const out = await invokeStreaming(
              proxyHandler,
              proxyEvent({
                body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
                authorizer: { tenant, user: 'alice', shard: '0' },
              }),
              lambdaContext('proxy'),
            );
            return out.statusCode;
          }),
        )),
      );
    }
    expect(statuses).toEqual(Array.from({ length: N }, () => 200));
    expect(proxy.injected.conflicts).toBeGreaterThan(5);
    proxy.reset();
    const spent = await testStore().peekItem(layerKey.tenant({ tenant, user: 'alice' }), [
      { name: bucketName(TOKENS), limit: TOKENS.limit, cost: 1 },
    ]);
    // Every reservation was settled to what the upstream billed: no more, no less. The bucket also
    // counts as spent what the proxy's container still holds in a lease (engine/leases.ts).
    const held = proxyDeps.limiter.store.leased(layerKey.tenant({ tenant, user: 'alice' }), bucketName(TOKENS));
    expect(held).toBeLessThanOrEqual(1_000); // at most 1% of the limit
    expect(100_000 - spent.decisions[0]!.remaining - held).toBe(N * (USAGE.prompt_tokens + USAGE.completion_tokens));
  });

  it(
    'answers a tenant whose item DynamoDB throttles with 429 (code tenant_throughput, Retry-After 1), ' +
      'never a 503 or the outage metric',
    async () => {
      const client = localClient(dynamoEndpoint());
      const tenant = uniqueKey('tenant');
      const keys = Array.from({ length: 3 }, () => `sk-${uniqueKey('key')}`);
      await putTenant(client, tableName(), { id: tenant, plan: 'team' });
      for (const [i, key] of keys.entries())
        await putApiKey(client, tableName(), key, { tenant, user: `u${i}`, status: 'active' });
      const metrics: MetricEvent[] = [];
      const authorizer = createHandler({ ...depsFromEnvironment(), metrics: (e) => metrics.push(e) });
      // Two writes a second per item, and three users of one tenant asking at once, four times over (three at a
      // time, as above: the functions run with their production deadlines, which a busy machine must not miss).
      proxy.faults.itemWritesPerSecond = 2;
      const answers: { effect: string; code: unknown; retryAfter: unknown }[] = [];
      for (let round = 0; round < 4; round++) {
        answers.push(
          ...(await Promise.all(
            keys.map(async (key) => {
              const decision = await authorizer(
                authorizerEvent({ headers: { Authorization: `Bearer ${key}` } }),
                lambdaContext(),
              );
              return {
                effect: String(decision.policyDocument.Statement[0]?.Effect),
                code: decision.context?.code,
                retryAfter: decision.context?.retryAfter,
              };
            }),
          )),
        );
      }
      const injected = proxy.injected.throttles;
      proxy.reset();
      expect(injected).toBeGreaterThan(0);
      // Every request was decided (no authorizer failure, which API Gateway would answer 503).
      expect(answers).toHaveLength(12);
      const throttled = answers.filter((a) => a.effect === 'Deny');
      expect(throttled.length).toBeGreaterThan(0);
      for (const a of throttled) expect(a).toMatchObject({ code: 'tenant_throughput', retryAfter: 1 });
      expect(metrics.some((m) => 'LimiterUnavailable' in m.metrics)).toBe(false);
    },
  );
});
