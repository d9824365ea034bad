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
import { localClient } from '../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startSsmLocal } from '../local/ssm-local';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { createProxyHandler, proxyDepsFromEnvironment } from '../lambda/proxy/handler';
import { type RecordedCall, startDynamoFaultProxy } from '../test/support/dynamo-faults';
import { authorizerEvent, lambdaContext, proxyEvent } from '../test/support/events';
import { localFunctionEnvironment } from '../test/support/function-environment';
import { report } from './report';

const TABLE = 'bench-cost';
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
}

export interface LoadFigures {
  readonly admittedPerSecond: number;
  readonly clientErrors: number;
  readonly seconds: number;
}

/**
 * Per admitted request: DynamoDB requests, write and read units, over `n` requests after warming
 * up, from `users` users of one tenant taking turns. With `load`, instead: `load.concurrency`
 * clients for `load.seconds` through a DynamoDB that takes `load.itemWritesPerSecond` writes per
 * item per second (real DynamoDB: 1,000 WCU), and what got through.
 */
export async function streamedChatCost(dynamoEndpoint: string, n = 40, users = 1): Promise<CostFigures> {
  return (await run(dynamoEndpoint, { n, users })) as CostFigures;
}

export async function hotTenantUnderItemLimit(
  dynamoEndpoint: string,
  load: { concurrency: number; seconds: number; itemWritesPerSecond: number },
): Promise<LoadFigures> {
  return (await run(dynamoEndpoint, { n: 0, users: load.concurrency, load })) as LoadFigures;
}

async function run(
  dynamoEndpoint: string,
  o: { n: number; users: number; load?: { concurrency: number; seconds: number; itemWritesPerSecond: number } },
): Promise<CostFigures | LoadFigures> {
  const { n, users } = o;
  installLambdaStreamingGlobals();
  await ensureTable(localClient(dynamoEndpoint), TABLE);
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
      UPSTREAM_BASE_URL: upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: 'bench-cost-key',
    });
    const authorizer = createHandler(depsFromEnvironment());
    const proxy = createProxyHandler(proxyDepsFromEnvironment());
    const client = localClient(dynamoEndpoint);
    const tenant = `tenant-${crypto.randomUUID()}`;
    await putTenant(client, TABLE, { id: tenant, plan: 'team' });
    const keys: string[] = [];
    for (let u = 0; u < users; u++) {
      keys.push(`sk-bench-${crypto.randomUUID()}`);
      await putApiKey(client, TABLE, keys[u]!, { tenant, user: `user-${u}`, status: 'active' });
    }
    /** One request through the authorizer and the proxy: its status as the client sees it. */
    const one = async (apiKey: string): Promise<number> => {
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
    for (const key of keys) if ((await one(key)) !== 200) throw new Error('the bench warm-up request was not admitted');
    dynamo.calls.length = 0;
    if (o.load) {
      Object.assign(dynamo.faults, { itemWritesPerSecond: o.load.itemWritesPerSecond });
      const until = Date.now() + o.load.seconds * 1000;
      let admitted = 0;
      let clientErrors = 0;
      await Promise.all(
        keys.map(async (key) => {
          while (Date.now() < until) {
            const status = await one(key);
            if (status === 200) admitted++;
            else if (status >= 500) clientErrors++;
          }
        }),
      );
      return { admittedPerSecond: admitted / o.load.seconds, clientErrors, seconds: o.load.seconds };
    }
    for (let i = 0; i < n; i++)
      if ((await one(keys[i % users]!)) !== 200) throw new Error('a bench request was not admitted');
    const calls: RecordedCall[] = dynamo.calls.filter((c) => c.action !== 'DescribeTable');
    const byAction: Record<string, number> = {};
    for (const c of calls) byAction[c.action] = (byAction[c.action] ?? 0) + 1;
    for (const action of Object.keys(byAction)) byAction[action]! /= n;
    // Write units per item: a transaction's units fall evenly on its items.
    const perItem = new Map<string, number>();
    for (const c of calls) for (const k of c.keys) perItem.set(k, (perItem.get(k) ?? 0) + c.writeUnits / c.keys.length);
    const busiest = (prefix: string) =>
      Math.max(0, ...[...perItem].filter(([k]) => k.includes(`"S":"${prefix}`)).map(([, units]) => units / n));
    return {
      requests: calls.length / n,
      writeUnits: calls.reduce((a, c) => a + c.writeUnits, 0) / n,
      readUnits: calls.reduce((a, c) => a + c.readUnits, 0) / n,
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

export async function benchCost(dynamoEndpoint: string): Promise<void> {
  const f = await streamedChatCost(dynamoEndpoint);
  const hot = await streamedChatCost(dynamoEndpoint, 40, 20);
  report(
    'scale.hot_tenant.wcu_per_request_on_busiest_item',
    round(hot.busiestTenantItem),
    "write units on the busiest item (the tenant's) per admitted request, 20 users of one tenant; target <= 0.2 (5,000 requests/s at 1,000 WCU/s per item)",
  );
  report(
    'scale.global.wcu_per_request_on_busiest_item',
    round(hot.busiestGlobalItem),
    'write units on the busiest global shard per admitted request (8 shards); target <= 0.05',
  );
  // Scaled down: 20 writes per item per second instead of 1,000 WCU, and 16 clients offering far more.
  const load = await hotTenantUnderItemLimit(dynamoEndpoint, { concurrency: 16, seconds: 5, itemWritesPerSecond: 20 });
  report(
    'scale.hot_tenant.admitted_ratio_under_item_limit',
    round(load.admittedPerSecond / 20),
    `admitted requests/s for one tenant divided by the per-item write budget (20/s), 16 clients for ${load.seconds} s; target >= 5`,
  );
  report(
    'scale.hot_tenant.client_errors_under_item_limit',
    load.clientErrors,
    'requests answered 5xx in that run (throttling answers 429; what is left is contention past maxAttempts); target 0',
  );
  const detail = Object.entries(f.byAction)
    .map(([a, k]) => `${a} ${k.toFixed(2)}`)
    .join(', ');
  report(
    'cost.streamed_chat.dynamodb_requests',
    round(f.requests),
    `DynamoDB requests per admitted streamed chat request, 4-layer plan, warm (${detail}); target <= 6`,
  );
  report(
    'cost.streamed_chat.write_units',
    round(f.writeUnits),
    'write units per admitted request as DynamoDB bills them (transactions 2 per item); target <= 6',
  );
  report('cost.streamed_chat.read_units', round(f.readUnits), 'read units per admitted request; target <= 0.5');
  const dollars = f.writeUnits * PRICE_PER_MILLION.write + f.readUnits * PRICE_PER_MILLION.read;
  report(
    'cost.streamed_chat.usd_per_million_requests',
    round(dollars),
    `on-demand DynamoDB cost per million admitted requests ($${PRICE_PER_MILLION.write}/M writes, $${PRICE_PER_MILLION.read}/M reads)`,
  );
}

const round = (x: number) => Math.round(x * 100) / 100;
