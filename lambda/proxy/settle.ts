/**
 * Step 8, settle: what a request used, from the upstream's usage where believable and its bound
 * where not, applied once on every layer (a retried settlement is idempotent, keyed by the
 * request id), with the outcome logged and counted.
 */
import type { Readable } from 'node:stream';
import { errorBody, type ErrorType } from '../engine/contract';
import { LimiterError } from '../engine/errors';
import type { Amounts, Identity, Limiter, TenantRecord, Verdict } from '../engine/limiter';
import type { LimiterConfig } from '../engine/plans';
import type { Brake } from '../runtime/brake';
import type { Directory } from '../runtime/directory';
import { type Ledger, ledgerZone } from '../engine/ledger';
import type { UpstreamCooldown } from './upstream-feedback';
import { type MetricEvent, putMetrics } from '../runtime/metrics';
import { costMicroUsd, type Rates } from './pricing';
import type { Upstream } from './upstreams';
import { type ReportedUsage, type SeenOutput, settledUsage, type UsageBounds } from './usage';

export interface ProxyDeps {
  readonly config: LimiterConfig;
  readonly limiter: Limiter;
  readonly directory: Directory;
  readonly brake: Brake;
  readonly upstream: Upstream;
  readonly brakeRetryAfterSeconds?: number;
  /** Settlement attempts when DynamoDB hiccups, with exponential backoff from settleBackoffMs. @default 5, 100 */
  readonly settleAttempts?: number;
  readonly settleBackoffMs?: number;
  readonly clock?: () => number;
  readonly log: (entry: Record<string, unknown>) => void;
  /** Where EMF metric lines go. @default putMetrics (stdout, which CloudWatch reads) */
  readonly metrics?: (event: MetricEvent) => void;
  /** The usage ledger this container writes (lambda/engine/ledger.ts); none is kept without it. */
  readonly ledger?: Ledger;
  /** The upstream's rate limits fed back (lambda/proxy/upstream-feedback.ts); none without it. */
  readonly cooldown?: UpstreamCooldown;
}

export interface ProxyResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string | Readable;
  /** Resolves once the request is settled; the handler keeps the invocation alive until then. */
  readonly settlement?: Promise<void>;
}

/** An error answer in OpenAI's shape. */
export function answer(
  status: number,
  headers: Record<string, string>,
  message: string,
  type: ErrorType,
  code: string,
  param: string | null = null,
): ProxyResponse {
  return {
    statusCode: status,
    headers: { ...headers, 'content-type': 'application/json' },
    body: errorBody(message, type, code, param),
  };
}

/** Who a log line is about. */
export type Who = {
  readonly requestId: string;
  readonly route: string;
  readonly tenant: string;
  readonly user: string;
};

export interface Reservation {
  readonly model: string;
  readonly identity: Identity;
  readonly tenant: TenantRecord;
  readonly route: string;
  readonly shard: number;
  /** The bound: the input bound plus the output cap sent upstream, at the dearest rates the request can use. */
  readonly reserved: Amounts;
  readonly failedOpen: Verdict['failedOpen'];
  readonly admittedAt: number;
  readonly spending: Verdict['spending'];
}

export const NOTHING: Amounts = { tokens: 0, microUsd: 0 };

const metricsOf = (deps: ProxyDeps) => deps.metrics ?? putMetrics;

/** Settles with retries and backoff; settlement is idempotent (keyed by the request id). */
export async function settle(
  deps: ProxyDeps,
  requestId: string,
  reservation: Reservation,
  used: Amounts,
  why: string,
): Promise<void> {
  const attempts = deps.settleAttempts ?? 5;
  let settled = false;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const result = await deps.limiter.settle(requestId, reservation, used);
      if (result === 'settled') {
        metricsOf(deps)({
          dimensions: {
            Function: 'proxy',
            Tenant: reservation.identity.tenant,
            Endpoint: reservation.route,
            Model: reservation.model,
          },
          metrics: {
            TokensSettled: { value: used.tokens, unit: 'Count' },
            MicroUsdSettled: { value: used.microUsd, unit: 'None' },
            ReservationError: { value: reservation.reserved.tokens - used.tokens, unit: 'Count' },
            // The input pre-count against what was settled for it (reported, or the bound when no usage
            // came): per model, SUM(InputReserved) / SUM(InputSettled) is how far the pre-count runs.
            InputReserved: {
              value: reservation.reserved.tokens - (reservation.reserved.outputTokens ?? 0),
              unit: 'Count',
            },
            InputSettled: { value: used.tokens - (used.outputTokens ?? 0), unit: 'Count' },
          },
          properties: { user: reservation.identity.user, requestId, why },
        });
      }
      deps.log({
        requestId,
        outcome: 'settled',
        why,
        result,
        tenant: reservation.identity.tenant,
        user: reservation.identity.user,
        reservedTokens: reservation.reserved.tokens,
        usedTokens: used.tokens,
        usedMicroUsd: used.microUsd,
        attempts: attempt,
      });
      settled = true;
      break;
    } catch (err) {
      if (!(err instanceof LimiterError)) throw err;
      deps.log({
        requestId,
        level: attempt === attempts ? 'error' : 'warn',
        outcome: 'settle_retry',
        attempt,
        error: err.name,
        detail: err.message,
      });
      metricsOf(deps)({ dimensions: { Function: 'proxy' }, metrics: { SettleRetries: { value: 1, unit: 'Count' } } });
      if (attempt < attempts)
        await new Promise((r) => setTimeout(r, (deps.settleBackoffMs ?? 100) * 2 ** (attempt - 1)));
    }
  }
  if (!settled) {
    deps.log({
      requestId,
      level: 'error',
      outcome: 'settle_failed',
      message: 'settlement gave up: the reservation stands (conservative)',
    });
    metricsOf(deps)({ dimensions: { Function: 'proxy' }, metrics: { SettleFailures: { value: 1, unit: 'Count' } } });
  }
  // What was used is what the tenant is billed for, settled on its buckets or not.
  recordUse(deps, reservation, used);
}

/** What a request used, into the ledger: on the day it was admitted, in its tenant's ledger zone. */
function recordUse(deps: ProxyDeps, reservation: Reservation, used: Amounts): void {
  deps.ledger?.recordUse(
    {
      tenant: reservation.identity.tenant,
      user: reservation.identity.user,
      model: reservation.model,
      timeZone: ledgerZone(deps.limiter.planOf(reservation.tenant)),
    },
    reservation.admittedAt,
    {
      inputTokens: used.tokens - (used.outputTokens ?? 0),
      outputTokens: used.outputTokens ?? 0,
      cachedTokens: used.cachedTokens ?? 0,
      reasoningTokens: used.reasoningTokens ?? 0,
      microUsd: used.microUsd,
    },
  );
}

/** One metric of the proxy's, with a log line at `level`. */
function flag(deps: ProxyDeps, who: Who, metric: string, entry: Record<string, unknown>): void {
  deps.log({ ...who, level: 'warn', ...entry });
  metricsOf(deps)({ dimensions: { Function: 'proxy' }, metrics: { [metric]: { value: 1, unit: 'Count' } } });
}

/**
 * What to settle: the upstream's usage where it is believable, else the request's bound; output
 * never below what was seen. Usage not believed, missing, or past the cap is logged and counted.
 */
export function usedAmounts(
  deps: ProxyDeps,
  who: Who,
  reported: ReportedUsage | undefined,
  seen: SeenOutput,
  bounds: UsageBounds,
  rates: Rates,
): Amounts {
  const usage = settledUsage(reported, seen, bounds);
  if (usage.rejected.length)
    flag(deps, who, 'UsageRejected', {
      outcome: 'usage_rejected',
      fields: usage.rejected,
      message: 'the upstream reported usage that cannot be right: settled at the bound',
    });
  if (usage.unknown && !seen.provesOutput)
    flag(deps, who, 'UsageUnknown', {
      outcome: 'usage_unknown',
      message: 'no usage arrived and the answer does not prove its size: settled at the bound',
    });
  if (usage.overCap)
    flag(deps, who, 'UpstreamIgnoredCap', {
      outcome: 'upstream_ignored_cap',
      reportedOutput: usage.output,
      cap: bounds.output,
      message: 'the upstream produced more than the output cap it was sent: check the model’s outputCapField',
    });
  return {
    tokens: usage.input + usage.output,
    outputTokens: usage.output,
    microUsd: costMicroUsd(usage, rates),
    cachedTokens: usage.cachedInput,
    reasoningTokens: usage.reasoning,
  };
}
