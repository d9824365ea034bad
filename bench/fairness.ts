/**
 * Fair share (issue 27): the upstream's own rate limit fed back. A stand-in provider that takes 25
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
import { report } from './report';
import { size } from './smoke';

const TABLE = 'bench-fairness';
const CHAT = '/v1/chat/completions';

export async function benchFairness(dynamoEndpoint: string): Promise<void> {
  installLambdaStreamingGlobals();
  await ensureTable(localClient(dynamoEndpoint), TABLE);
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
