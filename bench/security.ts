/**
 * Hostile input and hung dependencies: how much an attacker gets billed past the limit, and how
 * long a decision takes when SSM and DynamoDB accept connections and never answer.
 */
import { putApiKey, putTenant } from '../lambda/runtime/directory';
import { createHandler, depsFromEnvironment } from '../lambda/authorizer/handler';
import { Brake } from '../lambda/runtime/brake';
import { Directory } from '../lambda/runtime/directory';
import { Limiter } from '../lambda/engine/limiter';
import { tokenBucket } from '../lambda/engine/limits';
import { parseConfig, requestsPerMinute, tokens } from '../lambda/engine/plans';
import { LimitStore } from '../lambda/engine/store';
import { localClient } from '../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../local/lambda-streaming';
import { startSsmLocal } from '../local/ssm-local';
import { startUpstreamStandIn } from '../local/upstream-standin';
import { createProxyHandler } from '../lambda/proxy/handler';
import { SSMClient } from '@aws-sdk/client-ssm';
import { authorizerEvent, lambdaContext, proxyEvent } from '../test/support/events';
import { startFaultProxy } from '../test/support/fault-proxy';
import { localFunctionEnvironment } from '../test/support/function-environment';
import { honestInputBill } from '../test/support/honest-bill';
import { percentile, report } from './report';
import { size } from './smoke';

const CHAT = '/v1/chat/completions';
const TABLE = 'bench-security';

export async function benchSecurity(dynamoEndpoint: string): Promise<void> {
  installLambdaStreamingGlobals();
  const client = localClient(dynamoEndpoint);
  const { ensureTable } = await import('../lambda/engine/store');
  await ensureTable(client, TABLE);
  const ssm = await startSsmLocal();

  // The hidden-tokens attack: 40 concurrent requests from one key (20,000 tokens a minute), each
  // carrying tokens in `functions`, to an upstream that bills everything it is sent.
  const limit = 20_000;
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: { team: { user: [tokens(tokenBucket(limit, limit / 60))], outputReservation: 64 } },
        endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
      }),
    ),
  );
  let billed = 0;
  const upstream = await startUpstreamStandIn({
    reply: (body) => {
      const prompt = honestInputBill(body);
      billed += prompt + 1;
      return { words: ['ok'], usage: { prompt_tokens: prompt, completion_tokens: 1 } };
    },
  });
  let worst = 0;
  for (const hiddenTokens of [47_000, 2_000]) {
    billed = 0;
    const tenant = `bench-${hiddenTokens}-${Date.now()}`;
    await putTenant(client, TABLE, { id: tenant, plan: 'team' });
    const frozen = Date.now();
    const limiter = new Limiter({
      store: new LimitStore({ client, tableName: TABLE, clock: () => frozen }),
      config,
      log: () => {},
    });
    const brake = new Brake({
      client: new SSMClient({
        endpoint: ssm.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      }),
      parameterName: '/bench/brake',
      log: () => {},
    });
    const handler = createProxyHandler({
      config,
      limiter,
      directory: new Directory({ client, tableName: TABLE }),
      brake,
      upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk' },
      log: () => {},
      metrics: () => {},
    });
    const description = 'Looks a record up by its identifier and returns every field of it. '.repeat(
      Math.ceil(hiddenTokens / 14),
    );
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Find record 42.' }],
      functions: [{ name: 'lookup', description, parameters: { type: 'object', properties: {} } }],
    };
    await Promise.all(
      Array.from({ length: 40 }, () =>
        invokeStreaming(
          handler,
          proxyEvent({ body, authorizer: { tenant, user: 'mallory', shard: '0' } }),
          lambdaContext('proxy'),
        ),
      ),
    );
    worst = Math.max(worst, billed / limit);
  }
  report(
    'security.hidden_tokens.overrun_factor',
    worst,
    'billed / limit (40 concurrent requests with hidden tokens in functions; output within its reservation)',
  );
  await upstream.stop();

  // Hung dependencies: decisions of a warm authorizer while SSM and DynamoDB hang, against the
  // same decisions with both answering.
  const dynamo = await startFaultProxy(dynamoEndpoint);
  const ssmProxy = await startFaultProxy(ssm.endpoint);
  const saved = { ...process.env };
  const hangConfig = {
    plans: { team: { tenant: [requestsPerMinute(1_000_000)], user: [requestsPerMinute(1_000_000)] } },
    endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
  };
  Object.assign(
    process.env,
    localFunctionEnvironment({
      tableName: TABLE,
      brakeParameterName: '/bench/brake',
      config: hangConfig,
      dynamoEndpoint: dynamo.endpoint,
      ssmEndpoint: ssmProxy.endpoint,
    }),
  );
  const apiKey = `sk-bench-hang-${Date.now()}`;
  await putTenant(client, TABLE, { id: 'hang', plan: 'team' });
  await putApiKey(client, TABLE, apiKey, { tenant: 'hang', user: 'u', status: 'active' });
  const event = authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } });
  const handler = createHandler(depsFromEnvironment());
  const time = async (n: number) => {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      await handler(event, lambdaContext()).catch(() => undefined);
      ms.push(performance.now() - started);
    }
    return percentile(
      ms.sort((a, b) => a - b),
      99,
    );
  };
  const healthy = await time(size(20, 2));
  dynamo.mode = 'hang';
  ssmProxy.mode = 'hang';
  const hung = await time(size(20, 2));
  report(
    'security.hang.decision_ms',
    hung,
    'ms p99 (warm authorizer, SSM and DynamoDB hung; baseline both answering)',
    healthy,
  );
  process.env = saved;
  await dynamo.stop();
  await ssmProxy.stop();
  await ssm.stop();
  client.destroy();
}
