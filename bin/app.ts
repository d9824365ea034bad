#!/usr/bin/env node
/**
 * Example app: one stack per environment, `npx cdk synth -c env=dev` (default) or `-c env=prod`.
 * Plans differ per environment; nothing here needs AWS credentials to synthesise.
 */
import { App, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { LlmRateLimiter, requestsPerMinute, tokensPerDay, tokensPerMinute, usdPerDay } from '../lib';

const app = new App();
const env = String(app.node.tryGetContext('env') ?? 'dev');
if (env !== 'dev' && env !== 'prod') throw new Error(`-c env=${env}: use dev or prod`);

const stack = new Stack(app, `LlmRateLimiter-${env}`, { description: `LLM rate limiter (${env})` });
const apiKeySecret = Secret.fromSecretNameV2(stack, 'UpstreamKey', `llm-rate-limiter/${env}/openai-api-key`);
const models = {
  'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  'gpt-4o': { inputPerMillion: 2.5, outputPerMillion: 10 },
};

new LlmRateLimiter(stack, 'Limiter', {
  upstreamBaseUrl: 'https://api.openai.com/v1',
  upstreamApiKeySecret: apiKeySecret,
  endpoints: {
    '/v1/chat/completions': { models },
    '/v1/embeddings': { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
  },
  plans:
    env === 'prod'
      ? {
          team: {
            tenant: [tokensPerDay(1_000_000), requestsPerMinute(600)],
            user: [tokensPerMinute(40_000), requestsPerMinute(60)],
            outputReservation: 1024,
          },
          enterprise: {
            tenant: [tokensPerDay(20_000_000), requestsPerMinute(6_000)],
            user: [tokensPerMinute(200_000), requestsPerMinute(300)],
            outputReservation: 2048,
          },
        }
      : {
          team: {
            tenant: [tokensPerDay(100_000), requestsPerMinute(120)],
            user: [tokensPerMinute(20_000), requestsPerMinute(30)],
            outputReservation: 512,
          },
        },
  globalLimits: [usdPerDay(env === 'prod' ? 2_000 : 20)],
  keyCacheTtl: Duration.seconds(30),
  alarms: { spendPerHourUsd: env === 'prod' ? 150 : 5 },
  ...(env === 'prod' ? { automaticBrake: { spendPerHourUsd: 300, brakeFor: Duration.hours(1) } } : {}),
  removalPolicy: env === 'prod' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
});

// cdk-nag's AwsSolutions pack runs on every synth; the construct acknowledges, with reasons, what it keeps.
if (app.node.tryGetContext('nag') !== 'off') Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
