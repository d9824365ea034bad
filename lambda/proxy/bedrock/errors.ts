/**
 * Bedrock's refusals -> the statuses an upstream answers with, in OpenAI's error shape, chosen
 * for how the proxy treats each status (upstream-errors.ts): a refusal that billed nothing gets a
 * status the proxy refunds (400, 403, 429), a failure that may follow a generation a 5xx (settled
 * at the bound). Nothing of AWS's own text reaches the body except a ValidationException's
 * message when it is plain prose (no ARN, account id, request id or anything opaque).
 * Statuses: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors
 */
import {
  AccessDeniedException,
  BedrockRuntimeServiceException,
  InternalServerException,
  ModelErrorException,
  ModelNotReadyException,
  ModelTimeoutException,
  ResourceNotFoundException,
  ServiceQuotaExceededException,
  ServiceUnavailableException,
  ThrottlingException,
  ValidationException,
} from '@aws-sdk/client-bedrock-runtime';
import { type ErrorType, errorBody } from '../../engine/contract';
import { safeUpstreamError } from '../upstream-errors';
import type { RequestError } from '../validate';

/**
 * Seconds a client is told to wait (Bedrock sends no Retry-After). Throttling: on-demand quotas are
 * per minute (requests and tokens) and free up as the minute rolls on, so a few seconds usually
 * suffice. A service quota exceeded: a minute, a quota's window. A model not ready or a service
 * unavailable: AWS's SDKs retry these themselves within seconds.
 * https://docs.aws.amazon.com/bedrock/latest/userguide/quotas.html
 */
export const RETRY_AFTER_SECONDS = { throttled: 10, quota: 60, unavailable: 5 } as const;

const AWS_INTERNALS = /arn:aws|\b\d{12}\b|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

function refusal(
  status: number,
  message: string,
  type: ErrorType,
  code: string,
  retryAfter?: number,
  param: string | null = null,
): Response {
  return new Response(errorBody(message, type, code, param), {
    status,
    headers: {
      'content-type': 'application/json',
      ...(retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {}),
    },
  });
}

const throttled = (): Response =>
  refusal(
    429,
    'The model provider is throttling this service.',
    'rate_limit_exceeded',
    'upstream_throttled',
    RETRY_AFTER_SECONDS.throttled,
  );

/** A request the adapter cannot translate: refused before anything reached Bedrock. */
export const untranslatable = (err: RequestError): Response =>
  refusal(err.status, err.message, 'invalid_request_error', err.code, undefined, err.param);

/** A ValidationException's message, when it is safe to show. */
function validationMessage(message: string): string {
  const generic = 'The model provider rejected the request as invalid.';
  if (AWS_INTERNALS.test(message)) return generic;
  return safeUpstreamError(JSON.stringify({ error: { message } }), 400, generic).message;
}

/** A Bedrock exception -> the upstream's answer; anything else is not Bedrock's answer (undefined). */
export function bedrockRefusal(err: unknown): Response | undefined {
  if (!(err instanceof BedrockRuntimeServiceException)) return undefined;
  if (err instanceof ThrottlingException) return throttled();
  if (err instanceof ServiceQuotaExceededException)
    return refusal(
      429,
      'This service’s quota at the model provider is used up for now.',
      'rate_limit_exceeded',
      'upstream_quota_exceeded',
      RETRY_AFTER_SECONDS.quota,
    );
  if (err instanceof ValidationException)
    return refusal(400, validationMessage(err.message), 'invalid_request_error', 'upstream_validation');
  // The operators' configuration (the role's permissions, model access, the model id): refunded as a 403.
  if (err instanceof AccessDeniedException || err instanceof ResourceNotFoundException)
    return refusal(
      403,
      'The model provider refused this service access to the model; the operators must act.',
      'api_error',
      err instanceof AccessDeniedException ? 'upstream_access_denied' : 'upstream_model_not_found',
    );
  if (err instanceof ModelNotReadyException || err instanceof ServiceUnavailableException)
    return refusal(
      503,
      'The model is not available right now.',
      'service_unavailable',
      'upstream_unavailable',
      RETRY_AFTER_SECONDS.unavailable,
    );
  if (err instanceof ModelTimeoutException)
    return refusal(504, 'The model took too long to answer.', 'api_error', 'upstream_timeout');
  if (err instanceof InternalServerException || err instanceof ModelErrorException)
    return refusal(502, 'The model provider failed.', 'api_error', 'upstream_error');
  // Not modelled by the SDK (a signature or credential refusal is a 403): by its HTTP status.
  const status = err.$metadata.httpStatusCode ?? 500;
  if (status === 401 || status === 403)
    return refusal(
      403,
      'The model provider refused this service’s credentials; the operators must act.',
      'api_error',
      'upstream_auth_failed',
    );
  if (status === 429) return throttled();
  if (status >= 400 && status < 500)
    return refusal(400, 'The model provider rejected the request.', 'invalid_request_error', 'upstream_rejected');
  return refusal(502, 'The model provider failed.', 'api_error', 'upstream_error');
}
