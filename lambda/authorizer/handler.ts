import middy from '@middy/core';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import { Limiter } from '../engine/limiter';
import { parseConfig } from '../engine/plans';
import { LimitStore } from '../engine/store';
import { type AuthorizerDeps, authorize } from './authorize';
import { Brake } from './brake';
import { Directory } from './directory';

/** One JSON line per event; LIMITER_LOG=errors keeps only errors, LIMITER_LOG=off none (benchmarks). */
const log = (entry: Record<string, unknown>): void => {
  const mode = process.env.LIMITER_LOG;
  if (mode === 'off' || (mode === 'errors' && entry.level !== 'error')) return;
  console.log(JSON.stringify(entry));
};

/**
 * Errors leave the authorizer as one of two things API Gateway understands: 'Unauthorized'
 * (401, the UNAUTHORIZED gateway response) or anything else (AUTHORIZER_FAILURE, which the
 * construct maps to 503). The log gets the error's class and the request id, never a header.
 */
export function authorizerErrors(write: (entry: Record<string, unknown>) => void = log): middy.MiddlewareObj<APIGatewayRequestAuthorizerEvent, APIGatewayAuthorizerResult, Error, Context> {
  return {
    onError: async (request) => {
      if (request.error?.message === 'Unauthorized') return;
      write({ level: 'error', requestId: request.context.awsRequestId, message: 'authorizer failed', error: request.error?.name });
      request.error = new Error('Rate limiter unavailable');
    },
  };
}

export function createHandler(deps: AuthorizerDeps) {
  return middy<APIGatewayRequestAuthorizerEvent, APIGatewayAuthorizerResult, Error, Context>()
    .use(authorizerErrors(deps.log))
    .handler((event, context) => authorize(event, deps, context.awsRequestId));
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/** Built once per container: AWS clients, caches and the parsed configuration live across invocations. */
export function depsFromEnvironment(): AuthorizerDeps {
  const tableName = required('TABLE_NAME');
  // Written out as process.env.LIMITER_CONFIG so the construct's bundler can compile the config in.
  const config = parseConfig(JSON.parse(process.env.LIMITER_CONFIG ?? required('LIMITER_CONFIG')));
  const dynamo = new DynamoDBClient({ maxAttempts: 2 });
  const store = new LimitStore({ client: dynamo, tableName, clockSkewMs: Number(process.env.CLOCK_SKEW_MS ?? 0) });
  const brakeSeconds = Number(process.env.BRAKE_RETRY_AFTER_SECONDS ?? 60);
  return {
    config,
    limiter: new Limiter({ store, config, log }),
    directory: new Directory({ client: dynamo, tableName, cacheMs: Number(process.env.KEY_CACHE_TTL_SECONDS ?? 30) * 1000 }),
    brake: new Brake({
      client: new SSMClient({ maxAttempts: 2, requestHandler: { requestTimeout: 1_000 } }),
      parameterName: required('BRAKE_PARAMETER_NAME'),
      cacheMs: Number(process.env.BRAKE_CACHE_TTL_SECONDS ?? 5) * 1000,
      coldStart: process.env.BRAKE_COLD_START === 'braked' ? 'braked' : 'released',
      log,
    }),
    brakeRetryAfterSeconds: brakeSeconds,
    log,
  };
}
