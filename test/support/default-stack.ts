/** A stack with the construct and only the props it requires: every optional prop at its default. */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { LlmRateLimiter, requestsPerMinute } from '../../lib';

export function defaultTemplate(): Template {
  const stack = new Stack(new App(), 'Defaults');
  new LlmRateLimiter(stack, 'Limiter', {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'k'),
    endpoints: { '/v1/chat/completions': { models: { m: { inputPerMillion: 1, outputPerMillion: 2 } } } },
    plans: { team: { user: [requestsPerMinute(60)] } },
  });
  return Template.fromStack(stack);
}
