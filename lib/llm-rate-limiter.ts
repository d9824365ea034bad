import { CfnOutput, CustomResource, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type { Table } from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
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
import { ALERT_DETAIL_TYPE, ALERT_SOURCE } from '../lambda/engine/alerts';
import { acknowledge } from './acknowledge';
import { anyRegionModelArn, bedrockStatements, configuredBedrockModels } from './bedrock-models';
import { type FunctionPlacement, LimiterFunction } from './limiter-function';
import { LedgerTable, LimitsTable } from './limits-table';
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
  /** The DynamoDB table of buckets, keys, tenants and the published configuration (output `<id>TableName`). */
  readonly table: Table;
  /**
   * The REST API, named `<stack name>-<construct id>`; add a custom domain, a WAF web ACL or usage
   * plans through it.
   * @example limiter.api.addDomainName('Domain', { domainName: 'llm.example.com', certificate, basePath: 'ai' })
   */
  readonly api: apigw.RestApi;
  /**
   * The usage ledger: per tenant, user, model and day, what was used and denied (output
   * `<id>LedgerTableName`; `llm-limiter usage --from --to` reads it).
   */
  readonly ledgerTable: Table;
  /** The brake (kill-switch) operators flip (output `<id>BrakeParameterName`); see grantBrake. */
  readonly brakeParameter: ssm.StringParameter;
  /** The REQUEST authorizer: identity, brake, layered limits. */
  readonly authorizerFunction: LimiterFunction;
  /** The response-streaming proxy: token reservation, the upstream call, settlement. */
  readonly proxyFunction: LimiterFunction;
  /** Serves `GET /v1/limits` (a caller's own limits and usage) and `GET /v1/models`. */
  readonly limitsFunction: LimiterFunction;
  /** Copies the brake parameter into the table (on change and once a minute). */
  readonly brakeMirrorFunction: LimiterFunction;
  /** Sets the brake when global spend crosses `automaticBrake.spendPerHourUsd`; undefined unless automaticBrake is on. */
  readonly autoBrakeFunction?: LimiterFunction;
  /** Where every alarm notifies (output `<id>AlarmTopicArn`): the `alarmTopic` prop, the topic made here, or undefined with `alarmTopic: false`. */
  readonly alarmTopic?: sns.ITopic;
  /** Alarms, the alarm topic and (opt-in) the dashboard and the automatic brake. */
  readonly observability: LimiterObservability;
  /** The base URL OpenAI clients use, ending in /v1 (output `<id>ApiUrl`): `https://<api id>.execute-api.<region>.amazonaws.com/<stage>/v1`. */
  readonly apiUrl: string;

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
    const placement: FunctionPlacement = {
      logRetention: retention,
      removalPolicy,
      ...(props.vpc
        ? {
            vpc: props.vpc,
            vpcSubnets: props.vpcSubnets,
            // One group for all the functions (none accepts connections): egress to DynamoDB, SSM and the upstream.
            securityGroups: props.securityGroups ?? [
              new ec2.SecurityGroup(this, 'FunctionsSecurityGroup', {
                vpc: props.vpc,
                description: 'LLM rate limiter functions (outbound only)',
                allowAllOutbound: true,
              }),
            ],
          }
        : {}),
    };
    this.table = new LimitsTable(this, 'Limits', { removalPolicy }).table;
    this.ledgerTable = new LedgerTable(this, 'Ledger', { removalPolicy }).table;
    this.brakeParameter = new ssm.StringParameter(this, 'Brake', {
      ...(props.brakeParameterName ? { parameterName: props.brakeParameterName } : {}),
      stringValue: 'off',
      description: 'LLM rate limiter kill-switch: off, or {"enabled": true, "reason": "...", "until": "<ISO time>"}',
    });
    const functions = this.createFunctions(props, config, placement, target);
    this.authorizerFunction = functions.authorizer;
    this.proxyFunction = functions.proxy;
    this.limitsFunction = functions.limits;
    this.grantFunctions();
    this.routeAlerts(props);
    if (target.kind === 'bedrock') this.grantBedrock(target.region, config);
    else this.grantSecret(upstream.apiKeySecret!);
    const brakeReserved = props.brakeReservedConcurrency ?? DEFAULT_BRAKE_RESERVED_CONCURRENCY;
    this.brakeMirrorFunction = this.mirrorBrake(placement, brakeReserved);
    this.api = this.createApi(props, config, placement);
    this.observability = new LimiterObservability(this, 'Observability', {
      authorizerFunction: this.authorizerFunction,
      proxyFunction: this.proxyFunction,
      brakeMirrorFunction: this.brakeMirrorFunction,
      brakeParameter: this.brakeParameter,
      functionPlacement: placement,
      proxyLogGroup: this.proxyFunction.logGroup,
      metricsByTenant: props.metricsByTenant ?? false,
      ...(props.alarmTopic !== undefined ? { alarmTopic: props.alarmTopic } : {}),
      ...(props.alarms ? { alarms: props.alarms } : {}),
      ...(props.automaticBrake ? { automaticBrake: props.automaticBrake } : {}),
      brakeReservedConcurrency: brakeReserved,
      dashboard: props.dashboard ?? false,
    });
    this.alarmTopic = this.observability.alarmTopic;
    this.autoBrakeFunction = this.observability.autoBrakeFunction;
    this.publishConfig(config, placement);
    this.acknowledgeNagFindings();
    this.apiUrl = `${this.api.url}v1`;
    this.addOutputs();
  }

  /**
   * The outputs, under keys that do not change: `<id>ApiUrl` and so on, where `<id>` is the
   * construct's path in its stack without separators (`Limiter` for `new LlmRateLimiter(stack, 'Limiter')`),
   * so that two limiters in one stack each have theirs. Outputs, not exports: an export name is one
   * per account and region, and a stack cannot change or drop an export another stack imports.
   */
  private addOutputs(): void {
    const prefix = this.idsInStack()
      .map((id) => id.replace(/[^A-Za-z0-9]/g, ''))
      .join('');
    const output = (name: string, value: string, description: string) =>
      new CfnOutput(this, name, { value, description }).overrideLogicalId(`${prefix}${name}`);
    output('ApiUrl', this.apiUrl, 'Base URL for OpenAI clients (ends in /v1); Anthropic clients take it without /v1');
    output(
      'TableName',
      this.table.tableName,
      'The limiter table: tenants, keys, buckets (the admin CLI finds it here)',
    );
    output(
      'LedgerTableName',
      this.ledgerTable.tableName,
      'The usage ledger: per tenant, user, model and day (llm-limiter usage --from --to reads it)',
    );
    output(
      'BrakeParameterName',
      this.brakeParameter.parameterName,
      'SSM parameter of the brake: put-parameter on / off to stop or release all model traffic',
    );
    if (this.alarmTopic)
      output(
        'AlarmTopicArn',
        this.alarmTopic.topicArn,
        'Every alarm of the limiter notifies this topic: subscribe operators here',
      );
  }

  /** The three functions on the request path, each with config.json beside its handler and the environment the settings give it. */
  private createFunctions(
    props: LlmRateLimiterProps,
    config: LimiterConfig,
    placement: FunctionPlacement,
    upstream: UpstreamTarget,
  ) {
    // Unset props are left out: the settings' defaults (lambda/runtime/settings.ts) apply.
    const environment = functionEnvironment({
      tableName: this.table.tableName,
      brakeParameterName: this.brakeParameter.parameterName,
      ledgerTableName: this.ledgerTable.tableName,
      settings: {
        ...(props.ledgerFlush ? { ledgerFlushSeconds: props.ledgerFlush.toSeconds() } : {}),
        ...(props.ledgerRetention ? { ledgerRetentionDays: props.ledgerRetention.toDays() } : {}),
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
    const common = { config, environment, ...placement };
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
      memorySize: props.proxyMemorySize ?? FUNCTION_SETTINGS.proxy.memorySize,
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
    // The ledger: each container adds to its own rows; the limits function reads a tenant's month.
    this.ledgerTable.grant(this.authorizerFunction, 'dynamodb:UpdateItem');
    this.ledgerTable.grant(this.proxyFunction, 'dynamodb:UpdateItem');
    this.ledgerTable.grant(this.limitsFunction, 'dynamodb:Query');
    // The brake parameter itself, read only when the mirror's copy is stale (lambda/runtime/brake.ts).
    for (const fn of [this.authorizerFunction, this.proxyFunction, this.limitsFunction])
      fn.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.brakeParameter.parameterArn] }),
      );
  }

  /**
   * Budget alerts (lambda/engine/alerts.ts): the authorizer (request budgets) and the proxy (token
   * and dollar budgets) claim a threshold with a conditional PutItem and put the event on the bus;
   * with `budgetAlertTopic`, a rule sends each to the topic.
   */
  private routeAlerts(props: LlmRateLimiterProps): void {
    const stack = Stack.of(this);
    const busArn =
      props.alertEventBus?.eventBusArn ??
      stack.formatArn({ service: 'events', resource: 'event-bus', resourceName: 'default' });
    this.table.grant(this.authorizerFunction, 'dynamodb:PutItem');
    for (const fn of [this.authorizerFunction, this.proxyFunction]) {
      fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['events:PutEvents'], resources: [busArn] }));
      if (props.alertEventBus) fn.addEnvironment('ALERT_EVENT_BUS', props.alertEventBus.eventBusName);
    }
    if (props.budgetAlertTopic)
      new events.Rule(this, 'BudgetAlerts', {
        description: 'Budget thresholds reached (LLM rate limiter) to the budget alert topic',
        eventBus: props.alertEventBus ?? events.EventBus.fromEventBusName(this, 'DefaultBus', 'default'),
        eventPattern: { source: [ALERT_SOURCE], detailType: [ALERT_DETAIL_TYPE] },
        targets: [new targets.SnsTopic(props.budgetAlertTopic)],
      });
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
          'A cross-Region inference profile routes to its foundation model in regions AWS chooses (and adds to); ' +
          'the grant is this one model, only through the configured profile (condition bedrock:InferenceProfileArn), ' +
          'never directly.',
      })),
    );
  }

  /**
   * The brake: operators flip the SSM parameter; the mirror copies it into the table on every
   * change (EventBridge) and once a minute, and the functions read the table. Parameter Store
   * serves 40 GetParameter calls a second per account by default: thousands of containers
   * reading it every 5 s would be throttled exactly when traffic is highest (docs/aws-fidelity.md).
   */
  private mirrorBrake(placement: FunctionPlacement, reserved: number | false): LimiterFunction {
    const mirror = new LimiterFunction(this, 'BrakeMirror', {
      ...placement,
      handler: 'brake-mirror',
      memorySize: 256,
      timeout: Duration.seconds(10),
      reservedConcurrentExecutions: reserved,
      environment: { TABLE_NAME: this.table.tableName, BRAKE_PARAMETER_NAME: this.brakeParameter.parameterName },
      description: 'LLM rate limiter: copies the brake parameter into the table the functions read',
    });
    mirror.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.brakeParameter.parameterArn] }),
    );
    // GetItem: a run reads the copies first and writes only what changed (or is due for its heartbeat).
    this.table.grant(mirror, 'dynamodb:GetItem', 'dynamodb:UpdateItem');
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
  private createApi(props: LlmRateLimiterProps, config: LimiterConfig, placement: FunctionPlacement): apigw.RestApi {
    const throttle = methodThrottle(props);
    const logGroup = { retention: placement.logRetention, removalPolicy: placement.removalPolicy };
    const accessLogs = new logs.LogGroup(this, 'AccessLogs', logGroup);
    const stageName = props.stageName ?? 'live';
    // The account's logging role is one setting per account and region: a second limiter in this
    // stack waits for the first one's instead of setting it again beside it.
    const accountSetting =
      props.cloudWatchRole === false
        ? undefined
        : Stack.of(this)
            .node.findAll()
            .find((c) => c instanceof apigw.CfnAccount);
    const api = new apigw.RestApi(this, 'Api', {
      // Named after its stack and construct, so that dev and prod are told apart in the console.
      restApiName: [Stack.of(this).stackName, ...this.idsInStack()].join('-'),
      description: 'OpenAI-compatible API with per-tenant, per-user, per-endpoint and global rate limits',
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      ...(props.cloudWatchRole === false || accountSetting
        ? { cloudWatchRole: false }
        : { cloudWatchRole: true, cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN }),
      deployOptions: {
        stageName,
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
        ...(props.tracing ? { tracingEnabled: true } : {}),
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
    // RestApi outputs its stage's root URL, which lacks /v1: the ApiUrl output is the one to use.
    api.node.tryRemoveChild('Endpoint');
    // API Gateway creates the execution log group itself, kept forever, unless it exists already: made
    // here, before the stage, it has the retention and removal policy of the other log groups.
    const executionLogs = new logs.LogGroup(this, 'ExecutionLogs', {
      ...logGroup,
      logGroupName: `API-Gateway-Execution-Logs_${api.restApiId}/${stageName}`,
    });
    api.deploymentStage.node.addDependency(executionLogs);
    if (accountSetting) api.deploymentStage.node.addDependency(accountSetting);
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
              'The usage page is static HTML with no data in it; the data it shows comes from GET /v1/limits, ' +
              'which the authorizer guards. Its own stage throttle bounds what it costs.',
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
  private publishConfig(config: ReturnType<typeof validateProps>, placement: FunctionPlacement): void {
    const publisher = new LimiterFunction(this, 'ConfigPublisher', {
      ...placement,
      handler: 'config-publisher',
      config,
      memorySize: 256,
      // Room to retry while IAM propagates the role's new policy (the handler keeps 12 s for its answer).
      timeout: Duration.minutes(1),
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
   * Lets `grantee` run the admin CLI: tenants, keys and usage in the table, and the usage ledger's export.
   * @param grantee - the role or user
   */
  grantAdmin(grantee: iam.IGrantable): iam.Grant {
    this.ledgerTable.grant(grantee, 'dynamodb:Query');
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

  /** The ids from the stack down to this construct: ['Limiter'] for `new LlmRateLimiter(stack, 'Limiter')`. */
  private idsInStack(): string[] {
    const scopes = this.node.scopes;
    return scopes.slice(scopes.indexOf(Stack.of(this)) + 1).map((c) => c.node.id);
  }

  private resourceFor(api: apigw.RestApi, route: string): apigw.IResource {
    return route
      .split('/')
      .filter(Boolean)
      .reduce<apigw.IResource>((parent, part) => parent.getResource(part) ?? parent.addResource(part), api.root);
  }
}
