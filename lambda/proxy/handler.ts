import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { Brake } from '../authorizer/brake';
import { Directory } from '../authorizer/directory';
import { errorBody } from '../engine/contract';
import { Limiter } from '../engine/limiter';
import { parseConfig } from '../engine/plans';
import { LimitStore } from '../engine/store';
import { handleProxy, type ProxyDeps } from './proxy';
import { SecretValue } from './secret';

/** One JSON line per event; LIMITER_LOG=errors keeps only errors, LIMITER_LOG=off none (benchmarks). */
const log = (entry: Record<string, unknown>): void => {
  const mode = process.env.LIMITER_LOG;
  if (mode === 'off' || (mode === 'errors' && entry.level !== 'error')) return;
  console.log(JSON.stringify(entry));
};
const PENDING = Symbol('settlement');
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
      const { settlement, ...response } = await handleProxy(event, deps, context.awsRequestId);
      if (settlement) (context as WithSettlement)[PENDING] = settlement;
      return response;
    });
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/** Built once per container from the environment (no secret is ever in it: only the secret's id). */
export function proxyDepsFromEnvironment(): ProxyDeps {
  const tableName = required('TABLE_NAME');
  // Written out as process.env.LIMITER_CONFIG so the construct's bundler can compile the config in.
  const config = parseConfig(JSON.parse(process.env.LIMITER_CONFIG ?? required('LIMITER_CONFIG')));
  const dynamo = new DynamoDBClient({ maxAttempts: 2 });
  const store = new LimitStore({ client: dynamo, tableName, clockSkewMs: Number(process.env.CLOCK_SKEW_MS ?? 0) });
  const secret = new SecretValue(new SecretsManagerClient({}), required('UPSTREAM_API_KEY_SECRET'));
  return {
    config,
    limiter: new Limiter({ store, config, log }),
    directory: new Directory({ client: dynamo, tableName, cacheMs: Number(process.env.KEY_CACHE_TTL_SECONDS ?? 30) * 1000 }),
    brake: new Brake({ client: new SSMClient({ maxAttempts: 2, requestHandler: { requestTimeout: 1_000 } }), parameterName: required('BRAKE_PARAMETER_NAME'), cacheMs: Number(process.env.BRAKE_CACHE_TTL_SECONDS ?? 5) * 1000, coldStart: process.env.BRAKE_COLD_START === 'braked' ? 'braked' : 'released', log }),
    upstream: {
      baseUrl: required('UPSTREAM_BASE_URL'),
      apiKey: () => secret.get(),
      firstByteTimeoutMs: Number(process.env.UPSTREAM_TIMEOUT_MS ?? 60_000),
      idleTimeoutMs: Number(process.env.UPSTREAM_IDLE_TIMEOUT_MS ?? 60_000),
    },
    brakeRetryAfterSeconds: Number(process.env.BRAKE_RETRY_AFTER_SECONDS ?? 60),
    log,
  };
}
