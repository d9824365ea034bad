/**
 * API Gateway's gateway responses for this API, defined once: the construct deploys them and the
 * local gateway renders them, so the two cannot drift. Header values are API Gateway mapping
 * expressions (`context.authorizer.<key>` or a quoted literal); templates use
 * `$context.authorizer.<key>`.
 */
export interface GatewayResponseDefinition {
  readonly type:
    | 'ACCESS_DENIED'
    | 'UNAUTHORIZED'
    | 'AUTHORIZER_FAILURE'
    | 'AUTHORIZER_CONFIGURATION_ERROR'
    | 'MISSING_AUTHENTICATION_TOKEN'
    | 'DEFAULT_4XX'
    | 'DEFAULT_5XX';
  /**
   * Absent: the status API Gateway chose stays. Never set on DEFAULT_4XX or DEFAULT_5XX: a status
   * there rewrites every response of that class that has no definition of its own (a 502 from a
   * failed function would become a 500, a 504 too).
   */
  readonly statusCode?: string;
  readonly responseHeaders: Readonly<Record<string, string>>;
  readonly template: string;
}

const json = "'application/json'";

/*
 * One body shape for every route: gateway response templates allow only simple variable
 * substitution, no VTL (API Gateway Developer Guide, "x-amazon-apigateway-gateway-responses.
 * responseTemplates object"), so they cannot differ by route. OpenAI's error object wrapped in
 * Anthropic's envelope (`{"type":"error","error":{...}}`) reads correctly in both SDKs: OpenAI's
 * clients read `error`, Anthropic's read `error.type` and `error.message` (and both pick their
 * error class from the status). The authorizer's denials name the type in the route's dialect.
 */
export const GATEWAY_RESPONSES: readonly GatewayResponseDefinition[] = [
  {
    // A Deny from the authorizer: a limit, the brake or the penalty box.
    type: 'ACCESS_DENIED',
    statusCode: '429',
    responseHeaders: {
      'Content-Type': json,
      'Retry-After': 'context.authorizer.retryAfter',
      'X-RateLimit-Limit': 'context.authorizer.limit',
      'X-RateLimit-Remaining': 'context.authorizer.remaining',
      'X-RateLimit-Reset': 'context.authorizer.reset',
      'RateLimit-Policy': 'context.authorizer.policy',
      RateLimit: 'context.authorizer.rateLimit',
    },
    template:
      '{"type":"error","error":{"message":"$context.authorizer.message","type":"$context.authorizer.type",' +
      '"param":null,"code":"$context.authorizer.code"}}',
  },
  {
    type: 'UNAUTHORIZED',
    statusCode: '401',
    responseHeaders: { 'Content-Type': json, 'WWW-Authenticate': "'Bearer'" },
    template:
      '{"type":"error","error":{"message":"Invalid or missing API key. Send it as Authorization: Bearer ' +
      '<key>.","type":"authentication_error","param":null,"code":"invalid_api_key"}}',
  },
  // The authorizer failed (a layer that fails closed could not be checked): try again shortly.
  // A function that throws surfaces as AUTHORIZER_CONFIGURATION_ERROR or AUTHORIZER_FAILURE
  // (both 500 by default, per AWS's list of gateway response types): both answer 503.
  ...(['AUTHORIZER_FAILURE', 'AUTHORIZER_CONFIGURATION_ERROR'] as const).map((type) => ({
    type,
    statusCode: '503',
    responseHeaders: { 'Content-Type': json, 'Retry-After': "'1'" },
    template:
      '{"type":"error","error":{"message":"The rate limiter is unavailable; retry ' +
      'shortly.","type":"service_unavailable","param":null,"code":"limiter_unavailable"}}',
  })),
  {
    // A path or method this API does not serve: API Gateway's 403 "Missing Authentication Token" by default.
    type: 'MISSING_AUTHENTICATION_TOKEN',
    statusCode: '404',
    responseHeaders: { 'Content-Type': json },
    template:
      '{"type":"error","error":{"message":"Unknown route: this API serves POST on its AI endpoints and GET ' +
      '/v1/limits.","type":"invalid_request_error","param":null,"code":"unknown_route"}}',
  },
  {
    type: 'DEFAULT_4XX',
    responseHeaders: { 'Content-Type': json },
    template:
      '{"type":"error","error":{"message":"$context.error.message","type":"invalid_request_error","param":null,"code":null}}',
  },
  {
    type: 'DEFAULT_5XX',
    responseHeaders: { 'Content-Type': json },
    template:
      '{"type":"error","error":{"message":"Internal error.","type":"api_error","param":null,"code":"internal_error"}}',
  },
];

export const gatewayResponse = (type: GatewayResponseDefinition['type']): GatewayResponseDefinition =>
  GATEWAY_RESPONSES.find((r) => r.type === type)!;

/** Renders a gateway response as API Gateway would, from the authorizer's context. */
export function renderGatewayResponse(
  type: GatewayResponseDefinition['type'],
  context: Readonly<Record<string, unknown>> = {},
  errorMessage = '',
  defaultStatus = 500,
): { statusCode: number; headers: Record<string, string>; body: string } {
  const def = gatewayResponse(type);
  const value = (expression: string): string | undefined => {
    if (expression.startsWith("'") && expression.endsWith("'")) return expression.slice(1, -1);
    const key = /^context\.authorizer\.(\w+)$/.exec(expression)?.[1];
    const v = key === undefined ? undefined : context[key];
    return v === undefined || v === null ? undefined : String(v);
  };
  const headers: Record<string, string> = {};
  for (const [name, expression] of Object.entries(def.responseHeaders)) {
    const v = value(expression);
    if (v !== undefined && v !== '') headers[name] = v;
  }
  const body = def.template
    .replace(/\$context\.authorizer\.(\w+)/g, (_m, key: string) => String(context[key] ?? ''))
    .replace(/\$context\.error\.message/g, errorMessage);
  return { statusCode: def.statusCode ? Number(def.statusCode) : defaultStatus, headers, body };
}
