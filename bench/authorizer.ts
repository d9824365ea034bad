/**
 * The authorizer's decision for a 4-layer plan (tenant, user, endpoint, global) on DynamoDB Local,
 * parallel writes with refunds vs one TransactWriteItems, and the same four layers checked one
 * after another with rate-limiter-flexible as the baseline.
 */
import { randomUUID } from 'node:crypto';
import { DynamoDB } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { RateLimiterDynamo, RateLimiterRes } from 'rate-limiter-flexible';
import { Brake } from '../lambda/runtime/brake';
import { Directory, putApiKey, putTenant } from '../lambda/runtime/directory';
import { createHandler } from '../lambda/authorizer/handler';
import { Limiter, type Strategy } from '../lambda/engine/limiter';
import { slidingWindow } from '../lambda/engine/limits';
import { parseConfig, requests, requestsPerMinute, tokensPerDay } from '../lambda/engine/plans';
import { MAX_RATE_PER_SECOND } from '../lambda/engine/constants';
import { ensureTable, LimitStore } from '../lambda/engine/store';
import { authorizerEvent, lambdaContext } from '../test/support/events';
import { startSsmLocal } from '../local/ssm-local';
import { load, report } from './report';
import { size } from './smoke';

const CHAT = '/v1/chat/completions';
const CONCURRENCY = 16;
const DECISIONS = size(2_000, 100);
/** Decisions one at a time: for round-trips, and for latency. */
const TRACED = size(200, 20);
const ALONE = size(300, 20);

/** Every DynamoDB request with its start and end, to count round-trips on the critical path. */
function traced(client: DynamoDB) {
  const log: { op: string; start: number; end: number; items: number }[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const start = performance.now();
      try {
        return await next(args);
      } finally {
        const input = args.input as { TransactItems?: unknown[] };
        log.push({
          op: String(context.commandName),
          start,
          end: performance.now(),
          items: input.TransactItems?.length ?? 1,
        });
      }
    },
    { step: 'initialize', name: 'trace' },
  );
  return log;
}

/** Sequential phases among requests: a phase starts when a request begins after all before it ended. */
function roundTrips(calls: readonly { start: number; end: number }[]): number {
  let trips = 0;
  let phaseEnd = Number.NEGATIVE_INFINITY;
  for (const c of [...calls].sort((a, b) => a.start - b.start)) {
    if (c.start >= phaseEnd) {
      trips++;
      phaseEnd = c.end;
    } else phaseEnd = Math.max(phaseEnd, c.end);
  }
  return trips;
}

/** Write units: 1 per (small) UpdateItem, failed conditions included; 2 per item in a transaction. */
const writeUnits = (calls: readonly { op: string; items: number }[]) =>
  calls.reduce(
    (n, c) => n + (c.op === 'UpdateItemCommand' ? 1 : c.op === 'TransactWriteItemsCommand' ? 2 * c.items : 0),
    0,
  );

export async function benchAuthorizer(endpoint: string): Promise<void> {
  const client = new DynamoDB({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const calls = traced(client);
  const tableName = 'bench-authorizer';
  await ensureTable(client, tableName);
  const ssm = await startSsmLocal();
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: {
          team: {
            // The largest token limit the engine allows (its refill at MAX_RATE_PER_SECOND; 1e12 a day
            // is refused): a token layer that never binds, so the decision is measured, not denials.
            tenant: [requestsPerMinute(1_000_000), tokensPerDay(MAX_RATE_PER_SECOND * 86_400)],
            user: [requestsPerMinute(1_000_000)],
            endpoints: { [CHAT]: [requestsPerMinute(1_000_000)] },
          },
        },
        endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
        global: { limits: [requestsPerMinute(10_000_000)], shards: 8 },
      }),
    ),
  );
  const run = randomUUID().slice(0, 8);
  const keys: string[] = [];
  for (let t = 0; t < 8; t++) {
    await putTenant(client, tableName, { id: `bench-${run}-${t}`, plan: 'team' });
    for (let u = 0; u < 8; u++) {
      const key = `sk-bench-${run}-${t}-${u}-xxxxxxxx`;
      await putApiKey(client, tableName, key, { tenant: `bench-${run}-${t}`, user: `u${u}`, status: 'active' });
      keys.push(key);
    }
  }
  const brakeName = `/bench/${run}/brake`;
  ssm.parameters.set(brakeName, { value: 'off', version: 1, modified: Date.now() });
  const handlerFor = (strategy: Strategy) => {
    const log = (e: Record<string, unknown>) => {
      if (e.level === 'error') console.error(JSON.stringify(e));
    };
    const store = new LimitStore({ client, tableName });
    return createHandler({
      config,
      limiter: new Limiter({ store, config, strategy, log, namespace: `${strategy}-` }),
      directory: new Directory({ client, tableName, cacheMs: 60_000 }),
      brake: new Brake({
        client: new SSMClient({
          endpoint: ssm.endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
        }),
        parameterName: brakeName,
        log,
      }),
      log,
    });
  };
  const decideWith = (handler: ReturnType<typeof handlerFor>) => async (i: number) => {
    const result = await handler(
      authorizerEvent({ headers: { Authorization: `Bearer ${keys[i % keys.length]}` } }),
      lambdaContext(),
    );
    return result.policyDocument.Statement[0]!.Effect === 'Allow';
  };

  const results: Record<string, { perSecond: number; trips: number; units: number; reads: number; p50Ms: number }> = {};
  for (const strategy of ['parallel', 'transaction'] as Strategy[]) {
    const decide = decideWith(handlerFor(strategy));
    await load(size(keys.length * 4, keys.length), CONCURRENCY, decide); // warm key, tenant and brake caches, and the JVM
    // Round-trips: one decision at a time, so each one's requests are its own.
    let trips = 0;
    let units = 0;
    let reads = 0;
    for (let i = 0; i < TRACED; i++) {
      calls.length = 0;
      await decide(i);
      trips += roundTrips(calls);
      units += writeUnits(calls);
      reads += calls.filter((c) => c.op === 'GetItemCommand').length;
    }
    calls.length = 0;
    const alone = await load(ALONE, 1, decide);
    const throughput = await load(DECISIONS, CONCURRENCY, decide);
    results[strategy] = {
      perSecond: throughput.perSecond,
      trips: trips / TRACED,
      units: units / TRACED,
      reads: reads / TRACED,
      p50Ms: alone.p50Ms,
    };
  }

  // Admissions under contention: one tenant capped at 100 per day, 400 requests from 8 users at once.
  const contention: Record<string, number> = {};
  const contentionUnits: Record<string, number> = {};
  const offered = size(400, 40);
  for (const strategy of ['parallel', 'transaction'] as Strategy[]) {
    const capped = parseConfig({
      ...JSON.parse(JSON.stringify(config)),
      plans: { team: { tenant: [requests(slidingWindow(100, '1 d', 24))] } },
    });
    const store = new LimitStore({ client, tableName });
    const limiter = new Limiter({
      store,
      config: capped,
      strategy,
      log: () => {},
      namespace: `${run}-${strategy}-contention-`,
      random: Math.random,
    });
    const tenant = { id: `bench-${run}-hot`, plan: 'team' };
    const before = calls.length;
    const outcome = await load(
      offered,
      CONCURRENCY,
      async (i) => (await limiter.admit({ tenant: tenant.id, user: `u${i % 8}` }, tenant, CHAT)).allowed,
    );
    contention[strategy] = outcome.admitted;
    contentionUnits[strategy] = writeUnits(calls.slice(before)) / offered;
  }

  // Baseline: rate-limiter-flexible, the same four layers checked one after another.
  const limiters: RateLimiterDynamo[] = [];
  for (const layer of ['tenant', 'user', 'endpoint', 'global']) {
    // One table per layer: the library creates its table and sets its TTL on construction.
    limiters.push(
      await new Promise<RateLimiterDynamo>((resolve, reject) => {
        const l: RateLimiterDynamo = new RateLimiterDynamo(
          { storeClient: client, tableName: `bench-baseline-${layer}`, points: 1_000_000, duration: 60 },
          (err?: Error) => (err ? reject(err) : resolve(l)),
        );
      }),
    );
  }
  const baselineDecide = async (i: number) => {
    const tenant = `t${i % 8}`;
    const keysFor = [tenant, `${tenant}:u${i % 64}`, `${tenant}:${CHAT}`, 'global'];
    try {
      for (let l = 0; l < 4; l++) await limiters[l]!.consume(keysFor[l]!, 1);
      return true;
    } catch (err) {
      if (err instanceof RateLimiterRes) return false;
      throw err;
    }
  };
  await load(size(500, 50), CONCURRENCY, baselineDecide);
  calls.length = 0;
  let baselineTrips = 0;
  const baselineTraced = size(100, 10);
  for (let i = 0; i < baselineTraced; i++) {
    calls.length = 0;
    await baselineDecide(i);
    baselineTrips += roundTrips(calls);
  }
  const baselineAlone = await load(ALONE, 1, baselineDecide);
  const baseline = await load(DECISIONS, CONCURRENCY, baselineDecide);

  const p = results.parallel!;
  const t = results.transaction!;
  report('authorizer.decision.round_trips', p.trips, 'round-trips', baselineTrips / baselineTraced);
  report('authorizer.decision.write_units', p.units, 'WCU', t.units);
  report('authorizer.decision.reads', p.reads, 'reads');
  report('authorizer.decisions_per_s', p.perSecond, 'decisions/s', baseline.perSecond);
  report('authorizer.decision.p50_ms', p.p50Ms, 'ms (one at a time)', baselineAlone.p50Ms);
  report('authorizer.transaction.round_trips', t.trips, 'round-trips');
  report('authorizer.transaction.write_units', t.units, 'WCU');
  report('authorizer.transaction.decisions_per_s', t.perSecond, 'decisions/s', p.perSecond);
  report('authorizer.transaction.p50_ms', t.p50Ms, 'ms (one at a time)', p.p50Ms);
  report('authorizer.contention.parallel.admitted', contention.parallel!, 'of 100 allowed, 400 offered');
  report('authorizer.contention.transaction.admitted', contention.transaction!, 'of 100 allowed, 400 offered');
  report(
    'authorizer.contention.write_units_per_decision',
    contentionUnits.parallel!,
    'WCU (parallel, refunds included)',
    contentionUnits.transaction!,
  );
  await ssm.stop();
  client.destroy();
}

/**
 * What logging and metrics add to one decision: the same warm authorizer decision, one at a time,
 * with the log line and the EMF line written (to /dev/null) against both switched off.
 */
export async function benchObservability(endpoint: string): Promise<void> {
  const { createWriteStream } = await import('node:fs');
  const { setMetricSink } = await import('../lambda/runtime/metrics');
  const client = new DynamoDB({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  const tableName = 'bench-observability';
  await ensureTable(client, tableName);
  const ssm = await startSsmLocal();
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: { team: { tenant: [requestsPerMinute(1e9)], user: [requestsPerMinute(1e9)] } },
        endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
      }),
    ),
  );
  await putTenant(client, tableName, { id: 'obs', plan: 'team' });
  await putApiKey(client, tableName, 'sk-bench-observability-0000', { tenant: 'obs', user: 'u', status: 'active' });
  const devnull = createWriteStream('/dev/null');
  const run = async (withOutput: boolean) => {
    const write = withOutput ? (line: string) => devnull.write(`${line}\n`) : () => {};
    setMetricSink(write);
    const log = (entry: Record<string, unknown>) => write(JSON.stringify(entry));
    const store = new LimitStore({ client, tableName });
    const handler = createHandler({
      config,
      limiter: new Limiter({ store, config, log }),
      directory: new Directory({ client, tableName, cacheMs: 60_000 }),
      brake: new Brake({
        client: new SSMClient({
          endpoint: ssm.endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
        }),
        parameterName: '/obs/brake',
        log,
      }),
      log,
    });
    const decide = async () =>
      (
        await handler(
          authorizerEvent({ headers: { Authorization: 'Bearer sk-bench-observability-0000' } }),
          lambdaContext(),
        )
      ).policyDocument.Statement[0]!.Effect === 'Allow';
    await load(ALONE, 1, decide);
    return (await load(size(1_000, 50), 1, decide)).p50Ms;
  };
  const off = await run(false);
  const on = await run(true);
  const offAgain = await run(false);
  report(
    'observability.decision_p50_ms',
    on,
    'ms (log line + EMF line per decision; baseline: both off)',
    (off + offAgain) / 2,
  );
  await ssm.stop();
  client.destroy();
}
