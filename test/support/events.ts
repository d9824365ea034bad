import type { APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import { lambdaContext as localContext } from '../../local/gateway';

/**
 * A REQUEST authorizer event as API Gateway (REST, regional) sends it: headers as the client
 * spelled them, their multi-value form, the method ARN of the route, and the request context.
 */
export function authorizerEvent(
  options: {
    headers?: Record<string, string>;
    multiValueHeaders?: Record<string, string[]>;
    route?: string;
    method?: string;
    stage?: string;
  } = {},
): APIGatewayRequestAuthorizerEvent {
  const route = options.route ?? '/v1/chat/completions';
  const method = options.method ?? 'POST';
  const stage = options.stage ?? 'prod';
  const headers = {
    Host: 'abc123.execute-api.us-east-1.amazonaws.com',
    'User-Agent': 'OpenAI/JS 4.0',
    'Content-Type': 'application/json',
    'X-Forwarded-For': '203.0.113.7',
    ...options.headers,
  };
  const multiValueHeaders =
    options.multiValueHeaders ?? Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]]));
  return {
    type: 'REQUEST',
    methodArn: `arn:aws:execute-api:us-east-1:123456789012:abc123/${stage}/${method}${route}`,
    resource: route,
    path: route,
    httpMethod: method,
    headers,
    multiValueHeaders,
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      authorizer: undefined,
      domainName: 'abc123.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'abc123',
      extendedRequestId: 'Xyz=',
      httpMethod: method,
      identity: { sourceIp: '203.0.113.7', userAgent: 'OpenAI/JS 4.0' } as never,
      path: `/${stage}${route}`,
      protocol: 'HTTP/1.1',
      requestId: crypto.randomUUID(),
      requestTime: new Date().toUTCString(),
      requestTimeEpoch: Date.now(),
      resourceId: 'res123',
      resourcePath: route,
      stage,
    },
  } as APIGatewayRequestAuthorizerEvent;
}

/** The Lambda context the local gateway invokes with (one definition). */
export const lambdaContext = (functionName = 'authorizer', requestId?: string): Context =>
  localContext(functionName, requestId);

/** A Lambda proxy-integration event (REST, payload 1.0) carrying the authorizer's context. */
export function proxyEvent(
  options: {
    body?: unknown;
    raw?: string;
    route?: string;
    authorizer?: Record<string, string | number>;
    headers?: Record<string, string>;
  } = {},
): import('aws-lambda').APIGatewayProxyEvent {
  const route = options.route ?? '/v1/chat/completions';
  const body = options.raw ?? (options.body === undefined ? null : JSON.stringify(options.body));
  return {
    resource: route,
    path: route,
    httpMethod: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Host: 'abc123.execute-api.us-east-1.amazonaws.com',
      ...options.headers,
    },
    multiValueHeaders: { 'Content-Type': ['application/json'] },
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    body,
    isBase64Encoded: false,
    requestContext: {
      accountId: '123456789012',
      apiId: 'abc123',
      authorizer: { principalId: 'p', ...options.authorizer },
      httpMethod: 'POST',
      identity: { sourceIp: '203.0.113.7' } as never,
      path: `/prod${route}`,
      protocol: 'HTTP/1.1',
      requestId: crypto.randomUUID(),
      requestTimeEpoch: Date.now(),
      resourceId: 'res123',
      resourcePath: route,
      stage: 'prod',
    },
  } as import('aws-lambda').APIGatewayProxyEvent;
}
