/**
 * The one error middleware every function uses. An unexpected error is logged with its class and
 * the request id (never a header, a key, a prompt or a completion), then answered as the function
 * must: the proxy and the limits function with a 500 in OpenAI's error shape and a generic message;
 * the authorizer by failing with a fixed message, which API Gateway turns into its 503 (it counts
 * that as `LimiterUnavailable`, the metric the outage alarm watches).
 */
import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { errorBody } from '../engine/contract';

type Log = (entry: Record<string, unknown>) => void;

export interface UnexpectedErrors<TResult> {
  /** Names the function in the log line: `<name> failed`. */
  readonly name: string;
  readonly log: Log;
  /** Errors that are answers, not failures (the authorizer's 'Unauthorized'): passed on untouched. */
  readonly expected?: (error: Error) => boolean;
  /** The answer to give; without one, the invocation fails with `failWith` instead. */
  readonly answer?: (requestId: string) => TResult;
  /** What is done besides logging (a metric). */
  readonly also?: () => void;
  /** The message the invocation fails with when there is no answer. */
  readonly failWith?: string;
}

export function unexpectedErrors<TEvent, TResult>(
  o: UnexpectedErrors<TResult>,
): middy.MiddlewareObj<TEvent, TResult, Error, Context> {
  return {
    onError: async (request) => {
      if (request.error && o.expected?.(request.error)) return;
      o.log({
        level: 'error',
        requestId: request.context.awsRequestId,
        message: `${o.name} failed`,
        error: request.error?.name,
      });
      o.also?.();
      if (o.answer) request.response = o.answer(request.context.awsRequestId);
      else request.error = new Error(o.failWith ?? 'Internal error');
    },
  };
}

/** A 500 in OpenAI's error shape that says nothing but the request id. */
export const internalError = (requestId: string) => ({
  statusCode: 500,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: errorBody(`Internal error (request ${requestId}).`, 'api_error', 'internal_error'),
});
