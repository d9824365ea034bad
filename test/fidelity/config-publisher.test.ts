/**
 * The published configuration: a custom resource served by a limiter function, speaking
 * CloudFormation's protocol (a request event in, a PUT to the presigned ResponseURL out), writing
 * the configuration into DynamoDB Local for the CLI. Sources: docs/aws-fidelity.md.
 */
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleConfigEvent, PHYSICAL_ID } from '../../lambda/config-publisher/handler';
import { parseConfig, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { readPublishedConfig } from '../../lambda/engine/published-config';
import { ensureTable } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';
import { LlmRateLimiter } from '../../lib';
import { type CfnAnswer, cfnEvent, startCfnResponseUrl } from '../support/cfn-response';
import { dynamoEndpoint, uniqueKey } from '../support/dynamo';

const endpoints = {
  '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
};
const configOf = (plans: Record<string, unknown>) => parseConfig(JSON.parse(JSON.stringify({ plans, endpoints })));

let responseUrl: Awaited<ReturnType<typeof startCfnResponseUrl>>;
const client = localClient(dynamoEndpoint());
const table = uniqueKey('published-config');
beforeAll(async () => {
  responseUrl = await startCfnResponseUrl();
  await ensureTable(client, table);
});
afterAll(async () => {
  await responseUrl.stop();
  await client.send(new DeleteTableCommand({ TableName: table }));
});

describe('the configuration publisher, as CloudFormation drives it', () => {
  it('answers Create and Update with SUCCESS and one physical id, and the table holds the configuration of the last', async () => {
    let config = configOf({ team: { tenant: [tokensPerDay(1000)] } });
    const deps = { client, tableName: table, config: () => config, log: () => {} };
    await handleConfigEvent(cfnEvent('Create', responseUrl.url), deps);
    expect(await readPublishedConfig(client, table)).toEqual(config);
    config = configOf({ team: { tenant: [tokensPerDay(1000)] }, gold: { user: [requestsPerMinute(60)] } });
    await handleConfigEvent(cfnEvent('Update', responseUrl.url), deps);
    expect(await readPublishedConfig(client, table)).toEqual(config);

    const [created, updated] = responseUrl.answers.slice(-2) as [CfnAnswer, CfnAnswer];
    for (const [answer, type] of [
      [created, 'Create'],
      [updated, 'Update'],
    ] as const) {
      // A PUT with an empty Content-Type (the presigned URL was signed without one), and the fields CloudFormation requires.
      expect(answer).toMatchObject({ method: 'PUT', contentType: '' });
      expect(answer.body).toEqual({
        Status: 'SUCCESS',
        PhysicalResourceId: PHYSICAL_ID,
        StackId: cfnEvent(type, '').StackId,
        RequestId: `request-${type}`,
        LogicalResourceId: 'LimiterPublishedConfig',
      });
    }
  });

  it('leaves the configuration on Delete (the table may be retained with its tenants), and says SUCCESS', async () => {
    const config = configOf({ team: { tenant: [tokensPerDay(5)] } });
    const deps = { client, tableName: table, config: () => config, log: () => {} };
    await handleConfigEvent(cfnEvent('Create', responseUrl.url), deps);
    await handleConfigEvent(cfnEvent('Delete', responseUrl.url), deps);
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
    await expect(handleConfigEvent(cfnEvent('Create', responseUrl.url), deps)).resolves.toBeUndefined();
    expect(responseUrl.answers.at(-1)!.body).toMatchObject({
      Status: 'FAILED',
      Reason: expect.stringContaining('ResourceNotFoundException'),
      PhysicalResourceId: PHYSICAL_ID,
    });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'error', message: 'configuration not published' }));
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
  const hashOf = (t: Template) =>
    Object.values(t.findResources('Custom::LlmRateLimiterConfig'))[0]!.Properties.ConfigSha256 as string;

  it('is written by the publisher function, again whenever the configuration changes and only then', () => {
    const a = synth({ team: { tenant: [tokensPerDay(1000)] } });
    const resource = Object.values(a.findResources('Custom::LlmRateLimiterConfig'));
    expect(resource).toHaveLength(1);
    const publisher = Object.keys(a.findResources('AWS::Lambda::Function')).find((id) =>
      id.startsWith('LimiterConfigPublisher'),
    )!;
    expect(resource[0]!.Properties.ServiceToken).toEqual({ 'Fn::GetAtt': [publisher, 'Arn'] });
    expect(hashOf(synth({ team: { tenant: [tokensPerDay(1000)] } }))).toBe(hashOf(a));
    expect(hashOf(synth({ team: { tenant: [tokensPerDay(2000)] } }))).not.toBe(hashOf(a));
  });
});
