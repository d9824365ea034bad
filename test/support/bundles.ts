import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { App, Stack } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { LlmRateLimiter, requestsPerMinute, tokensPerDay, usdPerDay } from '../../lib';

const run = promisify(execFile);

/** Synthesises a stack with the construct and returns where each function's bundle landed. */
export function synthBundles(): Record<'authorizer' | 'proxy' | 'limits', string> {
  const outdir = mkdtempSync(join(tmpdir(), 'llm-limiter-synth-'));
  const app = new App({ outdir, context: { 'aws:cdk:enable-asset-metadata': true } });
  const stack = new Stack(app, 'Bundles');
  new LlmRateLimiter(stack, 'Limiter', {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'openai-key'),
    endpoints: {
      '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
    },
    plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(60)] } },
    globalLimits: [usdPerDay(100)],
  });
  app.synth();
  const template = JSON.parse(readFileSync(join(outdir, 'Bundles.template.json'), 'utf8')) as {
    Resources: Record<string, { Type: string; Metadata?: Record<string, string> }>;
  };
  const bundles: Partial<Record<'authorizer' | 'proxy' | 'limits', string>> = {};
  for (const [id, r] of Object.entries(template.Resources)) {
    if (r.Type !== 'AWS::Lambda::Function' || !r.Metadata?.['aws:asset:path']) continue;
    const name = id.startsWith('LimiterAuthorizer') ? 'authorizer' : id.startsWith('LimiterProxy') ? 'proxy' : 'limits';
    bundles[name] = join(outdir, r.Metadata['aws:asset:path'], 'index.js');
  }
  return bundles as Record<'authorizer' | 'proxy' | 'limits', string>;
}

/**
 * Loads a bundle in a fresh Node process as Lambda's Node.js runtime would: the runtime's
 * streaming globals defined, the asset unpacked in LAMBDA_TASK_ROOT (config.json beside the
 * handler), and only the environment the construct sets. Resolves to the milliseconds load + init took.
 */
export async function loadBundle(file: string): Promise<{ ms: number; handlerType: string }> {
  // No NODE_PATH: the bundle carries its own AWS SDK (the version the tests ran), as deployed.
  const env = {
    PATH: process.env.PATH ?? '',
    LAMBDA_TASK_ROOT: dirname(file),
    TABLE_NAME: 't',
    BRAKE_PARAMETER_NAME: '/b',
    UPSTREAM_BASE_URL: 'https://api.openai.com/v1',
    UPSTREAM_API_KEY_SECRET: 'arn:aws:secretsmanager:us-east-1:0:secret:k',
    AWS_REGION: 'us-east-1',
  };
  const probe =
    'globalThis.awslambda = { streamifyResponse: (h) => h, HttpResponseStream: { from: (s) => s } }; const t = ' +
    'performance.now(); const m = require(process.argv[1]); process.stdout.write(JSON.stringify({ ms: ' +
    'performance.now() - t, handlerType: typeof m.handler }));';
  return JSON.parse((await run(process.execPath, ['-e', probe, file], { env })).stdout) as {
    ms: number;
    handlerType: string;
  };
}
