import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import type {
  APIGatewayAuthorizerResult,
  APIGatewayProxyEvent,
  APIGatewayProxyResult,
  APIGatewayRequestAuthorizerEvent,
  Context,
} from 'aws-lambda';
import { renderGatewayResponse } from '../lambda/gateway/responses';

/**
 * A local stand-in for the deployed API Gateway (REST, regional): it builds the REQUEST
 * authorizer event, evaluates the returned policy against the method ARN, renders the gateway
 * responses from the same definitions the construct deploys, passes the authorizer's context to
 * the integration, and reads a streaming integration's HttpResponseStream prelude (JSON, then 8
 * zero bytes) before passing the body through chunk by chunk.
 */
export type LocalRoute =
  | {
      readonly method: 'GET' | 'POST';
      readonly path: string;
      readonly streaming: true;
      /** The integration, invoked as Lambda's response-streaming runtime does. */
      readonly handler: (event: APIGatewayProxyEvent, stream: Writable, context: Context) => Promise<void>;
    }
  | {
      readonly method: 'GET' | 'POST';
      readonly path: string;
      readonly streaming: false;
      /** false: no authorizer runs (the usage page). @default true */
      readonly authorized?: boolean;
      /** A buffered Lambda proxy integration. */
      readonly handler: BufferedHandler;
    };

type BufferedHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

export interface LocalGatewayOptions {
  readonly authorizer: (
    event: APIGatewayRequestAuthorizerEvent,
    context: Context,
  ) => Promise<APIGatewayAuthorizerResult>;
  readonly routes: readonly LocalRoute[];
  readonly port?: number;
  readonly stage?: string;
  readonly log?: (entry: Record<string, unknown>) => void;
}

export interface LocalGateway {
  readonly url: string;
  stop(): Promise<void>;
}

const ACCOUNT = '000000000000';
const API_ID = 'local';
const DELIMITER = Buffer.alloc(8);
/** API Gateway's payload limit. */
const MAX_BODY = 10 * 1024 * 1024;
/** Lambda's limit on a synchronous invocation's payload (the event JSON). */
const MAX_INVOKE_PAYLOAD = 6_291_456;

export function lambdaContext(functionName: string, requestId: string = randomUUID()): Context {
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:${ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => 900_000,
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

/** Headers as the client spelled them (API Gateway keeps the case; Node lowercases). */
function headersOf(req: IncomingMessage): { headers: Record<string, string>; multi: Record<string, string[]> } {
  const headers: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const value = req.rawHeaders[i + 1]!;
    headers[name] = value;
    multi[name] ??= [];
    multi[name].push(value);
  }
  return { headers, multi };
}

/** Does an IAM resource pattern (with * and ?) match the method ARN? */
function matches(pattern: string, arn: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return regex.test(arn);
}

/** API Gateway's policy evaluation: an explicit Deny wins, otherwise an Allow is needed. */
export function policyAllows(result: APIGatewayAuthorizerResult, methodArn: string): boolean {
  let allowed = false;
  for (const statement of result.policyDocument.Statement) {
    const s = statement as { Effect: string; Action?: string | string[]; Resource?: string | string[] };
    const actions = ([] as string[]).concat(s.Action ?? []);
    if (!actions.some((a) => a === 'execute-api:Invoke' || a === 'execute-api:*' || a === '*')) continue;
    const resources = ([] as string[]).concat(s.Resource ?? []);
    if (!resources.some((r) => matches(r, methodArn))) continue;
    if (s.Effect === 'Deny') return false;
    if (s.Effect === 'Allow') allowed = true;
  }
  return allowed;
}

function send(res: ServerResponse, out: { statusCode: number; headers: Record<string, string>; body: string }): void {
  res.writeHead(out.statusCode, { ...out.headers, 'x-amzn-requestid': randomUUID() });
  res.end(out.body);
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A Writable standing for the response stream: prelude first, then the body as it comes. */
function responseStream(res: ServerResponse): Writable {
  let pending = Buffer.alloc(0);
  let started = false;
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (started) {
        if (chunk.length) res.write(chunk);
        return callback();
      }
      pending = Buffer.concat([pending, Buffer.from(chunk)]);
      const at = pending.indexOf(DELIMITER);
      if (at < 0) return callback();
      const prelude = JSON.parse(pending.subarray(0, at).toString('utf8')) as {
        statusCode?: number;
        headers?: Record<string, string>;
      };
      res.writeHead(prelude.statusCode ?? 200, { ...prelude.headers, 'x-amzn-requestid': randomUUID() });
      started = true;
      const rest = pending.subarray(at + DELIMITER.length);
      if (rest.length) res.write(rest);
      callback();
    },
    final(callback) {
      if (!started) send(res, renderGatewayResponse('DEFAULT_5XX', {}, '', 502));
      else res.end();
      callback();
    },
  });
}

type Log = (entry: Record<string, unknown>) => void;

/** One request as API Gateway sees it: what every event built from it shares. */
interface Incoming {
  readonly requestId: string;
  readonly methodArn: string;
  /** The fields the authorizer's and the integration's events share. */
  readonly common: Record<string, unknown>;
  readonly requestContext: Record<string, unknown>;
}

function incoming(req: IncomingMessage, route: LocalRoute, url: URL, stage: string): Incoming {
  const { headers, multi } = headersOf(req);
  const requestId = randomUUID();
  const method = route.method;
  const query = Object.fromEntries(url.searchParams);
  const requestContext = {
    accountId: ACCOUNT,
    apiId: API_ID,
    domainName: req.headers.host ?? 'localhost',
    domainPrefix: 'localhost',
    extendedRequestId: requestId,
    httpMethod: method,
    identity: { sourceIp: req.socket.remoteAddress ?? '127.0.0.1', userAgent: req.headers['user-agent'] ?? '' },
    path: `/${stage}${route.path}`,
    protocol: `HTTP/${req.httpVersion}`,
    requestId,
    requestTime: new Date().toUTCString(),
    requestTimeEpoch: Date.now(),
    resourceId: route.path,
    resourcePath: route.path,
    stage,
  };
  const common = {
    resource: route.path,
    path: route.path,
    httpMethod: method,
    headers,
    multiValueHeaders: multi,
    queryStringParameters: Object.keys(query).length ? query : null,
    multiValueQueryStringParameters: Object.keys(query).length
      ? Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]]))
      : null,
    pathParameters: null,
    stageVariables: null,
  };
  const methodArn = `arn:aws:execute-api:local:${ACCOUNT}:${API_ID}/${stage}/${method}${route.path}`;
  return { requestId, methodArn, common, requestContext };
}

/** The authorizer's answer, or the gateway response that ends the request (401, 500). */
async function authorize(
  authorizer: LocalGatewayOptions['authorizer'],
  request: Incoming,
  log: Log,
): Promise<APIGatewayAuthorizerResult | ReturnType<typeof renderGatewayResponse>> {
  try {
    return await authorizer(
      {
        type: 'REQUEST',
        methodArn: request.methodArn,
        ...request.common,
        requestContext: request.requestContext,
      } as unknown as APIGatewayRequestAuthorizerEvent,
      lambdaContext('authorizer'),
    );
  } catch (err) {
    if ((err as Error).message === 'Unauthorized') return renderGatewayResponse('UNAUTHORIZED');
    log({ level: 'error', requestId: request.requestId, message: 'authorizer failed', error: (err as Error).name });
    // As on AWS: a function error is an authorizer configuration error (500 unless mapped).
    return renderGatewayResponse('AUTHORIZER_CONFIGURATION_ERROR');
  }
}

/** A buffered Lambda proxy integration: its result, or a 502 when it fails. */
async function invokeBuffered(
  handler: BufferedHandler,
  event: APIGatewayProxyEvent,
  res: ServerResponse,
  requestId: string,
  log: Log,
): Promise<void> {
  try {
    const out = await handler(event, lambdaContext('limits', requestId));
    const headers = Object.fromEntries(Object.entries(out.headers ?? {}).map(([k, v]) => [k, String(v)]));
    return send(res, {
      statusCode: out.statusCode,
      headers,
      body: out.isBase64Encoded ? Buffer.from(out.body, 'base64').toString('utf8') : out.body,
    });
  } catch (err) {
    log({ level: 'error', requestId, message: 'integration failed', error: (err as Error).name });
    return send(res, renderGatewayResponse('DEFAULT_5XX', {}, '', 502));
  }
}

/** A response-streaming integration: the prelude, then the body as it comes; a client that leaves is the function's stream failing. */
async function invokeStreamed(
  handler: Extract<LocalRoute, { streaming: true }>['handler'],
  event: APIGatewayProxyEvent,
  res: ServerResponse,
  requestId: string,
  log: Log,
): Promise<void> {
  const stream = responseStream(res);
  // The function sees the disconnect as its stream failing; nobody else needs the error.
  stream.on('error', () => {});
  const leave = () => {
    if (!res.writableFinished) stream.destroy(new Error('client disconnected'));
  };
  res.on('close', leave);
  // The client may have left while the authorizer ran: the function sees its stream failed from the start.
  if (res.destroyed || res.socket?.destroyed !== false) leave();
  try {
    await handler(event, stream, lambdaContext('proxy', requestId));
  } catch (err) {
    if (res.destroyed) return; // the client left; the function's own settlement has run
    log({
      level: 'error',
      requestId,
      message: 'integration failed',
      error: (err as Error).name,
      detail: (err as Error).message,
    });
    if (!res.headersSent) send(res, renderGatewayResponse('DEFAULT_5XX', {}, '', 502));
    else res.destroy();
  }
}

/** One request through the gateway: route, body, authorizer and policy, then the integration. */
async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: LocalGatewayOptions,
  log: Log,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = (req.method ?? 'GET').toUpperCase();
  const route = options.routes.find((r) => r.method === method && r.path === url.pathname);
  if (!route)
    return send(res, renderGatewayResponse('MISSING_AUTHENTICATION_TOKEN', {}, 'Missing Authentication Token', 403));
  const body = await readBody(req);
  if (!body) return send(res, renderGatewayResponse('DEFAULT_4XX', {}, 'Request Too Long', 413));
  const request = incoming(req, route, url, options.stage ?? 'local');
  const { requestId, common, requestContext } = request;

  // A method without an authorizer: API Gateway invokes the integration with no authorizer context.
  if (!route.streaming && route.authorized === false) {
    const event = { ...common, body: null, isBase64Encoded: false, requestContext };
    return invokeBuffered(route.handler, event as unknown as APIGatewayProxyEvent, res, requestId, log);
  }
  const result = await authorize(options.authorizer, request, log);
  if (!('policyDocument' in result)) return send(res, result);
  // API Gateway hands the context to the integration with every value as a string.
  const context = Object.fromEntries(Object.entries(result.context ?? {}).map(([k, v]) => [k, String(v)]));
  if (!policyAllows(result, request.methodArn)) return send(res, renderGatewayResponse('ACCESS_DENIED', context));

  const event = {
    ...common,
    body: body.length ? body.toString('utf8') : null,
    isBase64Encoded: false,
    requestContext: { ...requestContext, authorizer: { ...context, principalId: result.principalId } },
  } as unknown as APIGatewayProxyEvent;
  // Lambda refuses a synchronous invocation whose event is over 6,291,456 bytes (API Gateway
  // took the 10 MB body): the function never runs and the client gets a 5xx.
  if (Buffer.byteLength(JSON.stringify(event)) > MAX_INVOKE_PAYLOAD) {
    log({ level: 'error', requestId, message: 'integration failed', error: 'RequestEntityTooLargeException' });
    return send(res, renderGatewayResponse('DEFAULT_5XX', {}, '', 502));
  }
  if (route.streaming) return invokeStreamed(route.handler, event, res, requestId, log);
  return invokeBuffered(route.handler, event, res, requestId, log);
}

export async function startLocalGateway(options: LocalGatewayOptions): Promise<LocalGateway> {
  const log = options.log ?? (() => {});
  const inFlight = new Set<Promise<unknown>>();
  const server: Server = createServer((req, res) => {
    // A client may go away at any point (mid-upload, before the first byte, mid-stream): that is
    // its business, never a reason for the gateway to fall over.
    req.on('error', () => {});
    res.on('error', () => {});
    const running = handle(req, res, options, log).catch((err: unknown) => {
      log({ level: 'error', message: 'request failed', error: (err as Error).name });
      if (!res.headersSent && !res.destroyed) send(res, renderGatewayResponse('DEFAULT_5XX', {}, '', 502));
      else res.destroy();
    });
    // Invocations run on after their answer (settlement): stop() lets them finish first.
    inFlight.add(running);
    void running.finally(() => inFlight.delete(running));
  });
  // A port in use fails the start (npm start turns it into one line with the fix), not the process.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      // Let invocations still settling finish (up to 5 s), as Lambda lets a function run to its end.
      await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 5_000).unref())]);
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
