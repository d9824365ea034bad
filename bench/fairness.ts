/**
 * Fair share (issue 27). First, weighted shares of an oversold global limit (lambda/engine/share.ts):
 * the generated load of test/engine/global-share.test.ts (weights 1, 1, 2, 1 on a global of 20
 * requests a second; one tenant sending 10x its share, the others below, at and above theirs)
 * on a simulated clock against DynamoDB Local, with fair shares and first come first served, leases
 * on as deployed, in the same process.
 *
 * Then the upstream's own rate limit fed back. A stand-in provider that takes 25
 * requests per 5 s window and answers 429 past them (with Retry-After and x-ratelimit-* headers,
 * as OpenAI does); eight clients on four proxy containers asking as fast as they can, each waiting
 * what a 429's Retry-After says (as the SDKs do); the provider's 429s counted with the feedback
 * (lambda/proxy/upstream-feedback.ts) and without it (the same containers with no cooldown), same
 * load, same process.
 */
import { ensureTable } from '../lambda/engine/store';
import { requestsPerMinute } from '../lambda/engine/plans';
import { createProxyHandler, proxyDepsFromEnvironment } from '../lambda/proxy/handler';
import { putTenant } from '../lambda/runtime/directory';
import { localClient } from '../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startSsmLocal } from '../local/ssm-local';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { lambdaContext, proxyEvent } from '../test/support/events';
import { localFunctionEnvironment } from '../test/support/function-environment';
import { tokenBucket } from '../lambda/engine/limits';
import { parseConfig, requests } from '../lambda/engine/plans';
import { admittedPerSecond, type LoadTenant, overAdmitted, runShareLoad } from '../test/support/share-load';
import { report } from './report';
import { size } from './smoke';

const TABLE = 'bench-fairness';
const CHAT = '/v1/chat/completions';

export async function benchFairness(dynamoEndpoint: string): Promise<void> {
  installLambdaStreamingGlobals();
  await ensureTable(localClient(dynamoEndpoint), TABLE);
  await benchShares(dynamoEndpoint);
  const ssm = await startSsmLocal();
  const saved = { ...process.env };
  const seconds = size(10, 2);
  try {
    const run = async (feedback: boolean, honour: boolean) => {
      const upstream = await startUpstreamStandIn({
        usage: { prompt_tokens: 5, completion_tokens: 3 },
        limit: { requests: 25, windowMs: 5_000 },
      });
      try {
        const model = `bench-${crypto.randomUUID()}`;
        ssm.parameters.set('/bench-fairness/brake', { value: 'off', version: 1, modified: Date.now() });
        ssm.secrets.set('bench-fairness-key', 'sk-upstream');
        Object.assign(process.env, {
          ...localFunctionEnvironment({
            tableName: TABLE,
            brakeParameterName: '/bench-fairness/brake',
            config: {
              plans: { team: { user: [requestsPerMinute(100_000)] } },
              endpoints: { [CHAT]: { models: { [model]: { inputPerMillion: 1, outputPerMillion: 1 } } } },
            },
            dynamoEndpoint,
            ssmEndpoint: ssm.endpoint,
          }),
          UPSTREAM_BASE_URL: upstream.baseUrl,
          UPSTREAM_API_KEY_SECRET: 'bench-fairness-key',
        });
        const tenant = `bench-${crypto.randomUUID()}`;
        await putTenant(localClient(dynamoEndpoint), TABLE, { id: tenant, plan: 'team' });
        const containers = [0, 1, 2, 3].map(() => {
          const deps = proxyDepsFromEnvironment();
          return createProxyHandler(feedback ? deps : { ...deps, cooldown: undefined });
        });
        const until = Date.now() + seconds * 1000;
        let answered = 0;
        await Promise.all(
          Array.from({ length: 8 }, async (_, client) => {
            while (Date.now() < until) {
              const res = await invokeStreaming(
                containers[client % 4],
                proxyEvent({
                  route: CHAT,
                  body: { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 },
                  authorizer: { tenant, user: `u${client}`, shard: '0' },
                }),
                lambdaContext('proxy'),
              );
              if (res.statusCode === 200) answered++;
              else {
                // A client told to wait waits what Retry-After says (as the SDKs do), or, a runaway
                // script, 50 ms; then asks again.
                const wait = Object.entries(res.headers).find(([k]) => k.toLowerCase() === 'retry-after')?.[1];
                const ms = honour ? Math.min(Number(wait ?? 1) * 1000, 5_000) : 50;
                await new Promise((r) => setTimeout(r, ms));
              }
            }
          }),
        );
        return { upstream429s: upstream.limited, answered };
      } finally {
        await upstream.stop();
      }
    };
    const load = (honour: boolean) =>
      `8 clients on 4 containers for ${seconds} s against a provider taking 25 requests per 5 s, each client ` +
      (honour ? "waiting a 429's Retry-After" : 'asking again 50 ms after a 429 (a runaway script)');
    for (const honour of [false, true]) {
      const without = await run(false, honour);
      const withFeedback = await run(true, honour);
      report(
        honour ? 'fairness.upstream_429s_avoided.retry_after_clients' : 'fairness.upstream_429s_avoided',
        withFeedback.upstream429s / Math.max(1, without.upstream429s),
        `upstream 429s with the feedback / without, ${load(honour)} (${withFeedback.upstream429s} vs ` +
          `${without.upstream429s}; answered ${withFeedback.answered} vs ${without.answered}); lower is better`,
      );
    }
  } finally {
    process.env = saved;
    await ssm.stop();
  }
}

/** The global of the shares load: 20 requests a second, 100 of burst, over 2 shards. */
const RATE = 20;
const CAPACITY = 100;

async function benchShares(dynamoEndpoint: string): Promise<void> {
  const seconds = size(40, 12);
  const warmUp = size(10, 4);
  const tenants: LoadTenant[] = [
    { tenant: { id: 'heavy', plan: 'one' }, demand: () => 40 },
    { tenant: { id: 'below', plan: 'one' }, demand: () => 2 },
    { tenant: { id: 'at', plan: 'two' }, demand: () => 8 },
    { tenant: { id: 'above', plan: 'one' }, demand: () => 6 },
  ];
  // Weighted shares of 20/s for weights 1, 1, 2, 1.
  const share: Record<string, number> = { heavy: 4, below: 4, at: 8, above: 4 };
  const run = (fairShare: boolean) =>
    runShareLoad({
      client: localClient(dynamoEndpoint),
      tableName: TABLE,
      namespace: `bench-${crypto.randomUUID()}`,
      config: parseConfig(
        JSON.parse(
          JSON.stringify({
            plans: { one: {}, two: fairShare ? { globalWeight: 2 } : {} },
            endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
            global: { limits: [requests(tokenBucket(CAPACITY, RATE), { name: 'pool' })], shards: 2, fairShare },
            penalty: { threshold: 1e9 },
          }),
        ),
      ),
      route: CHAT,
      tenants,
      seconds,
      leases: true,
    });
  const shared = await run(true);
  const firstCome = await run(false);
  const starved = (r: typeof shared) =>
    Math.min(
      ...tenants
        .filter((t) => t.tenant.id !== 'heavy')
        .map((t) => admittedPerSecond(r, t.tenant.id, warmUp, seconds) / Math.min(t.demand(0), share[t.tenant.id]!)),
    );
  const used = (r: typeof shared) =>
    tenants.reduce((a, t) => a + admittedPerSecond(r, t.tenant.id, warmUp, seconds), 0) / RATE;
  const load =
    `4 tenants (weights 1, 1, 2, 1) on 4 containers for ${seconds} simulated s against a global of ${RATE} ` +
    'requests/s; one sends 10x its share, the others below, at and above theirs; from ' +
    `${warmUp} s on; baseline: first come, first served`;
  report(
    'fairness.starved_tenant_share',
    starved(shared),
    `the worst light tenant's admitted / min(its demand, its weighted share), ${load}; target >= 0.95`,
    starved(firstCome),
  );
  report(
    'fairness.global_over_admitted',
    overAdmitted(shared, CAPACITY, RATE),
    `requests admitted past the global's burst + refill over any run of seconds, ${load}; target 0`,
    overAdmitted(firstCome, CAPACITY, RATE),
  );
  report(
    'fairness.idle_share_used',
    used(shared),
    `admitted / the global's rate while demand exceeds it (a tenant below its share leaves part unused), ${load}; target >= 0.95`,
    used(firstCome),
  );
  report(
    'fairness.share.dynamodb_requests_per_decision',
    shared.calls / shared.decisions,
    'DynamoDB requests per decision with fair shares (a global write each, never leased, and the meters), ' +
      load.replace('first come, first served', 'first come, first served with leases'),
    firstCome.calls / firstCome.decisions,
  );
}
