import { SERVED_ROUTES } from '../../lambda/engine/plans';
import { App, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { TABLE } from '../../lambda/engine/constants';
import { GATEWAY_RESPONSES } from '../../lambda/gateway/responses';
import {
  bedrockQuota,
  LlmRateLimiter,
  type LlmRateLimiterProps,
  requestsPerMinute,
  slidingWindow,
  tokenBucket,
  tokens,
  tokensPerDay,
  tokensPerMinute,
  usdPerDay,
} from '../../lib';

const CHAT = '/v1/chat/completions';
const EMBED = '/v1/embeddings';

function props(stack: Stack, overrides: Partial<LlmRateLimiterProps> = {}): LlmRateLimiterProps {
  return {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, `Key${stack.node.children.length}`, 'openai-key'),
    endpoints: {
      [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
      [EMBED]: { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
    },
    plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(60)] } },
    globalLimits: [usdPerDay(100)],
    ...overrides,
  };
}

describe('what LlmRateLimiter provisions', () => {
  let template: Template;
  let limiter: LlmRateLimiter;
  beforeAll(() => {
    const stack = new Stack(new App(), 'Test');
    limiter = new LlmRateLimiter(stack, 'Limiter', props(stack));
    template = Template.fromStack(stack);
  });

  it('streams every AI route through the proxy, and only those', () => {
    const methods = template.findResources('AWS::ApiGateway::Method');
    const streaming = Object.values(methods).filter((m) => m.Properties.Integration?.ResponseTransferMode === 'STREAM');
    expect(streaming).toHaveLength(2);
    expect(
      streaming.every((m) => m.Properties.HttpMethod === 'POST' && m.Properties.AuthorizationType === 'CUSTOM'),
    ).toBe(true);
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'GET',
      AuthorizationType: 'CUSTOM',
      Integration: Match.objectLike({ Type: 'AWS_PROXY', ResponseTransferMode: Match.absent() }),
    });
  });

  it('runs the authorizer on every method but the static usage page, which gets a small throttle of its own', () => {
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method'));
    const open = methods.filter((m) => m.Properties.AuthorizationType !== 'CUSTOM');
    expect(open).toHaveLength(1);
    expect(open[0]!.Properties).toMatchObject({ HttpMethod: 'GET', AuthorizationType: 'NONE' });
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({
          ResourcePath: '/~1v1~1usage',
          HttpMethod: 'GET',
          ThrottlingRateLimit: 5,
          ThrottlingBurstLimit: 10,
        }),
      ]),
    });
  });

  it('decides every request: a REQUEST authorizer with its results cache off', () => {
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', { Type: 'REQUEST', AuthorizerResultTtlInSeconds: 0 });
  });

  it('maps a Deny to 429 with Retry-After and the rate-limit headers from the authorizer context', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'ACCESS_DENIED',
      StatusCode: '429',
      ResponseParameters: Match.objectLike({
        'gatewayresponse.header.Retry-After': 'context.authorizer.retryAfter',
        'gatewayresponse.header.X-RateLimit-Limit': 'context.authorizer.limit',
        'gatewayresponse.header.X-RateLimit-Remaining': 'context.authorizer.remaining',
        'gatewayresponse.header.X-RateLimit-Reset': 'context.authorizer.reset',
        'gatewayresponse.header.RateLimit-Policy': 'context.authorizer.policy',
        'gatewayresponse.header.RateLimit': 'context.authorizer.rateLimit',
      }),
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"code":"\\$context.authorizer.code"') },
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      StatusCode: '401',
    });
    expect(Object.keys(template.findResources('AWS::ApiGateway::GatewayResponse'))).toHaveLength(
      GATEWAY_RESPONSES.length,
    );
  });

  // AWS: AUTHORIZER_CONFIGURATION_ERROR and AUTHORIZER_FAILURE default to 500; a status on
  // DEFAULT_5XX rewrites every 5xx without its own definition; unknown routes are 403
  // MISSING_AUTHENTICATION_TOKEN (docs/aws-fidelity.md).
  it('answers 503 with Retry-After for either authorizer failure, 404 for unknown routes, and leaves other 5xx their status', () => {
    for (const type of ['AUTHORIZER_FAILURE', 'AUTHORIZER_CONFIGURATION_ERROR']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        StatusCode: '503',
        ResponseParameters: Match.objectLike({ 'gatewayresponse.header.Retry-After': "'1'" }),
      });
    }
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'MISSING_AUTHENTICATION_TOKEN',
      StatusCode: '404',
      ResponseTemplates: { 'application/json': Match.stringLikeRegexp('"code":"unknown_route"') },
    });
    const defaults = Object.values(template.findResources('AWS::ApiGateway::GatewayResponse')).filter((r) =>
      String(r.Properties.ResponseType).startsWith('DEFAULT_'),
    );
    expect(defaults).toHaveLength(2);
    for (const r of defaults) expect(r.Properties.StatusCode).toBeUndefined();
  });

  it('runs every function on nodejs22.x, arm64, with its own role and no managed policy', () => {
    const functions = Object.values(template.findResources('AWS::Lambda::Function'));
    expect(functions).toHaveLength(5); // authorizer, proxy, limits, brake mirror, config publisher
    for (const fn of functions)
      expect(fn.Properties).toMatchObject({ Runtime: 'nodejs22.x', Architectures: ['arm64'] });
    for (const role of Object.values(template.findResources('AWS::IAM::Role')).filter((r) =>
      JSON.stringify(r).includes('lambda.amazonaws.com'),
    )) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('never puts the upstream key or the limiter config in an environment variable', () => {
    const envs = JSON.stringify(
      Object.values(template.findResources('AWS::Lambda::Function')).map((f) => f.Properties.Environment),
    );
    expect(envs).toContain('UPSTREAM_API_KEY_SECRET');
    expect(envs).not.toContain('LIMITER_CONFIG');
    expect(envs).not.toMatch(/sk-/);
  });

  /** The actions a function's role may take, by resource. */
  function actionsOf(fnLogicalIdPrefix: string): string[] {
    const policies = Object.entries(template.findResources('AWS::IAM::Policy')).filter(([, p]) =>
      JSON.stringify(p.Properties.Roles).includes(fnLogicalIdPrefix),
    );
    // Each action once: UpdateItem is granted on the limits table and on the usage ledger's.
    const actions = policies.flatMap(([, p]) =>
      p.Properties.PolicyDocument.Statement.flatMap((s: { Action: string | string[] }) =>
        ([] as string[]).concat(s.Action),
      ),
    );
    return [...new Set(actions)].sort();
  }

  it('gives each function only the actions it calls', () => {
    // The brake comes from the table's mirror; the functions read the SSM parameter only when the copy is stale.
    // PutItem and PutEvents: a calendar budget's alert is claimed with a conditional put and published on the bus.
    expect(actionsOf('LimiterAuthorizerRole')).toEqual([
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'events:PutEvents',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'ssm:GetParameter',
    ]);
    // No BatchGetItem: a settlement refunds from what its reservation's write returned, reading nothing.
    expect(actionsOf('LimiterProxyRole')).toEqual([
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'events:PutEvents',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'secretsmanager:GetSecretValue',
      'ssm:GetParameter',
    ]);
    // Query: the usage ledger's month so far, shown with the limits.
    expect(actionsOf('LimiterLimitsFunctionRole')).toEqual([
      'dynamodb:GetItem',
      'dynamodb:Query',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'ssm:GetParameter',
    ]);
    expect(actionsOf('LimiterBrakeMirrorRole')).toEqual([
      'dynamodb:GetItem',
      'dynamodb:UpdateItem',
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'ssm:GetParameter',
    ]);
  });

  it('scopes those actions to this table, this parameter and this secret', () => {
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
      (p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[],
    );
    for (const s of statements) {
      const actions = ([] as string[]).concat(s.Action);
      const resource = JSON.stringify(s.Resource);
      // The usage ledger's table: only its rows are written (UpdateItem) and read (Query) there.
      if (resource.includes('LimiterLedgerTable')) {
        expect(resource).not.toMatch(/LimiterLimitsTable/);
        expect(actions.every((a) => a === 'dynamodb:UpdateItem' || a === 'dynamodb:Query')).toBe(true);
      } else if (actions.some((a) => a.startsWith('dynamodb:'))) expect(resource).toMatch(/LimiterLimitsTable/);
      if (actions.includes('ssm:GetParameter')) expect(resource).toMatch(/LimiterBrake/);
      if (actions.includes('secretsmanager:GetSecretValue')) expect(resource).toMatch(/openai-key/);
      if (actions.includes('events:PutEvents')) expect(resource).toMatch(/event-bus\/default/);
      expect(resource).not.toBe('"*"');
    }
  });

  it('sizes the proxy at 512 MB (measured: docs/benchmarks.md, proxy.peak_rss_mb), or proxyMemorySize', () => {
    const memoryOf = (t: Template) =>
      Object.entries(t.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('LimiterProxy'))![1]
        .Properties.MemorySize;
    expect(memoryOf(template)).toBe(512);
    const stack = new Stack(new App(), 'Sized');
    new LlmRateLimiter(stack, 'Limiter', props(stack, { proxyMemorySize: 1024 }));
    expect(memoryOf(Template.fromStack(stack))).toBe(1024);
  });

  it('keeps its state in a table with TTL and point-in-time recovery', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: TABLE.partitionKey, KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: TABLE.ttlAttribute, Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      BillingMode: 'PAY_PER_REQUEST',
    });
  });

  it('creates the brake parameter released', () => {
    template.hasResourceProperties('AWS::SSM::Parameter', { Type: 'String', Value: 'off' });
  });

  it('mirrors the brake into the table on every change of the parameter and once a minute', () => {
    const mirror = Object.keys(template.findResources('AWS::Lambda::Function')).find((id) =>
      id.startsWith('LimiterBrakeMirror'),
    )!;
    const rules = Object.values(template.findResources('AWS::Events::Rule'));
    const onChange = rules.find((r) => r.Properties.EventPattern)!;
    expect(onChange.Properties.EventPattern).toMatchObject({
      source: ['aws.ssm'],
      'detail-type': ['Parameter Store Change'],
      detail: { name: [{ Ref: expect.stringMatching(/^LimiterBrake/) }] },
    });
    expect(rules.find((r) => r.Properties.ScheduleExpression)!.Properties.ScheduleExpression).toBe('rate(1 minute)');
    for (const r of rules) expect(JSON.stringify(r.Properties.Targets)).toContain(mirror);
  });

  // CloudFormation updates a resource only when its properties change: if they did, a deploy
  // would write 'off' over a brake an operator set. Nothing but the brake's own name may feed them.
  it('leaves the brake parameter untouched by a deploy that changes anything else', () => {
    const brakeOf = (overrides: Partial<LlmRateLimiterProps>) => {
      const stack = new Stack(new App(), 'Brake');
      new LlmRateLimiter(stack, 'Limiter', props(stack, overrides));
      const params = Object.entries(Template.fromStack(stack).findResources('AWS::SSM::Parameter'));
      expect(params).toHaveLength(1);
      return params[0];
    };
    const before = brakeOf({});
    for (const change of [
      { plans: { team: { tenant: [tokensPerDay(5)], user: [requestsPerMinute(1)] } } },
      {
        brakeCacheTtl: Duration.seconds(1),
        brakeRetryAfter: Duration.seconds(9),
        stageName: 'v2',
        throttlingRateLimit: 5,
      },
      {
        upstreamBaseUrl: 'https://example.com/v1',
        automaticBrake: { spendPerHourUsd: 10 },
        globalLimits: [usdPerDay(5)],
      },
    ] as Partial<LlmRateLimiterProps>[]) {
      expect(brakeOf(change)).toEqual(before);
    }
  });

  it('gives the proxy the upstream timeout, at most the stream timeout when that is under the default', () => {
    const upstreamTimeoutOf = (overrides: Partial<LlmRateLimiterProps>) => {
      const stack = new Stack(new App(), 'Timeouts');
      const limiter = new LlmRateLimiter(stack, 'Limiter', props(stack, overrides));
      const fn =
        Template.fromStack(stack).toJSON().Resources[
          stack.getLogicalId(limiter.proxyFunction.node.defaultChild as lambda.CfnFunction)
        ];
      return fn.Properties.Environment.Variables.UPSTREAM_TIMEOUT_MS;
    };
    expect(upstreamTimeoutOf({})).toBe('60000');
    expect(upstreamTimeoutOf({ upstreamTimeout: Duration.minutes(5) })).toBe('300000');
    expect(upstreamTimeoutOf({ streamTimeout: Duration.seconds(30) })).toBe('30000');
  });

  it('reserves executions for the authorizer and derives stage throttling from them', () => {
    const fns = Object.entries(template.findResources('AWS::Lambda::Function'));
    const authorizer = fns.find(([id]) => id.startsWith('LimiterAuthorizer'))![1];
    expect(authorizer.Properties.ReservedConcurrentExecutions).toBe(50);
    // The brake's functions hold their own small reservation (the next test); nothing else reserves.
    for (const [id, fn] of fns)
      if (!id.startsWith('LimiterAuthorizer') && !id.startsWith('LimiterBrakeMirror'))
        expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
    const stack = new Stack(new App(), 'Reserved');
    new LlmRateLimiter(stack, 'Limiter', props(stack, { authorizerReservedConcurrency: 10 }));
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::Lambda::Function', { ReservedConcurrentExecutions: 10 });
    // 10 executions decide about 200 requests a second, split over the 4 authorized methods.
    t.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: Match.arrayWith([
        Match.objectLike({ ResourcePath: '/*', HttpMethod: '*', ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 }),
      ]),
    });
    const none = new Stack(new App(), 'Unreserved');
    new LlmRateLimiter(none, 'Limiter', props(none, { authorizerReservedConcurrency: false }));
    for (const [id, fn] of Object.entries(Template.fromStack(none).findResources('AWS::Lambda::Function')))
      if (!id.startsWith('LimiterBrakeMirror')) expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
  });

  it('reserves an execution for each function of the brake, so a flip never waits for spare concurrency', () => {
    const reservations = (overrides: Partial<LlmRateLimiterProps>) => {
      const stack = new Stack(new App(), 'Brake');
      new LlmRateLimiter(stack, 'Limiter', props(stack, { automaticBrake: { spendPerHourUsd: 50 }, ...overrides }));
      const fns = Object.entries(Template.fromStack(stack).findResources('AWS::Lambda::Function'));
      const of = (prefix: string) =>
        fns.find(([id]) => id.startsWith(prefix))![1].Properties.ReservedConcurrentExecutions;
      return { mirror: of('LimiterBrakeMirror'), autoBrake: of('LimiterObservabilityAutoBrake') };
    };
    expect(reservations({})).toEqual({ mirror: 1, autoBrake: 1 });
    expect(reservations({ brakeReservedConcurrency: 3 })).toEqual({ mirror: 3, autoBrake: 3 });
    expect(reservations({ brakeReservedConcurrency: false })).toEqual({ mirror: undefined, autoBrake: undefined });
  });

  // API Gateway applies a stage's throttle to each method: written once for /*/*, it let every
  // authorized method send the whole rate at the authorizer (docs/aws-fidelity.md).
  it.each<[string, Partial<LlmRateLimiterProps>, number, number]>([
    ['the default reservation', {}, 1000, 2000],
    ['a reservation of 30', { authorizerReservedConcurrency: 30 }, 600, 1200],
    ['no reservation', { authorizerReservedConcurrency: false }, 1000, 2000],
    ['a rate and burst of its own', { throttlingRateLimit: 100, throttlingBurstLimit: 150 }, 100, 150],
  ])(
    'sizes the throttle per method, so the authorized methods together send at most the total (%s)',
    (_n, o, rate, burst) => {
      const stack = new Stack(new App(), 'PerMethod');
      const model = { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } };
      const endpoints = Object.fromEntries(SERVED_ROUTES.map((route) => [route, model]));
      new LlmRateLimiter(stack, 'Limiter', props(stack, { endpoints, ...o }));
      const t = Template.fromStack(stack);
      const methods = Object.values(t.findResources('AWS::ApiGateway::Method'));
      const authorized = methods.filter((m) => m.Properties.AuthorizationType === 'CUSTOM').length;
      expect(authorized).toBe(7); // 4 endpoints, /v1/messages/count_tokens, /v1/limits and /v1/models
      const settings = Object.values(t.findResources('AWS::ApiGateway::Stage'))[0]!.Properties.MethodSettings as {
        ResourcePath: string;
        ThrottlingRateLimit: number;
        ThrottlingBurstLimit: number;
      }[];
      // Only the usage page (not authorized) has a setting of its own; every authorized method takes the stage's.
      expect(settings.map((m) => m.ResourcePath).sort()).toEqual(['/*', '/~1v1~1usage']);
      const each = settings.find((m) => m.ResourcePath === '/*')!;
      expect(each.ThrottlingRateLimit * authorized).toBeLessThanOrEqual(rate);
      expect(each.ThrottlingRateLimit * authorized).toBeGreaterThan(rate * 0.99);
      expect(each.ThrottlingBurstLimit * authorized).toBeLessThanOrEqual(burst);
      expect(Number.isInteger(each.ThrottlingBurstLimit)).toBe(true);
    },
  );

  it('protects a retained table from deletion, and sets the account logging role only when asked', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: true });
    template.resourceCountIs('AWS::ApiGateway::Account', 1);
    expect(Object.values(template.findResources('AWS::ApiGateway::Account'))[0]!.DeletionPolicy).toBe('Retain');
    const stack = new Stack(new App(), 'Disposable');
    new LlmRateLimiter(stack, 'Limiter', props(stack, { removalPolicy: RemovalPolicy.DESTROY, cloudWatchRole: false }));
    const t = Template.fromStack(stack);
    expect(Object.values(t.findResources('AWS::DynamoDB::Table'))[0]!.Properties.DeletionProtectionEnabled).toBe(false);
    t.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  it('has stage throttling and access logging, and outputs the URL, table and parameter', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      // 1,000 requests a second (20 per reserved execution) and a burst of 2,000, over 4 authorized methods.
      MethodSettings: Match.arrayWith([
        Match.objectLike({ ResourcePath: '/*', HttpMethod: '*', ThrottlingRateLimit: 250, ThrottlingBurstLimit: 500 }),
      ]),
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
    });
    const outputs = Object.keys(template.findOutputs('*')).join(',');
    for (const name of ['ApiUrl', 'TableName', 'BrakeParameterName']) expect(outputs).toContain(name);
    // The public properties are the resources the template holds.
    const resources = template.toJSON().Resources as Record<string, { Type: string }>;
    const typeOf = (token: string) => resources[(Stack.of(limiter).resolve(token) as { Ref: string }).Ref]?.Type;
    expect(typeOf(limiter.table.tableName)).toBe('AWS::DynamoDB::Table');
    expect(typeOf(limiter.brakeParameter.parameterName)).toBe('AWS::SSM::Parameter');
  });

  // A function's resource policy is at most 20 KB, and LambdaIntegration scopes two statements to
  // each method by default (the method and its test invoke): about 24 endpoints filled the proxy's
  // when any path could be an endpoint. Every route the proxy serves, each with one permission.
  it('lets API Gateway invoke each function through one permission on this API, whatever the number of endpoints', () => {
    const stack = new Stack(new App(), 'ManyEndpoints');
    const model = { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } };
    const endpoints = Object.fromEntries(SERVED_ROUTES.map((route) => [route, model]));
    new LlmRateLimiter(stack, 'Limiter', props(stack, { endpoints }));
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::ApiGateway::Method', 8);
    const fromApi = Object.values(t.findResources('AWS::Lambda::Permission')).filter(
      (p) => p.Properties.Principal === 'apigateway.amazonaws.com',
    );
    const invoked = (p: (typeof fromApi)[number]) => p.Properties.FunctionName['Fn::GetAtt'][0] as string;
    // The authorizer's own permission names its authorizer; the integrations' name the API.
    expect(fromApi.map(invoked).sort()).toEqual([
      expect.stringMatching(/^LimiterAuthorizer/),
      expect.stringMatching(/^LimiterLimitsFunction/),
      expect.stringMatching(/^LimiterProxy/),
    ]);
    for (const p of fromApi.filter((p) => !invoked(p).startsWith('LimiterAuthorizer'))) {
      const [, parts] = p.Properties.SourceArn['Fn::Join'];
      expect(parts).toContainEqual({ Ref: expect.stringMatching(/^LimiterApi/) });
      expect(parts.at(-1)).toBe('/*/*/*'); // any stage, method and path of this API, and nothing else
    }
    expect(JSON.stringify(fromApi).length).toBeLessThan(20_000);
  });

  it('grants the brake and the admin CLI through what it owns', () => {
    const stack = new Stack(new App(), 'Grants');
    const own = new LlmRateLimiter(stack, 'Limiter', props(stack));
    const role = new lambda.Function(stack, 'Ops', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'i.h',
      code: lambda.Code.fromInline('exports.h=1'),
    });
    own.grantBrake(role);
    own.grantAdmin(role);
    const t = Template.fromStack(stack);
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: ['ssm:GetParameter', 'ssm:PutParameter'] }),
          Match.objectLike({ Action: Match.arrayWith(['dynamodb:PutItem', 'dynamodb:Scan']) }),
        ]),
      },
    });
  });
});

describe('cdk-nag', () => {
  it('finds nothing unacknowledged in the AwsSolutions pack', () => {
    const app = new App();
    const stack = new Stack(app, 'Nag');
    new LlmRateLimiter(stack, 'Limiter', props(stack, { automaticBrake: { spendPerHourUsd: 100 } }));
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow();
  });

  it('would fail on a finding that is not acknowledged (the check is live)', () => {
    const app = new App();
    const stack = new Stack(app, 'NagControl');
    new lambda.Function(stack, 'Bare', {
      runtime: lambda.Runtime.NODEJS_20_X,
      handler: 'i.h',
      code: lambda.Code.fromInline('exports.h=1'),
    });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).toThrow();
  });
});

describe('prop validation', () => {
  const build = (overrides: Partial<LlmRateLimiterProps>) => () => {
    const stack = new Stack(new App(), 'V');
    new LlmRateLimiter(stack, 'Limiter', props(stack, overrides));
  };
  it.each<[string, Partial<LlmRateLimiterProps>, RegExp]>([
    [
      'the upstream URL is not absolute',
      { upstreamBaseUrl: 'api.openai.com' },
      /upstreamBaseUrl is "api.openai.com"; give an absolute http\(s\) URL/,
    ],
    [
      'the key cache is longer than 60 s',
      { keyCacheTtl: Duration.minutes(5) },
      /keyCacheTtl is 5 minutes; use at most 60 seconds/,
    ],
    [
      'the brake cache is longer than 5 s',
      { brakeCacheTtl: Duration.seconds(30) },
      /brakeCacheTtl is 30 seconds; use at most 5 seconds/,
    ],
    [
      'the stream timeout is beyond 15 minutes',
      { streamTimeout: Duration.minutes(20) },
      /streamTimeout is 20 minutes; API Gateway streams for at most 15 minutes/,
    ],
    [
      'the stream timeout is too short',
      { streamTimeout: Duration.seconds(3) },
      /streamTimeout is 3 seconds; allow at least 10 seconds/,
    ],
    [
      'the upstream timeout is longer than API Gateway keeps a silent stream open',
      { upstreamTimeout: Duration.minutes(20), streamTimeout: Duration.minutes(15) },
      /upstreamTimeout is 20 minutes; use at most 5 minutes: .*, and API Gateway ends a stream idle for 5 minutes/,
    ],
    [
      'the upstream timeout is longer than the stream timeout',
      { upstreamTimeout: Duration.minutes(2), streamTimeout: Duration.minutes(1) },
      /upstreamTimeout is 2 minutes; use at most streamTimeout \(1 minute\): the proxy's invocation ends first/,
    ],
    ['throttling is not positive', { throttlingRateLimit: -1 }, /throttlingRateLimit is -1; give a positive number/],
    [
      'throttling gives an authorized method less than one request',
      { throttlingBurstLimit: 3 },
      /throttlingBurstLimit is 3; give at least 4: API Gateway applies it to each of the 4 authorized methods/,
    ],

    ['the stage name has odd characters', { stageName: 'my stage' }, /stageName is "my stage"/],
    [
      'an endpoint is not an API path',
      { endpoints: { chat: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } } },
      /endpoints\['chat'\] is not an API path/,
    ],
    [
      'an endpoint has no models',
      { endpoints: { [CHAT]: { models: {} } } },
      /V\/Limiter: endpoints\['\/v1\/chat\/completions'\].models: expected at least one allowed model/,
    ],
    [
      'a rate is negative',
      {
        plans: {
          team: { user: [{ counts: 'requests', limit: { shape: 'token_bucket', capacity: 10, refillPerSecond: -1 } }] },
        },
      } as never,
      /V\/Limiter: plans.team.user\[0\].limit: tokenBucket refillPerSecond must be a positive finite number, got -1/,
    ],
    [
      'a shape is unknown',
      { plans: { team: { user: [{ counts: 'requests', limit: { shape: 'fixed_window', limit: 10 } }] } } } as never,
      /unknown shape "fixed_window": use token_bucket, leaky_bucket or sliding_window/,
    ],
    [
      'an endpoint is a path the proxy does not serve',
      {
        endpoints: {
          '/v1/images/generations': { models: { 'gpt-image-1': { inputPerMillion: 1, outputPerMillion: 1 } } },
        },
      },
      new RegExp(
        [
          /V\/Limiter: endpoints\['\/v1\/images\/generations'\]: the proxy does not serve this route: /.source,
          /use \/v1\/chat\/completions, \/v1\/embeddings, \/v1\/responses, \/v1\/messages/.source,
        ].join(''),
      ),
    ],
    [
      'a plan limits an endpoint that does not exist',
      { plans: { team: { endpoints: { '/v1/images': [requestsPerMinute(5)] } } } },
      /V\/Limiter: plans.team.endpoints\['\/v1\/images'\]: no such endpoint: add it to endpoints or remove the limits/,
    ],
    [
      'a global limit is smaller than its shards',
      { globalLimits: [requestsPerMinute(4)], globalShards: 8 },
      /V\/Limiter: globalLimits: per_minute allows 4, fewer than its 8 shards: lower the number of shards/,
    ],
    [
      'fair shares are asked for with no global limit to share',
      { globalFairShare: true, globalLimits: undefined },
      /V\/Limiter: globalFairShare is set without globalLimits; give the global limits to share, or leave it out/,
    ],
    [
      'a plan has a weight but the global is not shared (it would do nothing)',
      { plans: { team: { globalWeight: 3 } }, globalLimits: [requestsPerMinute(600)] },
      /V\/Limiter: plans.team.globalWeight: a weight counts only in a shared global limit: set globalFairShare: true/,
    ],
    [
      'a weight is not a number from 0.01 to 10,000',
      { plans: { team: { globalWeight: 0 } }, globalLimits: [tokensPerMinute(60_000)], globalFairShare: true },
      /V\/Limiter: plans.team.globalWeight: expected a weight from 0.01 to 10000, got 0/,
    ],
    [
      'a failure mode names no layer',
      { failureModes: { team: 'open' } as never },
      /V\/Limiter: failureModes.team: unknown layer/,
    ],
    ['there is no plan', { plans: {} }, /V\/Limiter: plans: expected at least one plan/],
    [
      'a plan field is misspelt (its limits would never apply)',
      { plans: { team: { users: [requestsPerMinute(5)] } } } as never,
      /V\/Limiter: plans.team.users: unknown field: use tenant, user, endpoints, outputReservation/,
    ],
    [
      'a body limit is past what one Lambda invocation carries',
      {
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } }, maxBodyBytes: 6_000_000 } },
      },
      /endpoints\['\/v1\/chat\/completions'\].maxBodyBytes is 6000000; use at most 3000000: Lambda takes at most 6 MB/,
    ],
    [
      'a cached input price is above the list price',
      {
        endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1, cachedInputPerMillion: 2 } } } },
      },
      /models.m.cachedInputPerMillion: expected at most inputPerMillion \(a cached token never costs more\)/,
    ],
    [
      'the output cap field is unknown',
      {
        endpoints: {
          [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1, outputCapField: 'max_new' } } },
        },
      } as never,
      /models.m.outputCapField: expected one of 'max_completion_tokens', 'max_tokens', 'both'/,
    ],
    [
      'a service tier re-prices the standard one',
      {
        endpoints: {
          [CHAT]: {
            models: {
              m: {
                inputPerMillion: 1,
                outputPerMillion: 1,
                serviceTiers: { default: { inputPerMillion: 1, outputPerMillion: 1 } },
              },
            },
          },
        },
      },
      /models.m.serviceTiers.default: 'default' uses the model's own prices/,
    ],
    [
      'a default output cap is not a whole number',
      { endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1, defaultMaxTokens: 0.5 } } } } },
      /models.m.defaultMaxTokens: expected a whole number of tokens >= 1, got 0.5/,
    ],
    [
      'the authorizer reservation is not a whole number',
      { authorizerReservedConcurrency: 0 },
      /authorizerReservedConcurrency is 0; give a whole number of executions >= 1, or false/,
    ],
    [
      'the brake parameter name breaks SSM naming rules',
      { brakeParameterName: 'llm/brake' },
      /V\/Limiter: brakeParameterName is "llm\/brake"; use 1-1011 of a-z, A-Z, 0-9, _ \. - and \/, a leading \/ if it has one/,
    ],
    [
      'the brake parameter name starts with aws',
      { brakeParameterName: '/aws/brake' },
      /brakeParameterName is "\/aws\/brake"; .*not starting with aws or ssm/,
    ],
    [
      'vpcSubnets are given without a VPC',
      { vpcSubnets: { subnetGroupName: 'app' } },
      /V\/Limiter: vpcSubnets is set without vpc; give vpc too, or leave vpcSubnets out/,
    ],
    [
      'a plan helper was given zero',
      { plans: { team: { user: [tokensPerMinute(20_000), requestsPerMinute(0)] } } },
      /V\/Limiter: plans.team.user\[1\]: requestsPerMinute\(0\): give a positive number of requests$/,
    ],
    [
      'a shape helper was given a window it does not understand',
      { plans: { team: { endpoints: { [CHAT]: [tokens(slidingWindow(5, '1 minute'))] } } } },
      /V\/Limiter: plans.team.endpoints\['\/v1\/chat\/completions'\]\[0\]: slidingWindow\(5, '1 minute'\): duration '1 minute' is not understood/,
    ],
    [
      'the proxy memory is below what it was measured to need',
      { proxyMemorySize: 128 },
      /proxyMemorySize is 128; give a whole number of MB from 256 to 10240/,
    ],
    [
      'the brake reservation is not a whole number',
      { brakeReservedConcurrency: 1.5 },
      /brakeReservedConcurrency is 1.5; give a whole number of executions >= 1, or false for no reservation/,
    ],
  ])('throws when %s', (_name, overrides, message) => {
    expect(build(overrides)).toThrow(message);
  });

  it("reports every problem at once, after the construct's path, each naming the prop", () => {
    const overrides: Partial<LlmRateLimiterProps> = {
      keyCacheTtl: Duration.minutes(5),
      stageName: 'my stage',
      plans: {
        team: { users: [requestsPerMinute(5)] },
        gold: { tenant: [{ counts: 'requests', limit: { shape: 'fixed_window', limit: 10 } }] },
      } as never,
      globalLimits: [requestsPerMinute(4)],
    };
    expect(build(overrides)).toThrow(
      [
        'V/Limiter: 5 props are not valid:',
        '  - keyCacheTtl is 5 minutes; use at most 60 seconds (it is how long a revoked key keeps working)',
        '  - stageName is "my stage"; use letters, digits, - and _',
        '  - plans.team.users: unknown field: use tenant, user, endpoints, outputReservation, globalReserve, globalWeight',
        '  - plans.gold.tenant[0].limit: unknown shape "fixed_window": use token_bucket, leaky_bucket or sliding_window',
        '  - globalLimits: per_minute allows 4, fewer than its 8 shards: lower the number of shards',
      ].join('\n'),
    );
  });
});

describe('plan helpers', () => {
  it('never throw where they are called: the construct reports every problem at once, naming the helper and where it is', () => {
    const plans = {
      team: {
        tenant: [tokensPerDay(-5)],
        user: [requestsPerMinute(60), requestsPerMinute(Number.NaN, { name: 'burst' })],
        endpoints: { [CHAT]: [tokens(tokenBucket(0, 1))] },
      },
    };
    const globalLimits = [usdPerDay(0), ...bedrockQuota({ tokensPerMinute: 0.5 })];
    const stack = new Stack(new App(), 'Helpers');
    expect(() => new LlmRateLimiter(stack, 'Limiter', props(stack, { plans, globalLimits }))).toThrow(
      [
        'Helpers/Limiter: 5 props are not valid:',
        '  - plans.team.tenant[0]: tokensPerDay(-5): give a positive number of tokens',
        "  - plans.team.user[1]: requestsPerMinute(NaN, { name: 'burst' }): give a positive number of requests",
        "  - plans.team.endpoints['/v1/chat/completions'][0]: tokenBucket(0, 1): capacity must be a positive finite number, got 0",
        '  - globalLimits[0]: usdPerDay(0): give a positive number of dollars',
        '  - globalLimits[1]: bedrockQuota({ tokensPerMinute: 0.5 }): tokensPerMinute is 0.5; give the quota as a whole number >= 1',
      ].join('\n'),
    );
  });
});

describe('several limiters in one app', () => {
  it('synthesises two instances in one stack and one in each of two stacks, with nothing shared by name', () => {
    const app = new App();
    const one = new Stack(app, 'One');
    const staging = new LlmRateLimiter(one, 'Staging', props(one));
    const canary = new LlmRateLimiter(one, 'Canary', props(one, { plans: { team: { user: [requestsPerMinute(5)] } } }));
    const two = new Stack(app, 'Two');
    new LlmRateLimiter(two, 'Limiter', props(two));
    const assembly = app.synth();
    expect(assembly.stacks.map((s) => s.stackName).sort()).toEqual(['One', 'Two']);
    const template = Template.fromStack(one);
    template.resourceCountIs('AWS::ApiGateway::RestApi', 2);
    template.resourceCountIs('AWS::DynamoDB::Table', 4); // each limiter's table and its usage ledger's
    template.resourceCountIs('AWS::SSM::Parameter', 2);
    // No physical names are fixed, so nothing clashes across stacks or environments.
    for (const type of [
      'AWS::DynamoDB::Table',
      'AWS::SSM::Parameter',
      'AWS::Lambda::Function',
      'AWS::CloudWatch::Dashboard',
    ]) {
      for (const r of Object.values(template.findResources(type)))
        expect(
          r.Properties.TableName ?? r.Properties.Name ?? r.Properties.FunctionName ?? r.Properties.DashboardName,
        ).toBeUndefined();
    }
    // Each instance's functions carry their own configuration.
    const code = (fn: lambda.Function) =>
      (one.resolve((fn.node.defaultChild as lambda.CfnFunction).code) as { s3Key: string }).s3Key;
    expect(code(staging.authorizerFunction)).not.toBe(code(canary.authorizerFunction));
    expect(code(staging.proxyFunction)).not.toBe(code(canary.proxyFunction));
  });
});
