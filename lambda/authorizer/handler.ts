import middy from '@middy/core';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import { commonDepsFromEnvironment, log, required } from '../runtime/environment';
import { unexpectedErrors } from '../runtime/errors';
import { type MetricEvent, putMetrics } from '../runtime/metrics';
import { type AuthorizerDeps, authorize } from './authorize';

/**
 * Errors leave the authorizer as one of two things API Gateway understands: 'Unauthorized'
 * (401, the UNAUTHORIZED gateway response) or anything else (AUTHORIZER_CONFIGURATION_ERROR or
 * AUTHORIZER_FAILURE, both mapped to 503 by the construct). The second is an outage: it is counted
 * as `LimiterUnavailable`, the metric the outage alarm watches (a bad key is a Lambda error too,
 * so Lambda's Errors metric would page on every scanner).
 */
export function authorizerErrors(
  write: (entry: Record<string, unknown>) => void = log,
  metrics: (event: MetricEvent) => void = putMetrics,
): middy.MiddlewareObj<APIGatewayRequestAuthorizerEvent, APIGatewayAuthorizerResult, Error, Context> {
  return unexpectedErrors({
    name: 'authorizer',
    log: write,
    expected: (error) => error.message === 'Unauthorized',
    also: () =>
      metrics({ dimensions: { Function: 'authorizer' }, metrics: { LimiterUnavailable: { value: 1, unit: 'Count' } } }),
    failWith: 'Rate limiter unavailable',
  });
}

export function createHandler(deps: AuthorizerDeps) {
  return middy<APIGatewayRequestAuthorizerEvent, APIGatewayAuthorizerResult, Error, Context>()
    .use(authorizerErrors(deps.log, deps.metrics))
    .handler(async (event, context) => {
      const startedAt = Date.now();
      try {
        return await authorize(event, deps, context.awsRequestId);
      } finally {
        // Denial counts are written before the sandbox can freeze (lambda/engine/ledger.ts).
        await deps.ledger?.endInvocation(startedAt);
      }
    });
}

/** Built once per container: AWS clients, caches and the parsed configuration live across invocations. */
export function depsFromEnvironment(): AuthorizerDeps {
  required('BRAKE_PARAMETER_NAME');
  const { config, limiter, directory, brake, brakeRetryAfterSeconds, log, ledger } = commonDepsFromEnvironment();
  return { config, limiter, directory, brake, brakeRetryAfterSeconds, log, ...(ledger ? { ledger } : {}) };
}
