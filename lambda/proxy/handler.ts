import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import middy from '@middy/core';
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { errorBody } from '../engine/contract';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
import { commonDepsFromEnvironment, log, required } from '../runtime/environment';
import { handleProxy, type ProxyDeps } from './proxy';
import { SecretValue } from './secret';

const PENDING = Symbol('settlement');
/**
 * Time kept back from the invocation's timeout for settlement (up to 5 attempts with backoff, each
 * within DynamoDB's 1 s deadline) and the stream's last event (a quarter of the time for timeouts
 * under 40 s). A stream still running then is cut off, settled and closed with a `stream_deadline`
 * event.
 */
export const SETTLE_MARGIN_MS = 10_000;
type WithSettlement = Context & { [PENDING]?: Promise<void> };

/**
 * Unexpected errors become a 500 in OpenAI's shape with a generic message; the log gets the
 * error's class and the request id (never a key, a prompt or a completion).
 */
export function proxyErrors(write: (entry: Record<string, unknown>) => void = log): middy.MiddlewareObj<APIGatewayProxyEvent, unknown, Error, Context> {
  return {
    onError: async (request) => {
      write({ level: 'error', requestId: request.context.awsRequestId, message: 'proxy failed', error: request.error?.name });
      request.response = { statusCode: 500, headers: { 'content-type': 'application/json' }, body: errorBody(`Internal error (request ${request.context.awsRequestId}).`, 'api_error', 'internal_error') };
    },
  };
}

/**
 * A response-streaming handler (awslambda.streamifyResponse via middy): the status and headers go
 * out in HttpResponseStream's prelude, then the body chunks as they come. The invocation stays
 * alive until the request is settled (requestEnd), even after the client has gone.
 */
export function createProxyHandler(deps: ProxyDeps) {
  return middy<APIGatewayProxyEvent, unknown, Error, Context>({
    executionMode: executionModeStreamifyResponse,
    timeoutEarlyInMillis: 0,
    requestEnd: async (request) => {
      await (request.context as WithSettlement)[PENDING];
    },
  })
    .use(proxyErrors(deps.log))
    .handler(async (event, context) => {
      // Stop the upstream early enough to settle and close the stream before Lambda's timeout ends the invocation.
      const remaining = context.getRemainingTimeInMillis();
      const deadlineAt = Date.now() + remaining - Math.min(SETTLE_MARGIN_MS, remaining / 4);
      const { settlement, ...response } = await handleProxy(event, deps, context.awsRequestId, deadlineAt);
      if (settlement) (context as WithSettlement)[PENDING] = settlement;
      return response;
    });
}

/** Built once per container from the environment (no secret is ever in it: only the secret's id). */
export function proxyDepsFromEnvironment(): ProxyDeps {
  required('BRAKE_PARAMETER_NAME');
  const { config, limiter, directory, brake, brakeRetryAfterSeconds, log } = commonDepsFromEnvironment();
  const secret = new SecretValue(new SecretsManagerClient(clientConfig(CLIENT_TIMEOUTS.secretsManager)), required('UPSTREAM_API_KEY_SECRET'), 300_000, Date.now, CLIENT_TIMEOUTS.secretsManager.deadlineMs);
  return {
    config,
    limiter,
    directory,
    brake,
    brakeRetryAfterSeconds,
    upstream: {
      baseUrl: required('UPSTREAM_BASE_URL'),
      apiKey: () => secret.get(),
      firstByteTimeoutMs: Number(process.env.UPSTREAM_TIMEOUT_MS ?? 60_000),
      idleTimeoutMs: Number(process.env.UPSTREAM_IDLE_TIMEOUT_MS ?? 60_000),
      bodyTimeoutMs: Number(process.env.UPSTREAM_BODY_TIMEOUT_MS ?? 60_000),
    },
    log,
  };
}
