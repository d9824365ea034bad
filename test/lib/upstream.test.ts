import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { proxyEnvironment, type UpstreamTarget, upstreamFromEnvironment } from '../../lambda/gateway/api';
import { LlmRateLimiter, type LlmRateLimiterProps, requestsPerMinute, Upstream } from '../../lib';

const CHAT = '/v1/chat/completions';
const HAIKU = 'anthropic.claude-3-5-haiku-20241022-v1:0';

function synth(
  upstream: (stack: Stack) => Partial<LlmRateLimiterProps>,
  models: LlmRateLimiterProps['endpoints'][string]['models'] = {
    [HAIKU]: { inputPerMillion: 0.8, outputPerMillion: 4 },
  },
) {
  const stack = new Stack(new App(), 'Up', { env: { account: '123456789012', region: 'eu-west-1' } });
  new LlmRateLimiter(stack, 'Limiter', {
    ...upstream(stack),
    plans: { team: { user: [requestsPerMinute(60)] } },
    endpoints: { [CHAT]: { models } },
  });
  const template = Template.fromStack(stack);
  const proxy = Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) =>
    id.startsWith('LimiterProxy'),
  )![1];
  const proxyActions = Object.entries(template.findResources('AWS::IAM::Policy'))
    .filter(([id]) => id.startsWith('LimiterProxyRole'))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement.flatMap((s: { Action: string[] }) => s.Action));
  return { template, env: proxy.Properties.Environment.Variables as Record<string, unknown>, proxyActions };
}

const key = (stack: Stack) => Secret.fromSecretNameV2(stack, 'Key', 'upstream-key');

describe('the upstream kinds', () => {
  it.each<[string, (stack: Stack) => Partial<LlmRateLimiterProps>, string, string]>([
    [
      'the shorthand (upstreamBaseUrl + upstreamApiKeySecret)',
      (stack) => ({ upstreamBaseUrl: 'https://api.openai.com/v1', upstreamApiKeySecret: key(stack) }),
      'openai',
      'https://api.openai.com/v1',
    ],
    [
      'Upstream.openAiCompatible',
      (stack) => ({
        upstream: Upstream.openAiCompatible({ baseUrl: 'http://vllm:8000/v1', apiKeySecret: key(stack) }),
      }),
      'openai',
      'http://vllm:8000/v1',
    ],
    [
      'Upstream.anthropic',
      (stack) => ({
        upstream: Upstream.anthropic({ baseUrl: 'https://api.anthropic.com/v1', apiKeySecret: key(stack) }),
      }),
      'anthropic',
      'https://api.anthropic.com/v1',
    ],
  ])('%s: the proxy gets the base URL, the secret id and read access to that secret', (_name, upstream, kind, url) => {
    const { env, proxyActions } = synth(upstream);
    expect(env).toMatchObject({ UPSTREAM_KIND: kind, UPSTREAM_BASE_URL: url });
    expect(JSON.stringify(env.UPSTREAM_API_KEY_SECRET)).toContain('upstream-key');
    expect(env.BEDROCK_REGION).toBeUndefined();
    expect(proxyActions).toContain('secretsmanager:GetSecretValue');
    expect(proxyActions.filter((a) => a.startsWith('bedrock:'))).toEqual([]);
  });

  it('Upstream.bedrock: the stack region, no key, no secret anywhere, Bedrock actions only', () => {
    const { template, env, proxyActions } = synth(() => ({ upstream: Upstream.bedrock() }));
    expect(env).toMatchObject({ UPSTREAM_KIND: 'bedrock', BEDROCK_REGION: 'eu-west-1' });
    expect(env.UPSTREAM_BASE_URL).toBeUndefined();
    expect(env.UPSTREAM_API_KEY_SECRET).toBeUndefined();
    expect(JSON.stringify(template.toJSON())).not.toMatch(/secretsmanager|upstream-key/i);
    expect([...new Set(proxyActions.filter((a) => !/^(dynamodb|logs|ssm|events):/.test(a)))].sort()).toEqual([
      'bedrock:CountTokens',
      'bedrock:InvokeModel',
      'bedrock:InvokeModelWithResponseStream',
    ]);
  });

  it('Upstream.bedrock({ region }): that region, in the environment and the granted ARNs', () => {
    const { template, env } = synth(() => ({ upstream: Upstream.bedrock({ region: 'us-west-2' }) }));
    expect(env.BEDROCK_REGION).toBe('us-west-2');
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).toContain(
      `:bedrock:us-west-2::foundation-model/${HAIKU}`,
    );
  });
});

describe('upstream problems at synth', () => {
  const models = (upstreamModel: string) => ({ haiku: { inputPerMillion: 1, outputPerMillion: 1, upstreamModel } });
  it.each<[string, (stack: Stack) => Partial<LlmRateLimiterProps>, Record<string, object> | undefined, RegExp]>([
    [
      'both forms are given',
      (stack) => ({
        upstream: Upstream.bedrock(),
        upstreamBaseUrl: 'https://api.openai.com/v1',
        upstreamApiKeySecret: key(stack),
      }),
      undefined,
      new RegExp(
        [
          /Up\/Limiter: upstream and upstreamBaseUrl\/upstreamApiKeySecret are both given; /.source,
          /give upstream \(Upstream\.openAiCompatible.*\), /.source,
          /or upstreamBaseUrl with upstreamApiKeySecret .*, not both/.source,
        ].join(''),
      ),
    ],
    ['neither is given', () => ({}), undefined, /Up\/Limiter: no upstream is given; give upstream \(/],
    [
      'the shorthand lacks its secret',
      () => ({ upstreamBaseUrl: 'https://api.openai.com/v1' }),
      undefined,
      /upstreamApiKeySecret is missing; the OpenAI-compatible shorthand needs upstreamBaseUrl and upstreamApiKeySecret/,
    ],
    [
      "an upstream's base URL is not absolute",
      (stack) => ({ upstream: Upstream.anthropic({ baseUrl: 'api.anthropic.com', apiKeySecret: key(stack) }) }),
      undefined,
      /upstream\.baseUrl is "api\.anthropic\.com"; give an absolute http\(s\) URL/,
    ],
    [
      "Bedrock's region is not a region",
      () => ({ upstream: Upstream.bedrock({ region: 'us-east' }) }),
      undefined,
      /upstream\.region is "us-east"; give a region such as us-east-1, or leave it out for the stack's region/,
    ],
    [
      'a model name is no Bedrock model id (no upstreamModel)',
      () => ({ upstream: Upstream.bedrock() }),
      { 'claude-haiku': { inputPerMillion: 1, outputPerMillion: 1 } },
      new RegExp(
        [
          /endpoints\['\/v1\/chat\/completions'\]\.models\['claude-haiku'\]: /.source,
          /"claude-haiku" is not a Bedrock model id: /.source,
          /give a foundation model id .*, in upstreamModel when it differs/.source,
        ].join(''),
      ),
    ],
    [
      'an upstreamModel names an unknown profile geography',
      () => ({ upstream: Upstream.bedrock() }),
      models(`xx.${HAIKU}`),
      /models\['haiku'\]\.upstreamModel: "xx\.anthropic\.claude-3-5-haiku-20241022-v1:0" is not a Bedrock model id/,
    ],
    [
      'an upstreamModel holds an IAM wildcard',
      () => ({ upstream: Upstream.bedrock() }),
      models('anthropic.*'),
      /models\['haiku'\]\.upstreamModel: "anthropic\.\*" is not a Bedrock model id/,
    ],
    [
      'an upstreamModel is an application inference profile',
      () => ({ upstream: Upstream.bedrock() }),
      models('arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123'),
      /is an application inference profile, whose model is not known at synth: give the foundation model or system inference profile it copies from/,
    ],
    [
      'an upstreamModel is empty',
      () => ({ upstream: Upstream.bedrock() }),
      models(''),
      /models\.haiku\.upstreamModel: expected the upstream's model id, 1-2048 characters/,
    ],
  ])('throws when %s', (_name, upstream, given, message) => {
    expect(() => synth(upstream, given as never)).toThrow(message);
  });

  it('accepts every kind of Bedrock model id', () => {
    const ids = [
      HAIKU,
      `us.${HAIKU}`,
      'global.anthropic.claude-sonnet-4-5-20250929-v1:0',
      `arn:aws:bedrock:eu-west-1::foundation-model/${HAIKU}`,
      `arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.${HAIKU}`,
    ];
    expect(() =>
      synth(
        () => ({ upstream: Upstream.bedrock() }),
        Object.fromEntries(
          ids.map((id, i) => [`m${i}`, { inputPerMillion: 1, outputPerMillion: 1, upstreamModel: id }]),
        ),
      ),
    ).not.toThrow();
  });

  it('reports the upstream problems with the others, at once', () => {
    expect(() =>
      synth(() => ({ upstream: Upstream.bedrock({ region: 'mars' }), stageName: 'a b' }), {
        'claude-haiku': { inputPerMillion: 1, outputPerMillion: 1 },
      }),
    ).toThrow(
      new RegExp(
        [
          /Up\/Limiter: 3 props are not valid:\n {2}- upstream\.region is "mars".*\n/.source,
          / {2}- endpoints\['\/v1\/chat\/completions'\]\.models\['claude-haiku'\]: .*\n {2}- stageName is "a b"/.source,
        ].join(''),
      ),
    );
  });
});

describe("the proxy's upstream variables", () => {
  const targets: UpstreamTarget[] = [
    {
      kind: 'openai',
      baseUrl: 'https://api.openai.com/v1',
      apiKeySecret: 'arn:aws:secretsmanager:eu-west-1:1:secret:k',
    },
    { kind: 'anthropic', baseUrl: 'https://api.anthropic.com/v1', apiKeySecret: 'k' },
    { kind: 'bedrock', region: 'us-west-2' },
  ];
  it.each(targets)('reads back what the construct writes: $kind', (upstream) => {
    expect(upstreamFromEnvironment(proxyEnvironment({ upstream }))).toEqual(upstream);
  });

  it('reads an environment without UPSTREAM_KIND (written before it) as openai', () => {
    expect(upstreamFromEnvironment({ UPSTREAM_BASE_URL: 'http://x/v1', UPSTREAM_API_KEY_SECRET: 'k' })).toEqual({
      kind: 'openai',
      baseUrl: 'http://x/v1',
      apiKeySecret: 'k',
    });
  });

  it.each<[Record<string, string>, RegExp]>([
    [{ UPSTREAM_KIND: 'vertex' }, /UPSTREAM_KIND is "vertex"; expected openai, anthropic, bedrock/],
    [{ UPSTREAM_KIND: 'bedrock' }, /BEDROCK_REGION is not set/],
    [{ UPSTREAM_KIND: 'anthropic', UPSTREAM_BASE_URL: 'http://x' }, /UPSTREAM_API_KEY_SECRET is not set/],
  ])('names the variable that is wrong: %j', (env, message) => {
    expect(() => upstreamFromEnvironment(env)).toThrow(message);
  });
});
