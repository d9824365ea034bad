import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { type Brake, isBraked } from '../runtime/brake';
import { type Directory, headerValues } from '../runtime/directory';
import { errorBody, MISCONFIGURED } from '../engine/contract';
import { InvalidLimitError, UnknownPlanError } from '../engine/errors';
import type { Limiter, TenantRecord } from '../engine/limiter';
import type { LimiterConfig } from '../engine/plans';
import type { LimitStore } from '../engine/store';
import { type MonthToDate, MonthToDateReader } from '../engine/ledger';
import { MODELS_ROUTE, USAGE_PAGE_ROUTE } from '../gateway/api';
import { commonDepsFromEnvironment } from '../runtime/environment';
import { internalError, unexpectedErrors } from '../runtime/errors';
import { PAGE_HEADERS, prefersHtml, usagePage } from './page';
import { usageOf } from './usage';

export interface LimitsDeps {
  readonly config: LimiterConfig;
  readonly store: LimitStore;
  readonly limiter: Limiter;
  readonly directory: Directory;
  /** The brake, so that people see when the operators have paused the service. */
  readonly brake?: Brake;
  readonly namespace?: string;
  readonly log: (entry: Record<string, unknown>) => void;
  /** The usage ledger's reader: the tenant's month so far is shown from it. */
  readonly months?: MonthToDateReader;
}

const json = (statusCode: number, body: string): APIGatewayProxyResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store', vary: 'Accept' },
  body,
});
const html = (body: string): APIGatewayProxyResult => ({
  statusCode: 200,
  headers: { ...PAGE_HEADERS, vary: 'Accept' },
  body,
});

/**
 * GET /v1/limits: the caller's plan and each limit with limit / remaining / reset, and the brake's
 * state, so a UI can show usage before the wall; a browser (Accept: text/html) gets the usage page
 * with them in it. GET /v1/usage: that page without data, for a pasted key. GET /v1/models.
 */
export function createLimitsHandler(deps: LimitsDeps) {
  return middy<APIGatewayProxyEvent, APIGatewayProxyResult, Error, Context>()
    .use(unexpectedErrors({ name: 'limits', log: deps.log, answer: internalError }))
    .handler(async (event, context) => {
      const route = event.resource ?? event.path;
      // The page holds no data: it needs no identity (API Gateway runs no authorizer for it).
      if (route === USAGE_PAGE_ROUTE) return html(usagePage());
      const auth = (event.requestContext?.authorizer ?? {}) as Record<string, unknown>;
      if (typeof auth.tenant !== 'string' || typeof auth.user !== 'string')
        return json(401, errorBody('No caller identity reached this endpoint.', 'authentication_error', 'no_identity'));
      deps.log({ requestId: context.awsRequestId, route, tenant: auth.tenant, user: auth.user, outcome: 'served' });
      if (route === MODELS_ROUTE) return json(200, JSON.stringify(modelList(deps.config)));
      // A tenant whose configuration is broken is the operators' problem: 500 with a code that says which.
      let tenant: TenantRecord | undefined;
      try {
        tenant = await deps.directory.tenant(auth.tenant);
      } catch (err) {
        if (!(err instanceof InvalidLimitError)) throw err;
        return json(500, errorBody(MISCONFIGURED.tenant_config_invalid, 'api_error', 'tenant_config_invalid'));
      }
      if (!tenant) return json(500, errorBody(MISCONFIGURED.tenant_unknown, 'api_error', 'tenant_unknown'));
      try {
        const [usage, brake, month] = await Promise.all([
          usageOf(deps.store, deps.limiter, deps.config, tenant, auth.user, deps.namespace),
          brakeOf(deps.brake),
          monthOf(deps, tenant, auth.user, context.awsRequestId),
        ]);
        const body = { ...usage, ...(brake ? { brake } : {}), ...(month ? { monthToDate: month } : {}) };
        return prefersHtml(headerValues(event.headers, event.multiValueHeaders, 'accept')[0])
          ? html(usagePage(body))
          : json(200, JSON.stringify(body));
      } catch (err) {
        if (!(err instanceof UnknownPlanError)) throw err;
        return json(500, errorBody(MISCONFIGURED.plan_unknown, 'api_error', 'plan_unknown'));
      }
    });
}

/** The tenant's month so far from the ledger; left out (and logged) when the ledger cannot be read. */
async function monthOf(
  deps: LimitsDeps,
  tenant: TenantRecord,
  user: string,
  requestId: string,
): Promise<MonthToDate | undefined> {
  if (!deps.months) return undefined;
  const plan = deps.limiter.planOf(tenant);
  try {
    return await deps.months.read(plan, tenant.id, user);
  } catch (err) {
    deps.log({ requestId, level: 'warn', outcome: 'ledger_unreadable', error: (err as Error).name });
    return undefined;
  }
}

/** The brake as people should see it: on or off, why, and until when. */
async function brakeOf(
  brake: Brake | undefined,
): Promise<{ engaged: boolean; reason?: string; until?: string } | undefined> {
  if (!brake) return undefined;
  const state = await brake.state();
  if (!isBraked(state, Date.now())) return { engaged: false };
  return {
    engaged: true,
    ...(state.reason ? { reason: state.reason } : {}),
    ...(state.until !== undefined ? { until: new Date(state.until).toISOString() } : {}),
  };
}

/**
 * GET /v1/models in OpenAI's list shape: every model some endpoint allows (any key may call any of
 * them). It reads no bucket: the authorizer meters it with /v1/limits, on the caller's own
 * per-minute budget for reads, never against model limits.
 */
export function modelList(config: LimiterConfig): {
  object: 'list';
  data: { id: string; object: 'model'; created: number; owned_by: string }[];
} {
  const ids = [...new Set(Object.values(config.endpoints).flatMap((e) => Object.keys(e.models)))].sort();
  return { object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 0, owned_by: 'llm-rate-limiter' })) };
}

export function limitsDepsFromEnvironment(): LimitsDeps {
  const { config, store, limiter, directory, brake, log, ledger } = commonDepsFromEnvironment();
  return {
    config,
    store,
    limiter,
    directory,
    brake,
    log,
    ...(ledger ? { months: new MonthToDateReader(ledger) } : {}),
  };
}
