import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { autoBrake } from '../../lambda/auto-brake/handler';
import { Brake, parseBrake } from '../../lambda/runtime/brake';
import { Directory, putApiKey, putTenant } from '../../lambda/runtime/directory';
import { createHandler } from '../../lambda/authorizer/handler';
import { StoreUnavailableError } from '../../lambda/engine/errors';
import { Limiter } from '../../lambda/engine/limiter';
import { parseConfig, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn } from '../../local/upstream-standin';
import { createProxyHandler } from '../../lambda/proxy/handler';
import { NAMESPACE, setMetricSink } from '../../lambda/runtime/metrics';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { authorizerEvent, lambdaContext, proxyEvent } from '../support/events';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(1)] } },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
    }),
  ),
);

interface EmfLine {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[];
  };
  [key: string]: unknown;
}

const lines: string[] = [];
let ssm: SsmLocal;
beforeAll(async () => {
  setMetricSink((line) => lines.push(line));
  ssm = await startSsmLocal();
});
afterAll(() => ssm.stop());

/** The EMF lines emitted by `run`, parsed and checked for the shape CloudWatch requires. */
async function emitted(run: () => Promise<unknown>): Promise<EmfLine[]> {
  const from = lines.length;
  await run();
  return lines.slice(from).map((l) => {
    const parsed = JSON.parse(l) as EmfLine;
    const directive = parsed._aws.CloudWatchMetrics[0]!;
    expect(directive.Namespace).toBe(NAMESPACE);
    for (const set of directive.Dimensions) for (const d of set) expect(typeof parsed[d]).toBe('string');
    for (const m of directive.Metrics) expect(typeof parsed[m.Name]).toBe('number');
    return parsed;
  });
}
const metricOf = (line: EmfLine) =>
  Object.fromEntries(line._aws.CloudWatchMetrics[0]!.Metrics.map((m) => [m.Name, m.Unit]));

async function setup() {
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  const apiKey = `sk-test-${uniqueKey('key')}`;
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  await putApiKey(client, tableName(), apiKey, { tenant, user: 'alice', status: 'active' });
  const brakeName = `/metrics/${uniqueKey('brake')}`;
  const logs: Record<string, unknown>[] = [];
  const log = (e: Record<string, unknown>) => logs.push(e);
  const limiter = new Limiter({ store: testStore(), config, log, namespace: uniqueKey('ns') });
  const directory = new Directory({ client, tableName: tableName() });
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      maxAttempts: 1,
    }),
    parameterName: brakeName,
    log,
  });
  const authorizer = createHandler({ config, limiter, directory, brake, log });
  const call = (key = apiKey) =>
    authorizer(authorizerEvent({ headers: { Authorization: `Bearer ${key}` } }), lambdaContext()).catch(
      (e: unknown) => e,
    );
  return { call, tenant, apiKey, logs, limiter, directory, brake, brakeName, log };
}

describe('metrics in Embedded Metric Format', () => {
  it('makes the tenant a dimension only when per-tenant metrics are asked for (METRICS_BY_TENANT)', async () => {
    const s = await setup();
    process.env.METRICS_BY_TENANT = 'true';
    try {
      const [admit] = await emitted(() => s.call());
      expect(admit).toMatchObject({ Function: 'authorizer', Outcome: 'allowed', Tenant: s.tenant });
      expect(admit!._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([
        ['Function', 'Outcome', 'Tenant'],
        ['Function'],
        ['Function', 'Outcome'],
      ]);
    } finally {
      delete process.env.METRICS_BY_TENANT;
    }
  });

  it('counts an admitted request, a denial with its layer and code, and an unknown key', async () => {
    const s = await setup();
    const [admit] = await emitted(() => s.call());
    expect(admit).toMatchObject({
      Function: 'authorizer',
      Outcome: 'allowed',
      Tenant: s.tenant,
      Decisions: 1,
      user: 'alice',
    });
    // The tenant is a field of the line (Logs Insights), not a dimension: per-tenant metrics are opt-in (metricsByTenant).
    expect(admit!._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([['Function', 'Outcome'], ['Function']]);
    expect(metricOf(admit!)).toEqual({ Decisions: 'Count' });
    const [deny] = await emitted(() => s.call());
    expect(deny).toMatchObject({ Outcome: 'denied', Layer: 'user', Code: 'user_requests_per_minute', Decisions: 1 });
    expect(deny!._aws.CloudWatchMetrics[0]!.Dimensions[0]).not.toContain('user');
    const [unauthorized] = await emitted(() => s.call('sk-unknown-key-00000000000'));
    expect(unauthorized).toMatchObject({ Outcome: 'unauthorized', Decisions: 1 });
  });

  it('counts brake denials with their own layer and code (what the brake alarm watches)', async () => {
    const s = await setup();
    ssm.parameters.set(s.brakeName, { value: 'on', version: 1, modified: Date.now() });
    const [braked] = await emitted(() => s.call());
    expect(braked).toMatchObject({
      Function: 'authorizer',
      Outcome: 'denied',
      Layer: 'brake',
      Code: 'brake',
      Decisions: 1,
    });
    expect(braked!._aws.CloudWatchMetrics[0]!.Dimensions[0]).toEqual(['Function', 'Outcome', 'Layer', 'Code']);
  });

  it('reports settled tokens and spend per tenant, endpoint and model, and settlement failures', async () => {
    installLambdaStreamingGlobals();
    const s = await setup();
    const upstream = await startUpstreamStandIn({ usage: { prompt_tokens: 10, completion_tokens: 5 } });
    const proxyDeps = {
      config,
      limiter: s.limiter,
      directory: s.directory,
      brake: s.brake,
      upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-upstream-secret-000' },
      settleBackoffMs: 1,
      settleAttempts: 2,
      log: s.log,
    };
    const event = () =>
      proxyEvent({
        body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a private prompt text' }] },
        authorizer: { tenant: s.tenant, user: 'alice', shard: '0' },
      });
    const settledLines = await emitted(() =>
      invokeStreaming(createProxyHandler(proxyDeps), event(), lambdaContext('proxy')),
    );
    const settled = settledLines.find((l) => 'TokensSettled' in l)!;
    expect(settled).toMatchObject({
      Function: 'proxy',
      Tenant: s.tenant,
      Endpoint: CHAT,
      Model: 'gpt-4o-mini',
      TokensSettled: 15,
      MicroUsdSettled: 10 * 0.15 + 5 * 0.6,
      InputSettled: 10,
      user: 'alice',
    });
    // The pre-count of this prompt: what the proxy reserved for its input, against the 10 reported.
    expect(settled.InputReserved).toBeGreaterThanOrEqual(10);
    expect(metricOf(settled)).toEqual({
      TokensSettled: 'Count',
      MicroUsdSettled: 'None',
      ReservationError: 'Count',
      InputReserved: 'Count',
      InputSettled: 'Count',
    });

    const failing = Object.assign(Object.create(Object.getPrototypeOf(s.limiter)), s.limiter, {
      settle: async () => Promise.reject(new StoreUnavailableError('TransactWriteItems', 'x')),
    });
    const failedLines = await emitted(() =>
      invokeStreaming(createProxyHandler({ ...proxyDeps, limiter: failing }), event(), lambdaContext('proxy')),
    );
    expect(failedLines.filter((l) => 'SettleRetries' in l)).toHaveLength(2);
    expect(failedLines.find((l) => 'SettleFailures' in l)).toMatchObject({ Function: 'proxy', SettleFailures: 1 });

    const everything = JSON.stringify(lines) + JSON.stringify(s.logs);
    for (const secret of [s.apiKey, 'sk-upstream-secret-000', 'a private prompt text', 'Hello there'])
      expect(everything).not.toContain(secret);
    await upstream.stop();
  });
});

describe('the automatic brake', () => {
  it('sets the brake with the alarm as reason and an end when the alarm fires, and ignores other states', async () => {
    const name = `/auto/${uniqueKey('brake')}`;
    ssm.parameters.set(name, { value: 'off', version: 1, modified: Date.now() });
    const deps = {
      ssm: new SSMClient({
        endpoint: ssm.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
      }),
      parameterName: name,
      brakeForSeconds: 3600,
      clock: () => Date.parse('2026-11-27T12:00:00Z'),
      log: () => {},
    };
    expect(await autoBrake({ alarmData: { alarmName: 'spend', state: { value: 'OK' } } }, deps)).toEqual({
      braked: false,
    });
    expect(ssm.parameters.get(name)!.value).toBe('off');
    expect(
      await autoBrake({ alarmData: { alarmName: 'LlmRateLimiter-prod-spend', state: { value: 'ALARM' } } }, deps),
    ).toEqual({ braked: true });
    expect(parseBrake(ssm.parameters.get(name)!.value)).toEqual({
      enabled: true,
      reason: 'automatic: LlmRateLimiter-prod-spend fired',
      until: Date.parse('2026-11-27T13:00:00Z'),
    });
  });
});
