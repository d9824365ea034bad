import { App, Stack } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { limitCode } from '../../lambda/engine/plans';
import { bedrockQuota, LlmRateLimiter, requestsPerMinute, Upstream, usdPerDay } from '../../lib';

const bedrockProps = {
  upstream: Upstream.bedrock(),
  plans: { team: { user: [requestsPerMinute(60)] } },
  endpoints: {
    '/v1/chat/completions': {
      models: { 'us.anthropic.claude-sonnet-4-20250514-v1:0': { inputPerMillion: 3, outputPerMillion: 15 } },
    },
  },
};

describe('bedrockQuota', () => {
  it('gives global limits of at most the quota in any minute, tokens and requests, named for the quota', () => {
    const specs = bedrockQuota({ tokensPerMinute: 400_000, requestsPerMinute: 200 });
    expect(specs).toEqual([
      {
        counts: 'tokens',
        name: 'bedrock_quota',
        limit: expect.objectContaining({ shape: 'sliding_window', limit: 400_000, windowMs: 60_000 }),
      },
      {
        counts: 'requests',
        name: 'bedrock_quota',
        limit: expect.objectContaining({ shape: 'sliding_window', limit: 200, windowMs: 60_000 }),
      },
    ]);
    expect(specs.map((s) => limitCode('global', s))).toEqual([
      'global_tokens_bedrock_quota',
      'global_requests_bedrock_quota',
    ]);
  });

  it.each([
    [1, undefined],
    [5, 5],
    [2.5, 2.5],
  ])(
    'with an output burndown of %s, the token limit is the whole quota and weighs output by it',
    (outputBurndown, weight) => {
      const [tokens] = bedrockQuota({ tokensPerMinute: 1_000_000, outputBurndown });
      expect(tokens!.limit).toMatchObject({ limit: 1_000_000 });
      expect(tokens!.outputWeight).toBe(weight);
    },
  );

  it.each<[string, Parameters<typeof bedrockQuota>[0], RegExp]>([
    [
      'the token quota is not a whole number',
      { tokensPerMinute: 0.5 },
      /globalLimits\[0\]: bedrockQuota\(\{ tokensPerMinute: 0\.5 \}\): tokensPerMinute is 0\.5; give the quota as a whole number >= 1/,
    ],
    [
      'the request quota is zero',
      { tokensPerMinute: 10, requestsPerMinute: 0 },
      /globalLimits\[0\]: bedrockQuota\(\{ tokensPerMinute: 10, requestsPerMinute: 0 \}\): requestsPerMinute is 0/,
    ],
    [
      'the burndown is past what a limit takes',
      { tokensPerMinute: 10, outputBurndown: 500 },
      /globalLimits\[0\]: bedrockQuota\(\{ tokensPerMinute: 10, outputBurndown: 500 \}\): outputBurndown is 500; give at most 100/,
    ],
    [
      'the burndown is below 1',
      { tokensPerMinute: 10, outputBurndown: 0.2 },
      /globalLimits\[0\]: bedrockQuota\(\{ tokensPerMinute: 10, outputBurndown: 0\.2 \}\): outputBurndown is 0\.2; give quota tokens per/,
    ],
  ])('is refused by the construct, after its path, when %s', (_name, quota, message) => {
    const limits = bedrockQuota(quota); // a helper never throws: the construct reports what it was given
    const stack = new Stack(new App(), 'Quota');
    expect(() => new LlmRateLimiter(stack, 'Limiter', { ...bedrockProps, globalLimits: limits })).toThrow(
      new RegExp(`Quota/Limiter: ${message.source}`),
    );
  });

  it('is accepted by the construct beside other global limits', () => {
    const stack = new Stack(new App(), 'Quota', { env: { account: '123456789012', region: 'us-east-1' } });
    expect(
      () =>
        new LlmRateLimiter(stack, 'Limiter', {
          ...bedrockProps,
          globalLimits: [
            usdPerDay(100),
            ...bedrockQuota({ tokensPerMinute: 200_000, requestsPerMinute: 200, outputBurndown: 5 }),
          ],
        }),
    ).not.toThrow();
  });
});
