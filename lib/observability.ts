import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { NAMESPACE } from '../lambda/runtime/metrics';
import { NUMBER_SETTINGS, settingsEnvironment } from '../lambda/runtime/settings';
import { type FunctionPlacement, LimiterFunction } from './limiter-function';

/**
 * The `alarms` prop: every alarm is on by default; a number tunes its threshold, `false` turns it
 * off (`true` leaves an on/off alarm on). Each alarm with its metric, default and what it says when it
 * fires: `docs/reference/alarms.md`.
 * @example
 * alarms: { spendPerHourUsd: 25, denialsPerFiveMinutes: false, authorizerThrottlesPerFiveMinutes: 20 }
 */
export interface LimiterAlarms {
  /** Global spend settled in one hour, in USD. @default 100 */
  readonly spendPerHourUsd?: number | false;
  /** Requests the authorizer denied in five minutes. @default 1000 */
  readonly denialsPerFiveMinutes?: number | false;
  /** Any settlement that gave up (its reservation then stands). @default true */
  readonly settleFailures?: boolean;
  /**
   * The authorizer could not decide (the table or the brake unreachable on a layer that fails
   * closed): clients got 503. Counts the `LimiterUnavailable` metric, not Lambda errors, which a
   * burst of bad keys also raises. @default true
   */
  readonly limiterUnavailable?: boolean;
  /** Requests denied by the brake: it is on. @default true */
  readonly brakeEngaged?: boolean;
  /** The brake parameter holds a value that is not a brake setting (the functions act as braked). @default true */
  readonly brakeUnreadable?: boolean;
  /** The upstream reported usage that cannot be right (settled on the proxy's own count instead). @default true */
  readonly usageRejected?: boolean;
  /** A key's tenant is missing, or its plan or overrides are broken: its requests get 500. @default true */
  readonly tenantMisconfigured?: boolean;
  /**
   * The brake mirror failed 3 times in 5 minutes (a run and both its retries): its copy in the
   * table goes stale, so a flip may not reach the functions. @default true
   */
  readonly brakeMirrorStale?: boolean;
  /**
   * Requests Lambda throttled at the authorizer in five minutes (more arrived than its reserved
   * executions could take): their clients got 503 before any decision, so `LimiterUnavailable` does
   * not count them. @default 1
   */
  readonly authorizerThrottlesPerFiveMinutes?: number | false;
}

/**
 * The `automaticBrake` prop: when global spend settled in one hour crosses `spendPerHourUsd`, an
 * alarm invokes a function that sets the brake (reason: the alarm; released at `until`, `brakeFor`
 * later) and notifies the alarm topic.
 * @example
 * automaticBrake: { spendPerHourUsd: 300, brakeFor: Duration.hours(1) }
 */
export interface AutomaticBrake {
  /** Global spend settled in one hour (USD) that sets the brake. */
  readonly spendPerHourUsd: number;
  /** How long the automatic brake holds before it releases itself; at most 7 days. @default `Duration.hours(1)` */
  readonly brakeFor?: Duration;
}

/** Props of {@link LimiterObservability}. */
export interface LimiterObservabilityProps {
  /** The authorizer: its throttles and latency are watched. */
  readonly authorizerFunction: lambda.IFunction;
  /** The proxy. */
  readonly proxyFunction: lambda.IFunction;
  /** The brake mirror: its own errors are the brakeMirrorStale alarm. */
  readonly brakeMirrorFunction: lambda.IFunction;
  /** The brake the automatic brake sets. */
  readonly brakeParameter: ssm.IStringParameter;
  /** Which alarms, at what thresholds (LlmRateLimiterProps.alarms). @default - every alarm at its default threshold */
  readonly alarms?: LimiterAlarms;
  /** LlmRateLimiterProps.automaticBrake. @default - no automatic brake */
  readonly automaticBrake?: AutomaticBrake;
  /** Log retention, removal policy (also the alarm topic's KMS key's) and VPC of the automatic brake's function. */
  readonly functionPlacement: FunctionPlacement;
  /** Where the alarms notify (see LlmRateLimiterProps.alarmTopic); false for nowhere. @default - an encrypted topic made here */
  readonly alarmTopic?: sns.ITopic | false;
  /** The dashboard's name. @default - a name CloudFormation generates */
  readonly dashboardName?: string;
  /**
   * Where the proxy logs (its settlement metric lines): the dashboard ranks tenants from it unless metrics are per tenant.
   * @default - no per-tenant widget without metricsByTenant
   */
  readonly proxyLogGroup?: logs.ILogGroup;
  /** Tenant is a metric dimension (see LlmRateLimiterProps.metricsByTenant). @default false */
  readonly metricsByTenant?: boolean;
  /** Executions reserved for the automatic brake (see LlmRateLimiterProps.brakeReservedConcurrency). @default - none */
  readonly brakeReservedConcurrency?: number | false;
  /** Add the dashboard (LlmRateLimiterProps.dashboard). @default true */
  readonly dashboard?: boolean;
}

const metric = (name: string, dimensions: Record<string, string>, statistic: string, period: Duration) =>
  new cloudwatch.Metric({ namespace: NAMESPACE, metricName: name, dimensionsMap: dimensions, statistic, period });

const search = (expression: string, label: string) =>
  new cloudwatch.MathExpression({ expression, label, period: Duration.minutes(5), usingMetrics: {} });

const DENIED = metric('Decisions', { Function: 'authorizer', Outcome: 'denied' }, 'Sum', Duration.minutes(5));
const ALLOWED = metric('Decisions', { Function: 'authorizer', Outcome: 'allowed' }, 'Sum', Duration.minutes(5));
const SPEND_PER_HOUR = metric('MicroUsdSettled', { Function: 'proxy' }, 'Sum', Duration.hours(1));
const SETTLE_FAILURES = metric('SettleFailures', { Function: 'proxy' }, 'Sum', Duration.minutes(5));
const count = (name: string, fn: string, minutes = 5) =>
  metric(name, { Function: fn }, 'Sum', Duration.minutes(minutes));

/**
 * The alarms, each turned off by `false` on its prop or tuned by a number (times `scale`): the one
 * list the construct creates and the reference documents (docs/reference/alarms.md).
 */
export const ALARMS: readonly {
  readonly prop: keyof NonNullable<LimiterObservabilityProps['alarms']>;
  readonly id: string;
  /** The metric, or how to build it from this instance's props (a function's own metric). */
  readonly metric: cloudwatch.IMetric | ((props: LimiterObservabilityProps) => cloudwatch.IMetric);
  readonly threshold: number;
  readonly scale?: number;
  readonly description: (threshold: number) => string;
}[] = [
  {
    prop: 'spendPerHourUsd',
    id: 'SpendAlarm',
    metric: SPEND_PER_HOUR,
    threshold: 100,
    scale: 1_000_000,
    description: (usd) => `Global spend crossed $${usd} in an hour`,
  },
  {
    prop: 'denialsPerFiveMinutes',
    id: 'DenialSpikeAlarm',
    metric: DENIED,
    threshold: 1000,
    description: () => 'Many denials: a client loop or an abuse wave',
  },
  {
    prop: 'settleFailures',
    id: 'SettleFailureAlarm',
    metric: SETTLE_FAILURES,
    threshold: 1,
    description: () => 'Settlements gave up: reservations stand, usage is over-counted',
  },
  {
    prop: 'limiterUnavailable',
    id: 'LimiterUnavailableAlarm',
    metric: count('LimiterUnavailable', 'authorizer'),
    threshold: 1,
    description: () => 'The rate limiter could not decide: clients get 503 limiter_unavailable',
  },
  {
    prop: 'brakeEngaged',
    id: 'BrakeEngagedAlarm',
    metric: metric(
      'Decisions',
      { Function: 'authorizer', Outcome: 'denied', Layer: 'brake', Code: 'brake' },
      'Sum',
      Duration.minutes(1),
    ),
    threshold: 1,
    description: () => 'The brake is on: AI routes answer 429',
  },
  {
    prop: 'brakeUnreadable',
    id: 'BrakeUnreadableAlarm',
    metric: count('BrakeUnreadable', 'brake', 1),
    threshold: 1,
    description: () =>
      'The brake parameter is not a brake setting: every AI route is braked until someone writes on or off',
  },
  {
    prop: 'tenantMisconfigured',
    id: 'TenantMisconfiguredAlarm',
    metric: count('TenantMisconfigured', 'authorizer'),
    threshold: 1,
    description: () =>
      'A tenant is misconfigured (missing, unknown plan or invalid overrides): its requests get 500; see the authorizer log for the tenant and code',
  },
  {
    prop: 'brakeMirrorStale',
    id: 'BrakeMirrorStaleAlarm',
    // The mirror's own errors, not the functions' BrakeMirrorStale: its copy is rewritten every 10
    // minutes only (docs/design.md), and errors show with no traffic at all.
    metric: (p) => p.brakeMirrorFunction.metricErrors({ statistic: 'Sum', period: Duration.minutes(5) }),
    threshold: 3,
    description: () =>
      'The brake mirror keeps failing: the brake parameter is not copied to the table, so flipping the brake ' +
      'may not reach the functions (check the BrakeMirror function log group)',
  },
  {
    prop: 'authorizerThrottlesPerFiveMinutes',
    id: 'AuthorizerThrottledAlarm',
    metric: (p) => p.authorizerFunction.metricThrottles({ statistic: 'Sum', period: Duration.minutes(5) }),
    threshold: 1,
    description: (n) =>
      `Lambda throttled ${n} or more requests at the authorizer in 5 minutes (its reserved executions were all busy): ` +
      'their clients got 503; raise authorizerReservedConcurrency or lower throttlingRateLimit',
  },
  {
    prop: 'usageRejected',
    id: 'UsageRejectedAlarm',
    metric: count('UsageRejected', 'proxy'),
    threshold: 1,
    description: () =>
      'The upstream reported usage that cannot be right: check the provider or the gateway in front of it',
  },
];

/**
 * What operators watch: alarms on an encrypted SNS topic, and optionally a dashboard (who spends
 * what, which limit bites) and the automatic brake.
 */
export class LimiterObservability extends Construct {
  /** Where every alarm notifies; undefined with `alarmTopic: false`. */
  readonly alarmTopic?: sns.ITopic;
  /** The dashboard, when asked for (LlmRateLimiterProps.dashboard). */
  readonly dashboard?: cloudwatch.Dashboard;
  /** The alarms created (those the `alarms` prop leaves on, and the automatic brake's). */
  readonly alarms: cloudwatch.Alarm[] = [];
  /** The function that sets the brake, when `automaticBrake` is on. */
  readonly autoBrakeFunction?: LimiterFunction;

  /**
   * @param scope - the parent construct
   * @param id - the construct's id, unique within its scope
   * @param props - the functions and brake to watch, the alarms and the automatic brake
   */
  constructor(scope: Construct, id: string, props: LimiterObservabilityProps) {
    super(scope, id);
    if (props.alarmTopic !== false)
      this.alarmTopic = props.alarmTopic ?? this.topic(props.functionPlacement.removalPolicy ?? RemovalPolicy.RETAIN);
    const notify = this.alarmTopic ? [new actions.SnsAction(this.alarmTopic)] : [];
    this.addAlarms(props, notify);
    if (props.automaticBrake) this.autoBrakeFunction = this.addAutomaticBrake(props, props.automaticBrake, notify);
    if (props.dashboard ?? true) this.dashboard = this.addDashboard(props);
  }

  /**
   * The alarms' SNS topic, encrypted with a key CloudWatch may use. The key follows the stack's
   * removal policy: KMS bills a key every month until it is deleted, so a retained key outlives a
   * destroyed stack on the bill. Nothing at rest is encrypted with it (SNS messages are transient),
   * so a deleted key waits out the shortest window KMS allows.
   */
  private topic(removalPolicy: RemovalPolicy): sns.Topic {
    const key = new kms.Key(this, 'TopicKey', {
      enableKeyRotation: true,
      description: 'LLM rate limiter alarm topic',
      removalPolicy,
      ...(removalPolicy === RemovalPolicy.DESTROY ? { pendingWindow: Duration.days(7) } : {}),
    });
    key.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    return new sns.Topic(this, 'Alarms', { masterKey: key, enforceSSL: true, displayName: 'LLM rate limiter alarms' });
  }

  private alarm(name: string, m: cloudwatch.IMetric, threshold: number, description: string): cloudwatch.Alarm {
    const created = new cloudwatch.Alarm(this, name, {
      metric: m,
      threshold,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    this.alarms.push(created);
    return created;
  }

  /** Every alarm of ALARMS that the props leave on, with its threshold, notifying the topic. */
  private addAlarms(props: LimiterObservabilityProps, notify: actions.SnsAction[]): void {
    for (const a of ALARMS) {
      const setting = props.alarms?.[a.prop];
      if (setting === false) continue;
      const threshold = typeof setting === 'number' ? setting : a.threshold;
      const m = typeof a.metric === 'function' ? a.metric(props) : a.metric;
      this.alarm(a.id, m, threshold * (a.scale ?? 1), a.description(threshold)).addAlarmAction(...notify);
    }
  }

  /** The automatic brake: a function that sets the brake, fired by an alarm on global spend. */
  private addAutomaticBrake(
    props: LimiterObservabilityProps,
    automatic: NonNullable<LimiterObservabilityProps['automaticBrake']>,
    notify: actions.SnsAction[],
  ): LimiterFunction {
    const brakeFor = automatic.brakeFor ?? Duration.seconds(NUMBER_SETTINGS.brakeForSeconds.default);
    const fn = new LimiterFunction(this, 'AutoBrake', {
      ...props.functionPlacement,
      handler: 'auto-brake',
      memorySize: 256,
      timeout: Duration.seconds(10),
      environment: {
        BRAKE_PARAMETER_NAME: props.brakeParameter.parameterName,
        ...settingsEnvironment({ brakeForSeconds: brakeFor.toSeconds() }),
      },
      description: 'LLM rate limiter: sets the brake when global spend crosses its threshold',
      reservedConcurrentExecutions: props.brakeReservedConcurrency ?? false,
    });
    fn.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['ssm:PutParameter'], resources: [props.brakeParameter.parameterArn] }),
    );
    this.alarm(
      'AutomaticBrakeAlarm',
      SPEND_PER_HOUR,
      automatic.spendPerHourUsd * 1_000_000,
      `Automatic brake: global spend crossed $${automatic.spendPerHourUsd} in an hour; braked for ${brakeFor.toHumanString()}`,
    ).addAlarmAction(new actions.LambdaAction(fn), ...notify);
    return fn;
  }

  /** Who spends what and which limit bites. */
  private addDashboard(props: LimiterObservabilityProps): cloudwatch.Dashboard {
    const settledDimensions = props.metricsByTenant ? 'Function,Tenant,Endpoint,Model' : 'Function,Endpoint,Model';
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
    });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Decisions: admitted vs denied',
        left: [ALLOWED.with({ label: 'admitted' }), DENIED.with({ label: 'denied' })],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Denials by layer and code',
        left: [
          search(
            `SEARCH('{${NAMESPACE},Function,Outcome,Layer,Code} MetricName="Decisions" Outcome="denied"', 'Sum', 300)`,
            'denied',
          ),
        ],
        width: 12,
      }),
      ...this.perTenantWidgets(props),
      new cloudwatch.GraphWidget({
        title: 'Top endpoints (tokens)',
        left: [
          search(
            `SORT(SEARCH('{${NAMESPACE},${settledDimensions}} MetricName="TokensSettled"', 'Sum', 300), SUM, DESC, 5)`,
            'endpoint',
          ),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Settlement failures and retries',
        left: [
          SETTLE_FAILURES.with({ label: 'failures' }),
          metric('SettleRetries', { Function: 'proxy' }, 'Sum', Duration.minutes(5)).with({ label: 'retries' }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'Authorizer latency p99 (ms)',
        left: [props.authorizerFunction.metricDuration({ statistic: 'p99', period: Duration.minutes(5) })],
        width: 8,
      }),
    );
    return dashboard;
  }

  /** Who spends what: metric searches when tenant is a dimension, else a Logs Insights query over the settlement lines. */
  private perTenantWidgets(props: LimiterObservabilityProps): cloudwatch.IWidget[] {
    if (props.metricsByTenant) {
      return [
        new cloudwatch.GraphWidget({
          title: 'Tokens settled per tenant',
          left: [
            search(
              `SEARCH('{${NAMESPACE},Function,Tenant,Endpoint,Model} MetricName="TokensSettled"', 'Sum', 300)`,
              'tokens',
            ),
          ],
          width: 12,
        }),
        new cloudwatch.GraphWidget({
          title: 'Spend per tenant (micro-USD)',
          left: [
            search(
              `SEARCH('{${NAMESPACE},Function,Tenant,Endpoint,Model} MetricName="MicroUsdSettled"', 'Sum', 300)`,
              'micro-USD',
            ),
          ],
          width: 12,
        }),
      ];
    }
    if (!props.proxyLogGroup) return [];
    return [
      new cloudwatch.LogQueryWidget({
        title: 'Tokens and spend per tenant (top 20)',
        logGroupNames: [props.proxyLogGroup.logGroupName],
        queryLines: [
          'filter ispresent(TokensSettled)',
          'stats sum(TokensSettled) as tokens, sum(MicroUsdSettled) / 1000000 as usd by Tenant',
          'sort tokens desc',
          'limit 20',
        ],
        width: 24,
      }),
    ];
  }
}
