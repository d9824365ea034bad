import middy from '@middy/core';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import { commonDepsFromEnvironment, log, required } from '../runtime/environment';
import { type AuthorizerDeps, authorize } from './authorize';


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

/** Built once per container: AWS clients, caches and the parsed configuration live across invocations. */
export function depsFromEnvironment(): AuthorizerDeps {
  required('BRAKE_PARAMETER_NAME');
  const { config, limiter, directory, brake, brakeRetryAfterSeconds, log } = commonDepsFromEnvironment();
  return { config, limiter, directory, brake, brakeRetryAfterSeconds, log };
}
