/**
 * With Bedrock as the upstream, the proxy's role allows exactly the Bedrock calls the configured
 * models need (test/support/bedrock-calls.ts, from AWS's documentation) and nothing else, judged by
 * an IAM policy simulator on the synthesized template.
 */
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { LlmRateLimiter, requestsPerMinute, Upstream } from '../../lib';
import { bedrockCallsFor } from '../support/bedrock-calls';
import { ACCOUNT, allowed, type IamCall, physicalOf, REGION, rolePolicies, unusedGrants } from '../support/iam-check';

const FOUNDATION = 'anthropic.claude-3-5-haiku-20241022-v1:0';
const US_PROFILE = 'us.anthropic.claude-3-7-sonnet-20250219-v1:0';
const GLOBAL_PROFILE = 'global.anthropic.claude-sonnet-4-5-20250929-v1:0';
const AS_ARN = `arn:aws:bedrock:${REGION}::foundation-model/amazon.nova-pro-v1:0`;
const PROFILE_ARN = `arn:aws:bedrock:${REGION}:${ACCOUNT}:inference-profile/eu.mistral.pixtral-large-2502-v1:0`;
const CONFIGURED = [FOUNDATION, US_PROFILE, GLOBAL_PROFILE, AS_ARN, PROFILE_ARN];
const price = (upstreamModel: string) => ({ inputPerMillion: 1, outputPerMillion: 5, upstreamModel });

function synth(app = new App()) {
  const stack = new Stack(app, 'Bedrock', { env: { account: ACCOUNT, region: REGION } });
  new LlmRateLimiter(stack, 'Limiter', {
    upstream: Upstream.bedrock(),
    plans: { team: { user: [requestsPerMinute(60)] } },
    endpoints: {
      '/v1/chat/completions': {
        models: { haiku: price(FOUNDATION), sonnet: price(US_PROFILE), [GLOBAL_PROFILE]: price(GLOBAL_PROFILE) },
      },
      '/v1/messages': { models: { nova: price(AS_ARN), pixtral: price(PROFILE_ARN), haiku: price(FOUNDATION) } },
    },
  });
  return { stack, template: Template.fromStack(stack) };
}

describe('the proxy role with Upstream.bedrock()', () => {
  let statements: Parameters<typeof allowed>[1];
  beforeAll(() => {
    const { template } = synth();
    statements = rolePolicies(template, 'LimiterProxy', physicalOf(template, 'limits'));
  });
  const proxyCall = (c: Omit<IamCall, 'fn'>): IamCall => ({ fn: 'proxy', ...c });
  const verdicts = (calls: IamCall[]) =>
    Promise.all(calls.map(async (c) => ({ call: `${c.action} on ${c.resource}`, ...(await allowed(c, statements)) })));
  const allCalls = CONFIGURED.flatMap((id) => bedrockCallsFor(id, REGION, ACCOUNT)).map(proxyCall);

  it('allows every call the configured models need: each foundation model, each profile and its models where it routes', async () => {
    // Each kind is there: the us. profile reaches us-west-2, the global one the region-less ARN.
    expect(allCalls.map((c) => c.resource)).toEqual(
      expect.arrayContaining([
        `arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-7-sonnet-20250219-v1:0`,
        'arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0',
        'arn:aws:bedrock:eu-north-1::foundation-model/mistral.pixtral-large-2502-v1:0',
        AS_ARN,
        PROFILE_ARN,
      ]),
    );
    const denied = (await verdicts(allCalls)).filter((v) => !v.allowed);
    expect(denied).toEqual([]);
  });

  it('grants nothing those calls do not use', () => {
    const bedrock = statements.filter((s) => ([] as string[]).concat(s.Action).some((a) => a.startsWith('bedrock:')));
    expect(bedrock.length).toBeGreaterThan(0);
    expect(unusedGrants(bedrock, allCalls, () => false)).toEqual([]);
  });

  it(
    'denies a model not configured, a profile of another account, a profile model called directly elsewhere, ' +
      'and other Bedrock actions',
    async () => {
      const other = `arn:aws:bedrock:${REGION}:999999999999:inference-profile/${US_PROFILE}`;
      const sonnet = 'anthropic.claude-3-7-sonnet-20250219-v1:0';
      const calls = [
        ...bedrockCallsFor('anthropic.claude-3-opus-20240229-v1:0', REGION, ACCOUNT),
        ...bedrockCallsFor(`us.${'anthropic.claude-3-opus-20240229-v1:0'}`, REGION, ACCOUNT).filter(
          (c) => c.api !== 'CountTokens',
        ),
        ...bedrockCallsFor(other, REGION, ACCOUNT).filter((c) => c.api !== 'CountTokens'),
        // The profile's model, outside the profile: directly in a destination region, in the source region, region-less.
        ...bedrockCallsFor(sonnet, 'us-west-2', ACCOUNT),
        { action: 'bedrock:InvokeModel', resource: `arn:aws:bedrock:${REGION}::foundation-model/${sonnet}` },
        {
          action: 'bedrock:InvokeModel',
          resource: 'arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0',
          context: { 'aws:RequestedRegion': 'unspecified' },
        },
        { action: 'bedrock:CountTokens', resource: `arn:aws:bedrock:us-west-2::foundation-model/${FOUNDATION}` },
        {
          action: 'bedrock:InvokeAgent',
          resource: `arn:aws:bedrock:${REGION}:${ACCOUNT}:agent-alias/AGENT1234/ALIAS1234`,
        },
        { action: 'bedrock:ListFoundationModels', resource: '*' },
        {
          action: 'bedrock:GetInferenceProfile',
          resource: `arn:aws:bedrock:${REGION}:${ACCOUNT}:inference-profile/${US_PROFILE}`,
        },
      ].map(proxyCall);
      const wrongly = (await verdicts(calls)).filter((v) => v.allowed);
      expect(wrongly).toEqual([]);
      expect(calls.length).toBeGreaterThan(15);
    },
  );

  it('has no Secrets Manager permission, and the template references no secret', () => {
    const { template } = synth(new App());
    expect(
      statements
        .flatMap((s) => ([] as string[]).concat(s.Action))
        .filter((a) => !/^(bedrock|dynamodb|logs|ssm|events):/.test(a)),
    ).toEqual([]);
    expect(JSON.stringify(template.toJSON())).not.toMatch(/secretsmanager|SecretArn|UPSTREAM_API_KEY_SECRET/);
  });

  it('leaves cdk-nag nothing unacknowledged (each any-region model grant acknowledged with its reason)', () => {
    const app = new App();
    synth(app);
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow();
  });
});
