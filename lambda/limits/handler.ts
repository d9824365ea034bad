import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import type { Directory } from '../authorizer/directory';
import { errorBody, MISCONFIGURED } from '../engine/contract';
import { InvalidLimitError, UnknownPlanError } from '../engine/errors';
import type { Limiter } from '../engine/limiter';
import type { LimiterConfig } from '../engine/plans';
import type { LimitStore } from '../engine/store';
import { MODELS_ROUTE } from '../gateway/api';
import { commonDepsFromEnvironment } from '../runtime/environment';
import { usageOf } from './usage';

export interface LimitsDeps {
  readonly config: LimiterConfig;
  readonly store: LimitStore;
  readonly limiter: Limiter;
  readonly directory: Directory;
  readonly namespace?: string;
  readonly log: (entry: Record<string, unknown>) => void;
}

const json = (statusCode: number, body: string): APIGatewayProxyResult => ({ statusCode, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body });

/** GET /v1/limits: the caller's plan and each limit with limit / remaining / reset, so a UI can show usage before the wall. */
export function createLimitsHandler(deps: LimitsDeps) {
  return middy<APIGatewayProxyEvent, APIGatewayProxyResult, Error, Context>()
    .use({
      onError: async (request) => {
        deps.log({ level: 'error', requestId: request.context.awsRequestId, message: 'limits failed', error: request.error?.name });
        request.response = json(500, errorBody(`Internal error (request ${request.context.awsRequestId}).`, 'api_error', 'internal_error'));
      },
    })
    .handler(async (event, context) => {
      const auth = (event.requestContext?.authorizer ?? {}) as Record<string, unknown>;
      if (typeof auth.tenant !== 'string' || typeof auth.user !== 'string') return json(401, errorBody('No caller identity reached this endpoint.', 'authentication_error', 'no_identity'));
      const route = event.resource ?? event.path;
      deps.log({ requestId: context.awsRequestId, route, tenant: auth.tenant, user: auth.user, outcome: 'served' });
      if (route === MODELS_ROUTE) return json(200, JSON.stringify(modelList(deps.config)));
      // A tenant whose configuration is broken is the operators' problem: 500 with a code that says which.
      let tenant;
      try {
        tenant = await deps.directory.tenant(auth.tenant);
      } catch (err) {
        if (!(err instanceof InvalidLimitError)) throw err;
        return json(500, errorBody(MISCONFIGURED.tenant_config_invalid, 'api_error', 'tenant_config_invalid'));
      }
      if (!tenant) return json(500, errorBody(MISCONFIGURED.tenant_unknown, 'api_error', 'tenant_unknown'));
      try {
        return json(200, JSON.stringify(await usageOf(deps.store, deps.limiter, deps.config, tenant, auth.user, deps.namespace)));
      } catch (err) {
        if (!(err instanceof UnknownPlanError)) throw err;
        return json(500, errorBody(MISCONFIGURED.plan_unknown, 'api_error', 'plan_unknown'));
      }
    });
}

/**
 * GET /v1/models in OpenAI's list shape: every model some endpoint allows (any key may call any of
 * them). It reads no bucket: the authorizer meters it with /v1/limits, on the caller's own
 * per-minute budget for reads, never against model limits.
 */
export function modelList(config: LimiterConfig): { object: 'list'; data: { id: string; object: 'model'; created: number; owned_by: string }[] } {
  const ids = [...new Set(Object.values(config.endpoints).flatMap((e) => Object.keys(e.models)))].sort();
  return { object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 0, owned_by: 'llm-rate-limiter' })) };
}

export function limitsDepsFromEnvironment(): LimitsDeps {
  const { config, store, limiter, directory, log } = commonDepsFromEnvironment();
  return { config, store, limiter, directory, log };
}
