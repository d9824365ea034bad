import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import middy from '@middy/core';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
import { commonDepsFromEnvironment, required } from '../runtime/environment';
import { upstreamFromEnvironment } from '../gateway/api';
import { internalError, unexpectedErrors } from '../runtime/errors';
import { numberSetting } from '../runtime/settings';
import { handleProxy, type ProxyDeps, type ProxyResponse } from './proxy';
import type { Upstream } from './upstreams';
import { upstreamModels } from './upstream-models';
import type { LimiterConfig } from '../engine/plans';
import { SecretValue } from './secret';
import { UpstreamCooldown } from './upstream-feedback';

const PENDING = Symbol('settlement');
const GONE = Symbol('client gone');
/**
 * Time kept back from the invocation's timeout for settlement (up to 5 attempts with backoff, each
 * within DynamoDB's 1 s deadline) and the stream's last event (a quarter of the time for timeouts
 * under 40 s). A stream still running then is cut off, settled and closed with a `stream_deadline`
 * event.
 */
export const SETTLE_MARGIN_MS = 10_000;
type WithSettlement = Context & { [PENDING]?: Promise<void>; [GONE]?: AbortSignal };

/** What the Lambda Node.js runtime gives a response-streaming function as the global `awslambda`. */
declare const awslambda: {
  streamifyResponse(
    handler: (event: APIGatewayProxyEvent, responseStream: Writable, context: Context) => Promise<void>,
  ): unknown;
  HttpResponseStream: {
    from(stream: Writable, prelude: { statusCode: number; headers: Record<string, string> }): Writable;
  };
};

/**
 * A response-streaming handler (awslambda.streamifyResponse): middy runs the request (the error
 * middleware turns a failure into a 500), then the status and headers go out in HttpResponseStream's
 * prelude and the body chunks follow as they come. The invocation ends only once the request is
 * settled, also when the client went away mid-stream and the pipe failed: Lambda freezes the
 * sandbox when the handler returns, and a settlement left running then might never land.
 */
export function createProxyHandler(deps: ProxyDeps) {
  const respond = middy<APIGatewayProxyEvent, Omit<ProxyResponse, 'settlement'>, Error, Context>({
    timeoutEarlyInMillis: 0,
  })
    .use(unexpectedErrors({ name: 'proxy', log: deps.log, answer: internalError }))
    .handler(async (event, context) => {
      // Stop the upstream early enough to settle and close the stream before Lambda's timeout ends the invocation.
      const remaining = context.getRemainingTimeInMillis();
      const deadlineAt = Date.now() + remaining - Math.min(SETTLE_MARGIN_MS, remaining / 4);
      const gone = (context as WithSettlement)[GONE];
      const { settlement, ...response } = await handleProxy(event, deps, context.awsRequestId, deadlineAt, gone);
      if (settlement) (context as WithSettlement)[PENDING] = settlement;
      return response;
    });
  return awslambda.streamifyResponse(async (event, responseStream, context) => {
    const startedAt = Date.now();
    // A client that leaves fails the response stream, also before the answer starts: the upstream
    // call is aborted then, whatever it is waiting for.
    const gone = new AbortController();
    const leave = () => {
      if (!responseStream.writableFinished) gone.abort();
    };
    responseStream.once('close', leave);
    responseStream.once('error', leave);
    if (responseStream.destroyed) leave();
    (context as WithSettlement)[GONE] = gone.signal;
    try {
      const { body, ...prelude } = await respond(event, context);
      const out = awslambda.HttpResponseStream.from(responseStream, prelude);
      out.write(''); // the prelude goes out now, before the first byte of the body
      await pipeline(typeof body === 'string' ? Readable.from([body]) : body, out);
    } finally {
      await (context as WithSettlement)[PENDING];
      // The ledger's rows are written before the sandbox can freeze (lambda/engine/ledger.ts).
      await deps.ledger?.endInvocation(startedAt);
    }
  }) as (event: APIGatewayProxyEvent, responseStream: Writable, context: Context) => Promise<void>;
}

/** Built once per container from the environment (no secret is ever in it: only the secret's id). */
export function proxyDepsFromEnvironment(): ProxyDeps {
  required('BRAKE_PARAMETER_NAME');
  const { config, dynamo, limiter, directory, brake, brakeRetryAfterSeconds, log, ledger } =
    commonDepsFromEnvironment();
  return {
    config,
    limiter,
    directory,
    brake,
    brakeRetryAfterSeconds,
    upstream: upstreamOf(config),
    log,
    ...(ledger ? { ledger } : {}),
    // The upstream's rate limits, shared through the table (upstream-feedback.ts).
    cooldown: new UpstreamCooldown({
      client: dynamo,
      tableName: required('TABLE_NAME'),
      log,
    }),
  };
}

/** The upstream the construct configured (lambda/gateway/api.ts names the variables), with its timeouts and model ids. */
function upstreamOf(config: LimiterConfig): Upstream {
  const timeouts = {
    firstByteTimeoutMs: numberSetting('upstreamTimeoutMs'),
    idleTimeoutMs: numberSetting('upstreamIdleTimeoutMs'),
    bodyTimeoutMs: numberSetting('upstreamBodyTimeoutMs'),
  };
  const target = upstreamFromEnvironment(process.env);
  // Bedrock: signed with the function's role (the SDK's default chain); AWS_ENDPOINT_URL_BEDROCK_RUNTIME points it elsewhere locally.
  if (target.kind === 'bedrock')
    return { kind: 'bedrock', region: target.region, modelId: upstreamModels(config), ...timeouts };
  const secret = new SecretValue(
    new SecretsManagerClient(clientConfig(CLIENT_TIMEOUTS.secretsManager)),
    target.apiKeySecret,
    300_000,
    Date.now,
    CLIENT_TIMEOUTS.secretsManager.deadlineMs,
  );
  return {
    kind: target.kind,
    baseUrl: target.baseUrl,
    apiKey: () => secret.get(),
    modelId: upstreamModels(config),
    ...timeouts,
  };
}
