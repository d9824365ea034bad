import { Duration } from 'aws-cdk-lib';
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
import { LimiterFunction } from './limiter-function';

/** Alarms with sensible defaults; a number tunes one, false turns it off. */
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
  /** The functions found the brake's copy in the table minutes old: the brake mirror is failing, so a flip may not reach them. @default true */
  readonly brakeMirrorStale?: boolean;
}

export interface AutomaticBrake {
  /** Global spend settled in one hour (USD) that sets the brake. */
  readonly spendPerHourUsd: number;
  /** How long the automatic brake holds before it releases itself. @default Duration.hours(1) */
  readonly brakeFor?: Duration;
}

export interface LimiterObservabilityProps {
  readonly authorizerFunction: lambda.IFunction;
  readonly proxyFunction: lambda.IFunction;
  readonly brakeParameter: ssm.IStringParameter;
  readonly alarms?: LimiterAlarms;
  readonly automaticBrake?: AutomaticBrake;
  readonly logRetention: logs.RetentionDays;
  readonly dashboardName?: string;
  /** Where the proxy logs (its settlement metric lines): the dashboard ranks tenants from it unless metrics are per tenant. */
  readonly proxyLogGroup?: logs.ILogGroup;
  /** Tenant is a metric dimension (see LlmRateLimiterProps.metricsByTenant). @default false */
  readonly metricsByTenant?: boolean;
}

const metric = (name: string, dimensions: Record<string, string>, statistic: string, period: Duration) =>
  new cloudwatch.Metric({ namespace: NAMESPACE, metricName: name, dimensionsMap: dimensions, statistic, period });

const search = (expression: string, label: string) =>
  new cloudwatch.MathExpression({ expression, label, period: Duration.minutes(5), usingMetrics: {} });

/**
 * What operators watch: a dashboard (who spends what, which limit bites), alarms on an encrypted
 * SNS topic, and optionally the automatic brake.
 */
export class LimiterObservability extends Construct {
  readonly alarmTopic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly autoBrakeFunction?: LimiterFunction;

  constructor(scope: Construct, id: string, props: LimiterObservabilityProps) {
    super(scope, id);
    const key = new kms.Key(this, 'TopicKey', { enableKeyRotation: true, description: 'LLM rate limiter alarm topic' });
    key.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.alarmTopic = new sns.Topic(this, 'Alarms', {
      masterKey: key,
      enforceSSL: true,
      displayName: 'LLM rate limiter alarms',
    });
    const notify = new actions.SnsAction(this.alarmTopic);

    const denied = metric('Decisions', { Function: 'authorizer', Outcome: 'denied' }, 'Sum', Duration.minutes(5));
    const allowed = metric('Decisions', { Function: 'authorizer', Outcome: 'allowed' }, 'Sum', Duration.minutes(5));
    const spendPerHour = metric('MicroUsdSettled', { Function: 'proxy' }, 'Sum', Duration.hours(1));
    const settleFailures = metric('SettleFailures', { Function: 'proxy' }, 'Sum', Duration.minutes(5));
    const brakeDenials = metric(
      'Decisions',
      { Function: 'authorizer', Outcome: 'denied', Layer: 'brake', Code: 'brake' },
      'Sum',
      Duration.minutes(1),
    );

    const a = props.alarms ?? {};
    const alarm = (name: string, m: cloudwatch.IMetric, threshold: number, description: string) => {
      const created = new cloudwatch.Alarm(this, name, {
        metric: m,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      created.addAlarmAction(notify);
      this.alarms.push(created);
      return created;
    };
    if (a.spendPerHourUsd !== false)
      alarm(
        'SpendAlarm',
        spendPerHour,
        (a.spendPerHourUsd ?? 100) * 1_000_000,
        `Global spend crossed $${a.spendPerHourUsd ?? 100} in an hour`,
      );
    if (a.denialsPerFiveMinutes !== false)
      alarm(
        'DenialSpikeAlarm',
        denied,
        a.denialsPerFiveMinutes ?? 1000,
        'Many denials: a client loop or an abuse wave',
      );
    if (a.settleFailures !== false)
      alarm('SettleFailureAlarm', settleFailures, 1, 'Settlements gave up: reservations stand, usage is over-counted');
    if (a.limiterUnavailable !== false)
      alarm(
        'LimiterUnavailableAlarm',
        metric('LimiterUnavailable', { Function: 'authorizer' }, 'Sum', Duration.minutes(5)),
        1,
        'The rate limiter could not decide: clients get 503 limiter_unavailable',
      );
    if (a.brakeEngaged !== false) alarm('BrakeEngagedAlarm', brakeDenials, 1, 'The brake is on: AI routes answer 429');
    if (a.brakeUnreadable !== false)
      alarm(
        'BrakeUnreadableAlarm',
        metric('BrakeUnreadable', { Function: 'brake' }, 'Sum', Duration.minutes(1)),
        1,
        'The brake parameter is not a brake setting: every AI route is braked until someone writes on or off',
      );
    if (a.tenantMisconfigured !== false)
      alarm(
        'TenantMisconfiguredAlarm',
        metric('TenantMisconfigured', { Function: 'authorizer' }, 'Sum', Duration.minutes(5)),
        1,
        'A tenant is misconfigured (missing, unknown plan or invalid overrides): its requests get 500; see the authorizer log for the tenant and code',
      );
    if (a.brakeMirrorStale !== false)
      alarm(
        'BrakeMirrorStaleAlarm',
        metric('BrakeMirrorStale', { Function: 'brake' }, 'Sum', Duration.minutes(5)),
        1,
        'The brake mirror has not copied the brake parameter for minutes: flipping the brake may not reach the functions (check the BrakeMirror function)',
      );
    if (a.usageRejected !== false)
      alarm(
        'UsageRejectedAlarm',
        metric('UsageRejected', { Function: 'proxy' }, 'Sum', Duration.minutes(5)),
        1,
        'The upstream reported usage that cannot be right: check the provider or the gateway in front of it',
      );

    if (props.automaticBrake) {
      const brakeFor = props.automaticBrake.brakeFor ?? Duration.seconds(NUMBER_SETTINGS.brakeForSeconds.default);
      this.autoBrakeFunction = new LimiterFunction(this, 'AutoBrake', {
        handler: 'auto-brake',
        memorySize: 256,
        timeout: Duration.seconds(10),
        logRetention: props.logRetention,
        environment: {
          BRAKE_PARAMETER_NAME: props.brakeParameter.parameterName,
          ...settingsEnvironment({ brakeForSeconds: brakeFor.toSeconds() }),
        },
        description: 'LLM rate limiter: sets the brake when global spend crosses its threshold',
      });
      this.autoBrakeFunction.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['ssm:PutParameter'], resources: [props.brakeParameter.parameterArn] }),
      );
      const auto = new cloudwatch.Alarm(this, 'AutomaticBrakeAlarm', {
        metric: spendPerHour,
        threshold: props.automaticBrake.spendPerHourUsd * 1_000_000,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: `Automatic brake: global spend crossed $${props.automaticBrake.spendPerHourUsd} in an hour; braked for ${brakeFor.toHumanString()}`,
      });
      auto.addAlarmAction(new actions.LambdaAction(this.autoBrakeFunction), notify);
      this.alarms.push(auto);
    }

    const settledDimensions = props.metricsByTenant ? 'Function,Tenant,Endpoint,Model' : 'Function,Endpoint,Model';
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      ...(props.dashboardName ? { dashboardName: props.dashboardName } : {}),
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Decisions: admitted vs denied',
        left: [allowed.with({ label: 'admitted' }), denied.with({ label: 'denied' })],
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
          settleFailures.with({ label: 'failures' }),
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
