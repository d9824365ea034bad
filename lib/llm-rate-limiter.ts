import { CfnOutput, CustomResource, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type { Table } from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import {
  apiRoutes,
  FUNCTION_SETTINGS,
  functionEnvironment,
  proxyEnvironment,
  type UpstreamTarget,
  USAGE_PAGE_ROUTE,
  USAGE_PAGE_THROTTLE,
} from '../lambda/gateway/api';
import type { LimiterConfig } from '../lambda/engine/plans';
import { configSha256 } from '../lambda/engine/config-hash';
import { GATEWAY_RESPONSES } from '../lambda/gateway/responses';
import { acknowledge } from './acknowledge';
import { anyRegionModelArn, bedrockStatements, configuredBedrockModels } from './bedrock-models';
import { LimiterFunction } from './limiter-function';
import { LimitsTable } from './limits-table';
import { LimiterObservability } from './observability';
import {
  DEFAULT_AUTHORIZER_RESERVED_CONCURRENCY,
  DEFAULT_STREAM_TIMEOUT,
  DEFAULT_BRAKE_RESERVED_CONCURRENCY,
  type LlmRateLimiterProps,
  methodThrottle,
  upstreamTimeoutOf,
  validateProps,
} from './props';
import { type Upstream, upstreamOf } from './upstream';

export { LIMITS_ROUTE } from '../lambda/gateway/api';

/**
 * An OpenAI-compatible API in front of an LLM provider, rate-limited per tenant, user, endpoint and
 * globally: API Gateway (REST, regional) -> a Lambda REQUEST authorizer (limits in DynamoDB, the SSM
 * brake) -> a response-streaming Lambda (token reservation and settlement) -> the upstream.
 */
export class LlmRateLimiter extends Construct {
  /** The DynamoDB table: buckets, hashed API keys, tenants, penalty state (output `TableName`). */
  readonly table: Table;
  /** The REST API (a custom domain, WAF or usage plans attach here). */
  readonly api: apigw.RestApi;
  /** The brake: the SSM parameter operators flip (output `BrakeParameterName`). */
  readonly brakeParameter: ssm.StringParameter;
  /** The REQUEST authorizer: identity, brake and layered limits for every request. */
  readonly authorizerFunction: LimiterFunction;
  /** The streaming proxy: validates, reserves, calls the upstream and settles. */
  readonly proxyFunction: LimiterFunction;
  /** Serves `GET /v1/limits` and `GET /v1/models`. */
  readonly limitsFunction: LimiterFunction;
  /** Copies the brake parameter into the table (on change and once a minute). */
  readonly brakeMirrorFunction: LimiterFunction;
  /** Dashboard, alarms, the alarm topic and (opt-in) the automatic brake. */
  readonly observability: LimiterObservability;
  /** The base URL OpenAI clients use (ends in /v1). */
  readonly baseUrl: string;

  /**
   * @param scope - the parent construct
   * @param id - the construct's id, unique within its scope
   * @param props - the plans, endpoints and upstream, and how the pieces behave
   */
  constructor(scope: Construct, id: string, props: LlmRateLimiterProps) {
    super(scope, id);
    const config = validateProps(props, this.node.path);
    const upstream = upstreamOf(props);
    const target: UpstreamTarget =
      upstream.kind === 'bedrock'
        ? { kind: 'bedrock', region: upstream.region ?? Stack.of(this).region }
        : { kind: upstream.kind, baseUrl: upstream.baseUrl!, apiKeySecret: upstream.apiKeySecret!.secretArn };
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.table = new LimitsTable(this, 'Limits', { removalPolicy }).table;
    this.brakeParameter = new ssm.StringParameter(this, 'Brake', {
      ...(props.brakeParameterName ? { parameterName: props.brakeParameterName } : {}),
      stringValue: 'off',
      description: 'LLM rate limiter kill-switch: off, or {"enabled": true, "reason": "...", "until": "<ISO time>"}',
    });
    const functions = this.createFunctions(props, config, retention, target);
    this.authorizerFunction = functions.authorizer;
    this.proxyFunction = functions.proxy;
    this.limitsFunction = functions.limits;
    this.grantFunctions();
    if (target.kind === 'bedrock') this.grantBedrock(target.region, config);
    else this.grantSecret(upstream.apiKeySecret!);
    const brakeReserved = props.brakeReservedConcurrency ?? DEFAULT_BRAKE_RESERVED_CONCURRENCY;
    this.brakeMirrorFunction = this.mirrorBrake(retention, brakeReserved);
    this.api = this.createApi(props, config, retention);
    this.observability = new LimiterObservability(this, 'Observability', {
      authorizerFunction: this.authorizerFunction,
      proxyFunction: this.proxyFunction,
      brakeParameter: this.brakeParameter,
      logRetention: retention,
      proxyLogGroup: this.proxyFunction.logGroup,
      metricsByTenant: props.metricsByTenant ?? false,
      removalPolicy,
      ...(props.alarms ? { alarms: props.alarms } : {}),
      ...(props.automaticBrake ? { automaticBrake: props.automaticBrake } : {}),
      brakeReservedConcurrency: brakeReserved,
    });
    this.publishConfig(config, retention);
    this.acknowledgeNagFindings();
    this.baseUrl = `${this.api.url}v1`;
    new CfnOutput(this, 'AlarmTopicArn', {
      value: this.observability.alarmTopic.topicArn,
      description: 'Subscribe operators here',
    });
    new CfnOutput(this, 'ApiUrl', { value: this.baseUrl, description: 'Base URL for OpenAI clients' });
    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'BrakeParameterName', { value: this.brakeParameter.parameterName });
  }

  /** The three functions on the request path, each with config.json beside its handler and the environment the settings give it. */
  private createFunctions(
    props: LlmRateLimiterProps,
    config: LimiterConfig,
    retention: logs.RetentionDays,
    upstream: UpstreamTarget,
  ) {
    // Unset props are left out: the settings' defaults (lambda/runtime/settings.ts) apply.
    const environment = functionEnvironment({
      tableName: this.table.tableName,
      brakeParameterName: this.brakeParameter.parameterName,
      settings: {
        ...(props.keyCacheTtl ? { keyCacheTtlSeconds: props.keyCacheTtl.toSeconds() } : {}),
        ...(props.brakeCacheTtl ? { brakeCacheTtlSeconds: props.brakeCacheTtl.toSeconds() } : {}),
        ...(props.brakeColdStart ? { brakeColdStart: props.brakeColdStart } : {}),
        ...(props.brakeRetryAfter ? { brakeRetryAfterSeconds: props.brakeRetryAfter.toSeconds() } : {}),
        ...(props.clockSkew ? { clockSkewMs: props.clockSkew.toMilliseconds() } : {}),
        ...(props.leasePercent !== undefined ? { leasePercent: props.leasePercent } : {}),
        ...(props.metricsByTenant !== undefined ? { metricsByTenant: props.metricsByTenant } : {}),
      },
    });
    // The configuration travels as config.json beside each handler: reviewable in cdk.out, no 4 KB environment limit.
    const common = { config, environment, logRetention: retention };
    const reserved = props.authorizerReservedConcurrency ?? DEFAULT_AUTHORIZER_RESERVED_CONCURRENCY;
    const authorizer = new LimiterFunction(this, 'Authorizer', {
      ...common,
      handler: 'authorizer',
      memorySize: FUNCTION_SETTINGS.authorizer.memorySize,
      timeout: Duration.seconds(FUNCTION_SETTINGS.authorizer.timeoutSeconds),
      description: 'LLM rate limiter: identity, brake, layered limits',
      ...(reserved === false ? {} : { reservedConcurrentExecutions: reserved }),
    });
    const upstreamTimeout = upstreamTimeoutOf(props);
    const proxy = new LimiterFunction(this, 'Proxy', {
      ...common,
      handler: 'proxy',
      memorySize: FUNCTION_SETTINGS.proxy.memorySize,
      timeout: props.streamTimeout ?? DEFAULT_STREAM_TIMEOUT,
      description: 'LLM rate limiter: token reservation, streaming pass-through, settlement',
      environment: {
        ...environment,
        ...proxyEnvironment({
          upstream,
          ...(upstreamTimeout ? { upstreamTimeoutMs: upstreamTimeout.toMilliseconds() } : {}),
        }),
      },
    });
    const limits = new LimiterFunction(this, 'LimitsFunction', {
      ...common,
      handler: 'limits',
      memorySize: FUNCTION_SETTINGS.limits.memorySize,
      timeout: Duration.seconds(FUNCTION_SETTINGS.limits.timeoutSeconds),
      description: 'LLM rate limiter: GET /v1/limits',
    });
    return { authorizer, proxy, limits };
  }

  /** Least privilege: each function gets the actions it calls, on this table only. */
  private grantFunctions(): void {
    this.table.grant(this.authorizerFunction, 'dynamodb:GetItem', 'dynamodb:UpdateItem');
    // No BatchGetItem: a settlement reads nothing. It refunds from what the reservation's own write
    // returned, in the same invocation (the engine reads only items its container has never seen).
    this.table.grant(this.proxyFunction, 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:PutItem');
    this.table.grant(this.limitsFunction, 'dynamodb:GetItem');
    // The brake parameter itself, read only when the mirror's copy is stale (lambda/runtime/brake.ts).
    for (const fn of [this.authorizerFunction, this.proxyFunction, this.limitsFunction])
      fn.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.brakeParameter.parameterArn] }),
      );
  }

  /** A keyed upstream: the proxy reads its key from this secret, and from nothing else. */
  private grantSecret(secret: NonNullable<Upstream['apiKeySecret']>): void {
    // IAM matches a secret by its complete ARN (name + '-' + six random characters): a secret known
    // by name or partial ARN is granted with the '-??????' wildcard Secrets Manager documents.
    this.proxyFunction.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue'],
        resources: [secret.secretFullArn ?? `${secret.secretArn}-??????`],
      }),
    );
    // A secret encrypted with a customer managed key: Secrets Manager decrypts with the caller's permissions.
    secret.encryptionKey?.grantDecrypt(this.proxyFunction);
  }

  /** Bedrock: the proxy may call exactly the configured models (lib/bedrock-models.ts says why each ARN). */
  private grantBedrock(region: string, config: LimiterConfig): void {
    const stack = Stack.of(this);
    const models = configuredBedrockModels(config, { partition: stack.partition, region, account: stack.account });
    for (const s of bedrockStatements(models)) {
      this.proxyFunction.addToRolePolicy(
        new iam.PolicyStatement({
          actions: [...s.actions],
          resources: [...s.resources],
          ...(s.throughProfile
            ? { conditions: { StringEquals: { 'bedrock:InferenceProfileArn': s.throughProfile } } }
            : {}),
        }),
      );
    }
    const anyRegion = [
      ...new Set(
        models.flatMap((m) =>
          m.kind === 'inference-profile' ? [anyRegionModelArn(m.partition, m.foundationModel)] : [],
        ),
      ),
    ];
    acknowledge(
      this.proxyFunction.role!,
      ...anyRegion.map((arn) => ({
        id: `AwsSolutions::AwsSolutions-IAM5[Resource::${arn.replace(stack.partition, '<AWS::Partition>')}]`,
        reason:
          'A cross-Region inference profile routes to its foundation model in regions AWS chooses (and adds to); the grant is this one model, only through the configured profile (condition bedrock:InferenceProfileArn), never directly.',
      })),
    );
  }

  /**
   * The brake: operators flip the SSM parameter; the mirror copies it into the table on every
   * change (EventBridge) and once a minute, and the functions read the table. Parameter Store
   * serves 40 GetParameter calls a second per account by default: thousands of containers
   * reading it every 5 s would be throttled exactly when traffic is highest (docs/aws-fidelity.md).
   */
  private mirrorBrake(retention: logs.RetentionDays, reserved: number | false): LimiterFunction {
    const mirror = new LimiterFunction(this, 'BrakeMirror', {
      handler: 'brake-mirror',
      memorySize: 256,
      timeout: Duration.seconds(10),
      logRetention: retention,
      reservedConcurrentExecutions: reserved,
      environment: { TABLE_NAME: this.table.tableName, BRAKE_PARAMETER_NAME: this.brakeParameter.parameterName },
      description: 'LLM rate limiter: copies the brake parameter into the table the functions read',
    });
    mirror.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.brakeParameter.parameterArn] }),
    );
    this.table.grant(mirror, 'dynamodb:UpdateItem');
    const mirrorTarget = new targets.LambdaFunction(mirror, { retryAttempts: 2 });
    new events.Rule(this, 'BrakeChanged', {
      description: 'LLM rate limiter: mirror the brake when its parameter changes',
      eventPattern: {
        source: ['aws.ssm'],
        detailType: ['Parameter Store Change'],
        detail: { name: [this.brakeParameter.parameterName] },
      },
      targets: [mirrorTarget],
    });
    new events.Rule(this, 'BrakeReconcile', {
      description: 'LLM rate limiter: mirror the brake once a minute (change events are best effort)',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [mirrorTarget],
    });
    return mirror;
  }

  /** The REST API: the stage, the authorizer, the gateway responses and a method per route (lambda/gateway/api.ts). */
  private createApi(props: LlmRateLimiterProps, config: LimiterConfig, retention: logs.RetentionDays): apigw.RestApi {
    const throttle = methodThrottle(props);
    const accessLogs = new logs.LogGroup(this, 'AccessLogs', { retention, removalPolicy: RemovalPolicy.DESTROY });
    const api = new apigw.RestApi(this, 'Api', {
      description: 'OpenAI-compatible API with per-tenant, per-user, per-endpoint and global rate limits',
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      ...(props.cloudWatchRole === false
        ? { cloudWatchRole: false }
        : { cloudWatchRole: true, cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN }),
      deployOptions: {
        stageName: props.stageName ?? 'live',
        // API Gateway applies these to each method (not to the stage as a whole): a share of the total each.
        throttlingRateLimit: throttle.rateLimit,
        throttlingBurstLimit: throttle.burstLimit,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields({
          caller: false,
          httpMethod: true,
          ip: true,
          protocol: true,
          requestTime: true,
          resourcePath: true,
          responseLength: true,
          status: true,
          user: true,
        }),
        tracingEnabled: true,
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        // The usage page needs no key (it is static; its data comes from /v1/limits with one): its own small throttle.
        methodOptions: {
          [`${USAGE_PAGE_ROUTE}/GET`]: {
            throttlingRateLimit: USAGE_PAGE_THROTTLE.rateLimit,
            throttlingBurstLimit: USAGE_PAGE_THROTTLE.burstLimit,
          },
        },
      },
    });
    const authorizer = new apigw.RequestAuthorizer(this, 'RequestAuthorizer', {
      handler: this.authorizerFunction,
      identitySources: [], // keys come from Authorization or x-api-key: the authorizer reads both
      resultsCacheTtl: Duration.seconds(0), // every request is decided; never a cached Allow
    });
    for (const def of GATEWAY_RESPONSES) {
      api.addGatewayResponse(def.type, {
        type: apigw.ResponseType.of(def.type),
        ...(def.statusCode ? { statusCode: def.statusCode } : {}),
        responseHeaders: def.responseHeaders,
        templates: { 'application/json': def.template },
      });
    }
    // One permission per function for the whole API (execute-api:<api>/*/*/*), not two per method:
    // a function's resource policy holds at most 20 KB, which about 24 endpoints filled.
    const integrations = {
      proxy: new apigw.LambdaIntegration(this.proxyFunction, {
        responseTransferMode: apigw.ResponseTransferMode.STREAM,
        timeout: props.streamTimeout ?? DEFAULT_STREAM_TIMEOUT,
        scopePermissionToMethod: false,
      }),
      limits: new apigw.LambdaIntegration(this.limitsFunction, { scopePermissionToMethod: false }),
    };
    const methodOptions = { authorizer, authorizationType: apigw.AuthorizationType.CUSTOM };
    for (const route of apiRoutes(config.endpoints)) {
      const method = this.resourceFor(api, route.path).addMethod(
        route.method,
        integrations[route.integration],
        route.authorized ? methodOptions : { authorizationType: apigw.AuthorizationType.NONE },
      );
      if (!route.authorized) {
        acknowledge(
          method,
          {
            id: 'AwsSolutions::AwsSolutions-APIG4',
            reason:
              'The usage page is static HTML with no data in it; the data it shows comes from GET /v1/limits, which the authorizer guards. Its own stage throttle bounds what it costs.',
          },
          {
            id: 'AwsSolutions::AwsSolutions-COG4',
            reason: 'The usage page is static HTML with no data in it: nothing to authorize.',
          },
        );
      }
    }
    return api;
  }

  /**
   * Writes the validated configuration into the table at every deploy that changes it (a custom
   * resource served by a limiter function of its own, with config.json like the others), where
   * the CLI finds it from `--stack` or `--table`: plans are checked and usage reported against
   * what the functions run with, with no copy to keep in step.
   */
  private publishConfig(config: ReturnType<typeof validateProps>, retention: logs.RetentionDays): void {
    const publisher = new LimiterFunction(this, 'ConfigPublisher', {
      handler: 'config-publisher',
      config,
      memorySize: 256,
      // Room to retry while IAM propagates the role's new policy (the handler keeps 12 s for its answer).
      timeout: Duration.minutes(1),
      logRetention: retention,
      environment: { TABLE_NAME: this.table.tableName },
      description: 'LLM rate limiter: publishes the limiter configuration in the table for the admin CLI (at deploy)',
    });
    // GetItem: an update naming a configuration published before (a rollback) reads it by its hash.
    this.table.grant(publisher, 'dynamodb:PutItem', 'dynamodb:GetItem');
    new CustomResource(this, 'PublishedConfig', {
      serviceToken: publisher.functionArn,
      resourceType: 'Custom::LlmRateLimiterConfig',
      // A changed configuration is a changed property: CloudFormation sends an Update.
      properties: { ConfigSha256: configSha256(config) },
      serviceTimeout: Duration.minutes(2),
    });
  }

  /**
   * Lets `grantee` flip and read the brake (an operator role, an automation).
   * @param grantee - the role or user
   */
  grantBrake(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['ssm:GetParameter', 'ssm:PutParameter'],
      resourceArns: [this.brakeParameter.parameterArn],
    });
  }

  /**
   * Lets `grantee` run the admin CLI: tenants, keys and usage in the table.
   * @param grantee - the role or user
   */
  grantAdmin(grantee: iam.IGrantable): iam.Grant {
    return this.table.grant(
      grantee,
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:Scan',
      'dynamodb:ConditionCheckItem',
    );
  }

  /** cdk-nag (AwsSolutions) findings this construct keeps on purpose, each with its reason. */
  private acknowledgeNagFindings(): void {
    acknowledge(
      this.api,
      {
        id: 'AwsSolutions::AwsSolutions-APIG2',
        reason:
          'Request bodies are validated by the proxy, so that errors come back in OpenAI’s error shape naming the field.',
      },
      {
        id: 'AwsSolutions::AwsSolutions-COG4',
        reason:
          'Clients authenticate with API keys (OpenAI-compatible Bearer tokens) checked by the Lambda REQUEST authorizer, not Cognito.',
      },
      {
        id: 'AwsSolutions::AwsSolutions-APIG3',
        reason:
          'Attaching a WAF web ACL is left to the user; abuse and rate limiting per tenant are what this construct does.',
      },
      {
        id: 'AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason:
          'The account-level role API Gateway needs to write access and execution logs; this AWS managed policy is the documented way.',
      },
    );
  }

  private resourceFor(api: apigw.RestApi, route: string): apigw.IResource {
    return route
      .split('/')
      .filter(Boolean)
      .reduce<apigw.IResource>((parent, part) => parent.getResource(part) ?? parent.addResource(part), api.root);
  }
}
