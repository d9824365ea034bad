/**
 * The published configuration: a custom resource served by a limiter function, speaking
 * CloudFormation's protocol (a request event in, a PUT to the presigned ResponseURL out), writing
 * the configuration into DynamoDB Local for the CLI. Sources: docs/aws-fidelity.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleConfigEvent, PHYSICAL_ID } from '../../lambda/config-publisher/handler';
import { parseConfig, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { configSha256 } from '../../lambda/engine/config-hash';
import { readPublishedConfig } from '../../lambda/engine/published-config';
import { CLIENT_TIMEOUTS } from '../../lambda/runtime/aws-clients';
import { deployedClientConfig } from '../support/deployed-client';
import { type DynamoFaultProxy, startDynamoFaultProxy } from '../support/dynamo-faults';
import { ensureTable } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { LlmRateLimiter } from '../../lib';
import { type CfnAnswer, cfnEvent, startCfnResponseUrl } from '../support/cfn-response';
import { dynamoEndpoint, uniqueKey } from '../support/dynamo';

const endpoints = {
  '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
};
const configOf = (plans: Record<string, unknown>) => parseConfig(JSON.parse(JSON.stringify({ plans, endpoints })));
/** The property the construct gives the custom resource. */
const hashOf = (config: unknown) => ({ ConfigSha256: configSha256(config) });

let responseUrl: Awaited<ReturnType<typeof startCfnResponseUrl>>;
let faults: DynamoFaultProxy;
const client = localClient(dynamoEndpoint());
const table = uniqueKey('published-config');
beforeAll(async () => {
  responseUrl = await startCfnResponseUrl();
  faults = await startDynamoFaultProxy(dynamoEndpoint());
  await ensureTable(client, table);
});
afterAll(async () => {
  await responseUrl.stop();
  await faults.stop();
  await client.send(new DeleteTableCommand({ TableName: table }));
});

describe('the configuration publisher, as CloudFormation drives it', () => {
  it('answers Create and Update with SUCCESS and one physical id, and the table holds the configuration of the last', async () => {
    let config = configOf({ team: { tenant: [tokensPerDay(1000)] } });
    const deps = { client, tableName: table, config: () => config, log: () => {} };
    await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(config)), deps);
    expect(await readPublishedConfig(client, table)).toEqual(config);
    config = configOf({ team: { tenant: [tokensPerDay(1000)] }, gold: { user: [requestsPerMinute(60)] } });
    await handleConfigEvent(cfnEvent('Update', responseUrl.url, hashOf(config)), deps);
    expect(await readPublishedConfig(client, table)).toEqual(config);

    const [created, updated] = responseUrl.answers.slice(-2) as [CfnAnswer, CfnAnswer];
    const sentProperties = { ServiceToken: expect.any(String), ConfigSha256: expect.any(String) };
    for (const [answer, type] of [
      [created, 'Create'],
      [updated, 'Update'],
    ] as const) {
      // A PUT with an empty Content-Type (the presigned URL was signed without one), and the fields CloudFormation requires.
      expect(answer).toMatchObject({ method: 'PUT', contentType: '' });
      expect(answer.body).toEqual({
        Status: 'SUCCESS',
        PhysicalResourceId: PHYSICAL_ID,
        StackId: cfnEvent(type, '', sentProperties).StackId,
        RequestId: `request-${type}`,
        LogicalResourceId: 'LimiterPublishedConfig',
      });
    }
  });

  it('leaves the configuration on Delete (the table may be retained with its tenants), and says SUCCESS', async () => {
    const config = configOf({ team: { tenant: [tokensPerDay(5)] } });
    const deps = { client, tableName: table, config: () => config, log: () => {} };
    await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(config)), deps);
    await handleConfigEvent(cfnEvent('Delete', responseUrl.url, hashOf(config)), deps);
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: PHYSICAL_ID });
    expect(await readPublishedConfig(client, table)).toEqual(config);
  });

  it('answers FAILED with the reason when it cannot write, so a deploy fails at once instead of waiting out the timeout', async () => {
    const logs: Record<string, unknown>[] = [];
    const deps = {
      client,
      tableName: uniqueKey('no-such-table'),
      config: () => configOf({ team: {} }),
      log: (e: Record<string, unknown>) => logs.push(e),
    };
    await expect(
      handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(deps.config())), deps),
    ).resolves.toBeUndefined();
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringContaining('ResourceNotFoundException'),
      PhysicalResourceId: PHYSICAL_ID,
    });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', message: 'configuration not published' }));
  });
});

describe('the configuration publisher, as its role and the hash it is given make it', () => {
  /** The deployed function's client (publisherDepsFromEnvironment), through the fault proxy. */
  const deployedClient = () => new DynamoDBClient(deployedClientConfig(CLIENT_TIMEOUTS.dynamodb, faults.endpoint));
  const publisher = (config: ReturnType<typeof configOf>, tableName = table) => {
    const logs: Record<string, unknown>[] = [];
    const deps = {
      client: deployedClient(),
      tableName,
      config: () => config,
      log: (e: Record<string, unknown>) => logs.push(e),
    };
    return { deps, logs };
  };
  /** The Lambda context of a function with this much time left. */
  const remaining = (ms: number) => ({ getRemainingTimeInMillis: () => ms });

  it('publishes through AccessDenied (its new policy not yet propagated by IAM) and throttling, then says SUCCESS', async () => {
    const tableName = uniqueKey('published-config');
    await ensureTable(client, tableName);
    const config = configOf({ team: { tenant: [tokensPerDay(700)] } });
    const { deps, logs } = publisher(config, tableName);
    faults.refuse.push(
      'AccessDeniedException',
      'AccessDeniedException',
      'ThrottlingException',
      'AccessDeniedException',
    );
    await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(config)), deps, remaining(60_000));
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({ Status: 'SUCCESS', PhysicalResourceId: PHYSICAL_ID });
    expect(await readPublishedConfig(client, tableName)).toEqual(config);
    expect(faults.refuse).toEqual([]);
    expect(logs.filter((e) => e.message === 'publishing again').map((e) => e.error)).toEqual([
      'AccessDeniedException',
      'AccessDeniedException',
      'ThrottlingException',
      'AccessDeniedException',
    ]);
    await client.send(new DeleteTableCommand({ TableName: tableName }));
  });

  it('answers FAILED with the reason while it still has time to answer, when access stays denied', async () => {
    const tableName = uniqueKey('published-config');
    await ensureTable(client, tableName);
    const config = configOf({ team: { tenant: [tokensPerDay(700)] } });
    const { deps } = publisher(config, tableName);
    faults.refuse.push(...Array.from({ length: 1_000 }, () => 'AccessDeniedException'));
    try {
      // 13.5 s left: 12 s are kept for the answer, so it retries for 1.5 s at most.
      await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(config)), deps, remaining(13_500));
    } finally {
      faults.refuse.length = 0;
    }
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringContaining('AccessDeniedException'),
    });
    expect(await readPublishedConfig(client, tableName)).toBeUndefined();
    await client.send(new DeleteTableCommand({ TableName: tableName }));
  });

  it('publishes the configuration the hash names: a rollback reaching the new code publishes the one before', async () => {
    const before = configOf({ team: { tenant: [tokensPerDay(100)] } });
    const after = configOf({ team: { tenant: [tokensPerDay(200)] } });
    await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(before)), publisher(before).deps);
    await handleConfigEvent(cfnEvent('Update', responseUrl.url, hashOf(after)), publisher(after).deps);
    expect(await readPublishedConfig(client, table)).toEqual(after);
    // The stack rolls back: the Update names the configuration before, the function still holds the new one.
    await handleConfigEvent(cfnEvent('Update', responseUrl.url, hashOf(before)), publisher(after).deps);
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({ Status: 'SUCCESS' });
    expect(await readPublishedConfig(client, table)).toEqual(before);
  });

  it('publishes nothing for a hash no configuration has, and says FAILED naming it', async () => {
    const config = configOf({ team: { tenant: [tokensPerDay(300)] } });
    await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(config)), publisher(config).deps);
    const unknown = 'f'.repeat(64);
    await handleConfigEvent(cfnEvent('Update', responseUrl.url, { ConfigSha256: unknown }), publisher(config).deps);
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringContaining(`no configuration with ConfigSha256 ${unknown}`),
    });
    expect(await readPublishedConfig(client, table)).toEqual(config);
  });
});

describe('the published configuration in the template', () => {
  const synth = (plans: Record<string, unknown>) => {
    const stack = new Stack(new App(), 'Test');
    new LlmRateLimiter(stack, 'Limiter', {
      upstreamBaseUrl: 'https://api.openai.com/v1',
      upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'k'),
      endpoints,
      plans: plans as never,
    });
    return Template.fromStack(stack);
  };
  const sentHash = (t: Template) =>
    Object.values(t.findResources('Custom::LlmRateLimiterConfig'))[0]!.Properties.ConfigSha256 as string;

  it('is written by the publisher function, again whenever the configuration changes and only then', () => {
    const a = synth({ team: { tenant: [tokensPerDay(1000)] } });
    const resource = Object.values(a.findResources('Custom::LlmRateLimiterConfig'));
    expect(resource).toHaveLength(1);
    const publisher = Object.keys(a.findResources('AWS::Lambda::Function')).find((id) =>
      id.startsWith('LimiterConfigPublisher'),
    )!;
    expect(resource[0]!.Properties.ServiceToken).toEqual({ 'Fn::GetAtt': [publisher, 'Arn'] });
    expect(sentHash(synth({ team: { tenant: [tokensPerDay(1000)] } }))).toBe(sentHash(a));
    expect(sentHash(synth({ team: { tenant: [tokensPerDay(2000)] } }))).not.toBe(sentHash(a));
  });

  it('sends the hash of the config.json the publisher is deployed with, so the publisher knows it as its own', () => {
    const app = new App();
    const stack = new Stack(app, 'Staged');
    new LlmRateLimiter(stack, 'Limiter', {
      upstreamBaseUrl: 'https://api.openai.com/v1',
      upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'k'),
      endpoints,
      plans: { team: { tenant: [tokensPerDay(1000)], user: [requestsPerMinute(60)] } },
    });
    const template = Template.fromStack(stack);
    const staging = join(app.outdir, '.limiter-staging');
    const [folder] = readdirSync(staging).filter((f) => f.startsWith('config-publisher-'));
    // What the function's own configuration (limiterConfig) reads at run time.
    const own = parseConfig(JSON.parse(readFileSync(join(staging, folder!, 'config.json'), 'utf8')));
    expect(configSha256(own)).toBe(sentHash(template));
  });
});
