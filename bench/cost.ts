/**
 * What one admitted streamed chat request costs in DynamoDB, counted at the wire: the authorizer
 * and the proxy built from their environment as in Lambda, against DynamoDB Local behind a proxy
 * that records every call and the capacity DynamoDB would bill for it. The plan is the issue's
 * four layers: tenant tokens/day + requests/min, user requests/min + tokens/min, endpoint
 * tokens/min, global usd/day. One key, warm caches.
 */
import { putApiKey, putTenant } from '../lambda/runtime/directory';
import { createHandler, depsFromEnvironment } from '../lambda/authorizer/handler';
import { requestsPerMinute, tokens, tokensPerDay, tokensPerMinute, usdPerDay } from '../lambda/engine/plans';
import { tokenBucket } from '../lambda/engine/limits';
import { ensureTable } from '../lambda/engine/store';
import { ensureLedgerTable } from '../lambda/engine/ledger';
import { localClient } from '../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startSsmLocal } from '../local/ssm-local';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { createProxyHandler, proxyDepsFromEnvironment } from '../lambda/proxy/handler';
import { type RecordedCall, startDynamoFaultProxy } from '../test/support/dynamo-faults';
import { authorizerEvent, lambdaContext, proxyEvent } from '../test/support/events';
import { localFunctionEnvironment } from '../test/support/function-environment';
import { report } from './report';
import { size } from './smoke';

const TABLE = 'bench-cost';
const LEDGER = 'bench-cost-ledger';
/** Requests per user before counting: what a container that has served a few requests knows. */
const WARM_UP = 10;
const CHAT = '/v1/chat/completions';
const PLANS = {
  team: {
    tenant: [tokensPerDay(10_000_000), requestsPerMinute(100_000)],
    user: [requestsPerMinute(100_000), tokensPerMinute(10_000_000)],
    endpoints: { [CHAT]: [tokens(tokenBucket(10_000_000, 100_000), { name: 'per_minute' })] },
  },
};
const ENDPOINTS = { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } };
/** On-demand prices in us-east-1 (DynamoDB pricing page): $ per million write and read request units. */
const PRICE_PER_MILLION = { write: 0.625, read: 0.125 };

export interface CostFigures {
  readonly requests: number;
  readonly writeUnits: number;
  readonly readUnits: number;
  readonly byAction: Record<string, number>;
  /** Write units landing on the busiest tenant item, and on the busiest global shard, per admitted request. */
  readonly busiestTenantItem: number;
  readonly busiestGlobalItem: number;
  /** Of the above, the usage ledger's: requests and write units per admitted request, and on its busiest partition. */
  readonly ledger: { readonly requests: number; readonly writeUnits: number; readonly busiestPartition: number };
}

export interface LoadFigures {
  readonly admittedPerSecond: number;
  readonly clientErrors: number;
  readonly seconds: number;
}

/**
 * Per admitted request: DynamoDB requests, write and read units, over `n` requests after warming
 * up, from `users` users of one tenant at once (each its own containers, one request after another). With `load`, instead: `load.concurrency`
 * clients for `load.seconds` through a DynamoDB that takes `load.itemWritesPerSecond` writes per
 * item per second (real DynamoDB: 1,000 WCU), and what got through.
 */
export async function streamedChatCost(
  dynamoEndpoint: string,
  n = 40,
  users = 1,
  leasePercent?: number,
  ledgerFlushSeconds?: number,
): Promise<CostFigures> {
  return (await run(dynamoEndpoint, {
    n,
    users,
    ...(leasePercent === undefined ? {} : { leasePercent }),
    ...(ledgerFlushSeconds === undefined ? {} : { ledgerFlushSeconds }),
  })) as CostFigures;
}

export async function hotTenantUnderItemLimit(
  dynamoEndpoint: string,
  load: { concurrency: number; seconds: number; itemWritesPerSecond: number },
  leasePercent?: number,
): Promise<LoadFigures> {
  return (await run(dynamoEndpoint, {
    n: 0,
    users: load.concurrency,
    load,
    ...(leasePercent === undefined ? {} : { leasePercent }),
  })) as LoadFigures;
}

async function run(
  dynamoEndpoint: string,
  o: {
    n: number;
    users: number;
    /** LEASE_PERCENT of the functions (default: the setting's). */
    leasePercent?: number;
    /** LEDGER_FLUSH_SECONDS of the functions (default: the setting's). */
    ledgerFlushSeconds?: number;
    load?: { concurrency: number; seconds: number; itemWritesPerSecond: number };
  },
): Promise<CostFigures | LoadFigures> {
  const { n, users } = o;
  installLambdaStreamingGlobals();
  await ensureTable(localClient(dynamoEndpoint), TABLE);
  await ensureLedgerTable(localClient(dynamoEndpoint), LEDGER);
  const dynamo = await startDynamoFaultProxy(dynamoEndpoint);
  const ssm = await startSsmLocal();
  const upstream = await startUpstreamStandIn({
    words: ['Hello', ' there', '.'],
    usage: { prompt_tokens: 9, completion_tokens: 3 },
  });
  const saved = { ...process.env };
  try {
    const brake = '/bench-cost/brake';
    ssm.parameters.set(brake, { value: 'off', version: 1, modified: Date.now() });
    ssm.secrets.set('bench-cost-key', 'sk-upstream');
    Object.assign(process.env, {
      ...localFunctionEnvironment({
        tableName: TABLE,
        brakeParameterName: brake,
        config: { plans: PLANS, endpoints: ENDPOINTS, global: { limits: [usdPerDay(10_000)], shards: 8 } },
        dynamoEndpoint: dynamo.endpoint,
        ssmEndpoint: ssm.endpoint,
      }),
      BRAKE_CACHE_TTL_SECONDS: '5',
      ...(o.leasePercent === undefined ? {} : { LEASE_PERCENT: String(o.leasePercent) }),
      ...(o.ledgerFlushSeconds === undefined ? {} : { LEDGER_FLUSH_SECONDS: String(o.ledgerFlushSeconds) }),
      LEDGER_TABLE_NAME: LEDGER,
      UPSTREAM_BASE_URL: upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: 'bench-cost-key',
    });
    // One Lambda container pair (authorizer, proxy) per user: a container serves one request at a
    // time, so concurrent users are served by as many containers, each with its own caches and leases.
    const containers = Array.from({ length: users }, () => ({
      authorizer: createHandler(depsFromEnvironment()),
      proxy: createProxyHandler(proxyDepsFromEnvironment()),
    }));
    const client = localClient(dynamoEndpoint);
    const tenant = `tenant-${crypto.randomUUID()}`;
    await putTenant(client, TABLE, { id: tenant, plan: 'team' });
    const keys: string[] = [];
    for (let u = 0; u < users; u++) {
      keys.push(`sk-bench-${crypto.randomUUID()}`);
      await putApiKey(client, TABLE, keys[u]!, { tenant, user: `user-${u}`, status: 'active' });
    }
    /** One request of user `u` through its containers: its status as the client sees it. */
    const one = async (u: number): Promise<number> => {
      const apiKey = keys[u]!;
      const { authorizer, proxy } = containers[u]!;
      let decision: Awaited<ReturnType<typeof authorizer>>;
      try {
        decision = await authorizer(
          authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } }),
          lambdaContext(),
        );
      } catch {
        return 503; // API Gateway's answer to an authorizer that failed
      }
      if (decision.policyDocument.Statement[0]?.Effect !== 'Allow') return 429;
      const res = await invokeStreaming(
        proxy,
        proxyEvent({
          route: CHAT,
          body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 50 },
          authorizer: decision.context as Record<string, string>,
        }),
        lambdaContext('proxy'),
      );
      return res.statusCode;
    };
    // Warm, one container at a time: caches filled and leases sized to each container's pace.
    for (let u = 0; u < users; u++)
      for (let i = 0; i < WARM_UP; i++) {
        const status = await one(u);
        if (status !== 200) throw new Error(`a bench warm-up request was answered ${status}`);
      }
    dynamo.calls.length = 0;
    if (o.load) {
      Object.assign(dynamo.faults, { itemWritesPerSecond: o.load.itemWritesPerSecond });
      const until = Date.now() + o.load.seconds * 1000;
      let admitted = 0;
      let clientErrors = 0;
      await Promise.all(
        keys.map(async (_, u) => {
          while (Date.now() < until) {
            const status = await one(u);
            if (status === 200) admitted++;
            else if (status >= 500) clientErrors++;
          }
        }),
      );
      return { admittedPerSecond: admitted / o.load.seconds, clientErrors, seconds: o.load.seconds };
    }
    // Every user at once, each one request after another: n requests in all. On this 2-core machine
    // twenty at once can pass the functions' 1 s DynamoDB deadline now and then: figures are per
    // admitted request, and a run that admits less than 95% is refused.
    let admitted = 0;
    await Promise.all(
      keys.map(async (_, u) => {
        for (let i = u; i < n; i += users) if ((await one(u)) === 200) admitted++;
      }),
    );
    if (admitted < 0.95 * n) throw new Error(`only ${admitted} of ${n} bench requests were admitted`);
    const calls: RecordedCall[] = dynamo.calls.filter((c) => c.action !== 'DescribeTable');
    const byAction: Record<string, number> = {};
    for (const c of calls) byAction[c.action] = (byAction[c.action] ?? 0) + 1;
    for (const action of Object.keys(byAction)) byAction[action]! /= admitted;
    // Write units per item: a transaction's units fall evenly on its items.
    const perItem = new Map<string, number>();
    for (const c of calls) for (const k of c.keys) perItem.set(k, (perItem.get(k) ?? 0) + c.writeUnits / c.keys.length);
    const busiest = (prefix: string) =>
      Math.max(0, ...[...perItem].filter(([k]) => k.includes(`"S":"${prefix}`)).map(([, units]) => units / admitted));
    const ledgerCalls = calls.filter((c) => c.table === LEDGER);
    const perPartition = new Map<string, number>();
    for (const c of ledgerCalls) {
      const pk = String((JSON.parse(c.keys[0] ?? '{}') as { pk?: { S?: string } }).pk?.S);
      perPartition.set(pk, (perPartition.get(pk) ?? 0) + c.writeUnits);
    }
    return {
      ledger: {
        requests: ledgerCalls.length / admitted,
        writeUnits: ledgerCalls.reduce((a, c) => a + c.writeUnits, 0) / admitted,
        busiestPartition: Math.max(0, ...perPartition.values()) / admitted,
      },
      requests: calls.length / admitted,
      writeUnits: calls.reduce((a, c) => a + c.writeUnits, 0) / admitted,
      readUnits: calls.reduce((a, c) => a + c.readUnits, 0) / admitted,
      byAction,
      busiestTenantItem: busiest('b#t:'),
      busiestGlobalItem: busiest('b#g:'),
    };
  } finally {
    process.env = saved;
    await upstream.stop();
    await ssm.stop();
    await dynamo.stop();
  }
}

/**
 * Every figure with the functions' defaults (leases on), against the same run without leases
 * (LEASE_PERCENT=0, the design before them) as the baseline, in the same process.
 */
export async function benchCost(dynamoEndpoint: string): Promise<void> {
  const f = await streamedChatCost(dynamoEndpoint, size(200, 10));
  const f0 = await streamedChatCost(dynamoEndpoint, size(200, 10), 1, 0);
  const hot = await streamedChatCost(dynamoEndpoint, size(2_000, 40), size(20, 4));
  const hot0 = await streamedChatCost(dynamoEndpoint, size(2_000, 40), size(20, 4), 0);
  report(
    'scale.hot_tenant.wcu_per_request_on_busiest_item',
    hot.busiestTenantItem,
    "write units on the busiest item (the tenant's) per admitted request, 20 users of one tenant at once, each on " +
      'its own containers; target <= 0.2 (5,000 requests/s at 1,000 WCU/s per item); baseline: no leases',
    hot0.busiestTenantItem,
  );
  report(
    'scale.global.wcu_per_request_on_busiest_item',
    hot.busiestGlobalItem,
    'write units on the busiest global shard per admitted request (8 shards), same run; target <= 0.05; baseline: no leases',
    hot0.busiestGlobalItem,
  );
  // Scaled down: 20 writes per item per second instead of 1,000 WCU, and 16 clients offering far more.
  const limit = { concurrency: size(16, 4), seconds: size(5, 1), itemWritesPerSecond: 20 };
  const load = await hotTenantUnderItemLimit(dynamoEndpoint, limit);
  const load0 = await hotTenantUnderItemLimit(dynamoEndpoint, limit, 0);
  report(
    'scale.hot_tenant.admitted_ratio_under_item_limit',
    load.admittedPerSecond / 20,
    `admitted requests/s for one tenant divided by the per-item write budget (20/s), 16 clients on their own ` +
      `containers for ${load.seconds} s; target >= 5; baseline: no leases`,
    load0.admittedPerSecond / 20,
  );
  report(
    'scale.hot_tenant.client_errors_under_item_limit',
    load.clientErrors,
    'requests answered 5xx in that run (throttling answers 429; what is left is contention past maxAttempts); target 0; baseline: no leases',
    load0.clientErrors,
  );
  const detail = Object.entries(f.byAction)
    .map(([a, k]) => `${a} ${k.toFixed(3)}`)
    .join(', ');
  report(
    'cost.streamed_chat.dynamodb_requests',
    f.requests,
    `DynamoDB requests per admitted streamed chat request, 4-layer plan, one key, warm (${detail}); target <= 6; baseline: no leases`,
    f0.requests,
  );
  report(
    'cost.streamed_chat.write_units',
    f.writeUnits,
    'write units per admitted request as DynamoDB bills them (transactions 2 per item); target <= 6; baseline: no leases',
    f0.writeUnits,
  );
  report(
    'cost.streamed_chat.read_units',
    f.readUnits,
    'read units per admitted request; target <= 0.5; baseline: no leases',
    f0.readUnits,
  );
  const dollars = (c: CostFigures) => c.writeUnits * PRICE_PER_MILLION.write + c.readUnits * PRICE_PER_MILLION.read;
  report(
    'cost.streamed_chat.usd_per_million_requests',
    dollars(f),
    `on-demand DynamoDB cost per million admitted requests ($${PRICE_PER_MILLION.write}/M writes, ` +
      `$${PRICE_PER_MILLION.read}/M reads); baseline: no leases`,
    dollars(f0),
  );
}
