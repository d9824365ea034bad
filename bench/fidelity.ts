/**
 * AWS fidelity (docs/aws-fidelity.md): the IAM report (every call the functions make, judged
 * against the synthesized policies by an IAM simulator) and the engine under the faults real
 * DynamoDB has and DynamoDB Local lacks (transaction conflicts, throttling, lost answers).
 */
import { localClient } from '../local/dynamodb-local';
import { tokenBucket } from '../lambda/engine/limits';
import { ensureTable, LimitStore } from '../lambda/engine/store';
import { ensureLedgerTable } from '../lambda/engine/ledger';
import { startDynamoFaultProxy } from '../test/support/dynamo-faults';
import { iamScenario, SECRET_VARIANTS } from '../test/support/iam-scenario';
import { report } from './report';
import { size } from './smoke';

const TABLE = 'bench-fidelity';

export async function benchFidelity(endpoint: string): Promise<void> {
  await ensureTable(localClient(endpoint), TABLE);
  await ensureLedgerTable(localClient(endpoint), `${TABLE}-ledger`);

  // IAM: the three ways a secret can be given, each run through every kind of request.
  const keys = new Set<string>();
  let denied = 0;
  let unused = 0;
  for (const [, secret, encrypted] of SECRET_VARIANTS.slice(0, size(SECRET_VARIANTS.length, 1))) {
    const r = await iamScenario(endpoint, TABLE, `${TABLE}-ledger`, secret, encrypted);
    for (const c of r.calls) keys.add(`${c.fn} ${c.action} ${c.resource}`);
    denied += r.denied.length + r.failures.length;
    unused += r.unused.length;
  }
  report(
    'fidelity.iam.calls_checked',
    keys.size,
    `distinct (function, action, resource) calls over ${SECRET_VARIANTS.length} ways of giving the secret`,
  );
  report('fidelity.iam.calls_denied', denied, 'calls the synthesized policies would deny (target 0)');
  report(
    'fidelity.iam.unused_grants',
    unused,
    'granted (action, resource) pairs no call used, CloudWatch Logs aside (target 0)',
  );

  // Faults: 8 concurrent clients x 25 unit admissions on a limit of 100, then 60 settlements, with
  // 20% of writes refused as transaction conflicts, 10% of transactions cancelled for throttling
  // (reason ThrottlingError, as on an on-demand table), 10% of answers lost after the write landed
  // and an item write rate of 150/s.
  const proxy = await startDynamoFaultProxy(endpoint, 7);
  Object.assign(proxy.faults, {
    conflict: 0.2,
    throttleTransactions: 0.1,
    dropAfterWrite: 0.1,
    itemWritesPerSecond: 150,
  });
  const limit = tokenBucket(100, 0.001);
  const key = `bench-${crypto.randomUUID()}`;
  const stores = Array.from(
    { length: 8 },
    () =>
      new LimitStore({ client: localClient(proxy.endpoint, 2), tableName: TABLE, maxAttempts: 8, deadlineMs: 5_000 }),
  );
  const outcomes = await Promise.all(
    stores.flatMap((store) =>
      Array.from({ length: 25 }, () =>
        store.consume(key, limit).then(
          (d) => d.allowed,
          () => false,
        ),
      ),
    ),
  );
  const admitted = outcomes.filter(Boolean).length;
  const ledgerKey = `bench-settle-${crypto.randomUUID()}`;
  const tokens = tokenBucket(1_000_000, 0.001);
  const settleKey = `bench-${crypto.randomUUID()}`;
  const deltas = Array.from({ length: 60 }, (_, i) => 100 + i);
  await Promise.all(
    deltas.map(async (delta, i) => {
      for (let attempt = 0; attempt < 30; attempt++) {
        try {
          return await stores[i % stores.length]!.settleOnce(`${ledgerKey}-${i}`, [
            { key: settleKey, adjustments: [{ name: '', limit: tokens, delta }] },
          ]);
        } catch {
          // seen as an outage by the caller, which retries (the ledger makes that safe)
        }
      }
      return undefined;
    }),
  );
  const injected = { ...proxy.injected };
  proxy.reset();
  const clean = new LimitStore({ client: localClient(endpoint), tableName: TABLE });
  const spent = 100 - (await clean.peek(key, limit)).remaining;
  const settled = 1_000_000 - (await clean.peek(settleKey, tokens)).remaining;
  const expected = deltas.reduce((a, b) => a + b, 0);
  const faults = `${injected.conflicts} conflicts, ${injected.throttles} throttles, ${injected.drops} lost answers injected`;
  report(
    'fidelity.faults.over_admitted',
    Math.max(0, admitted - 100) + Math.max(0, admitted - spent),
    `admissions beyond the limit or beyond what the bucket holds (target 0; ${faults})`,
  );
  report(
    'fidelity.faults.settlements_lost',
    Math.abs(expected - settled),
    `tokens settled more or less than 60 settlements sum to (target 0; ${faults})`,
  );

  // A settlement whose transactions DynamoDB throttles: what it sends per try (the proxy tries 5 times, backing off).
  Object.assign(proxy.faults, { throttleTransactions: 1 });
  const store = stores[0]!;
  const tries = size(20, 3);
  const before = proxy.calls.length;
  for (let i = 0; i < tries; i++)
    await store
      .settleOnce(`bench-throttled-${crypto.randomUUID()}`, [
        { key: settleKey, adjustments: [{ name: '', limit: tokens, delta: 1 }] },
      ])
      .catch(() => undefined);
  const sent = proxy.calls.slice(before).filter((c) => c.action === 'TransactWriteItems').length;
  report(
    'fidelity.faults.transactions_per_throttled_settlement_try',
    sent / tries,
    'TransactWriteItems sent per settlement try cancelled for throttling (bound 1 per try, 5 tries per settlement)',
  );
  await proxy.stop();
}
