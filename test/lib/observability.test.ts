import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { LlmRateLimiter, type LlmRateLimiterProps, requestsPerMinute, tokensPerDay } from '../../lib';

function synth(overrides: Partial<LlmRateLimiterProps> = {}) {
  const stack = new Stack(new App(), 'Obs');
  new LlmRateLimiter(stack, 'Limiter', {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'k'),
    endpoints: {
      '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
    },
    plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(60)] } },
    ...overrides,
  });
  return Template.fromStack(stack);
}

const alarmsOf = (t: Template) =>
  // biome-ignore lint/suspicious/noExplicitAny: a synthesized template's properties are free-form JSON, read field by field
  Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties as Record<string, any>);

describe('observability', () => {
  it('adds no dashboard and no X-Ray tracing unless asked (each bills every month, idle or not)', () => {
    const t = synth();
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    t.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: Match.absent() });
    const traced = synth({ tracing: true });
    traced.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: true });
  });

  it('with metricsByTenant, publishes the tenant as a dimension and graphs tokens and spend per tenant from metrics', () => {
    const t = synth({ metricsByTenant: true, dashboard: true });
    const body = JSON.stringify(t.findResources('AWS::CloudWatch::Dashboard'));
    for (const title of ['Tokens settled per tenant', 'Spend per tenant (micro-USD)']) expect(body).toContain(title);
    expect(body).toContain("SEARCH('{LlmRateLimiter,Function,Tenant,Endpoint,Model} MetricName=");
    expect(JSON.stringify(t.findResources('AWS::Lambda::Function'))).toContain('"METRICS_BY_TENANT":"true"');
  });

  it('adds a dashboard when asked, and the default alarms, notifying an encrypted topic', () => {
    const t = synth({ dashboard: true });
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = JSON.stringify(t.findResources('AWS::CloudWatch::Dashboard'));
    for (const title of [
      'admitted vs denied',
      'Denials by layer and code',
      'Tokens and spend per tenant',
      'Top endpoints',
      'Settlement failures',
      'Authorizer latency p99',
    ])
      expect(body).toContain(title);
    // Tenants are ranked from the proxy's log lines (no per-tenant metrics by default); metric searches use the dimensions emitted.
    expect(body).toContain('stats sum(TokensSettled) as tokens, sum(MicroUsdSettled) / 1000000 as usd by Tenant');
    expect(body).toContain("SEARCH('{LlmRateLimiter,Function,Endpoint,Model} MetricName=");
    expect(body).not.toContain('Function,Tenant,Endpoint,Model');
    expect(JSON.stringify(t.findResources('AWS::Lambda::Function'))).toContain('"METRICS_BY_TENANT":"false"');
    const alarms = alarmsOf(t);
    expect(alarms.map((a) => a.MetricName).sort()).toEqual([
      'BrakeUnreadable',
      'Decisions',
      'Decisions',
      'Errors',
      'LimiterUnavailable',
      'MicroUsdSettled',
      'SettleFailures',
      'TenantMisconfigured',
      'Throttles',
      'UsageRejected',
    ]);
    // Lambda throttles the authorizer before it runs (no LimiterUnavailable then): its own metric.
    expect(alarms.find((a) => a.MetricName === 'Throttles')).toMatchObject({
      Threshold: 1,
      Period: 300,
      Statistic: 'Sum',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: expect.stringMatching(/^LimiterAuthorizer/) } }],
    });
    // The brake mirror writes its copy only on change (and a heartbeat every 10 minutes): its own
    // errors say it is failing, a run with both its retries, within 5 minutes and with no traffic.
    expect(alarms.find((a) => a.MetricName === 'Errors')).toMatchObject({
      Threshold: 3,
      Period: 300,
      Statistic: 'Sum',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: expect.stringMatching(/^LimiterBrakeMirror/) } }],
    });
    // The outage alarm counts what the authorizer emits when it cannot decide, not Lambda errors (bad keys are those too).
    expect(alarms.find((a) => a.MetricName === 'LimiterUnavailable')).toMatchObject({
      Threshold: 1,
      Namespace: 'LlmRateLimiter',
      Dimensions: [{ Name: 'Function', Value: 'authorizer' }],
    });
    expect(alarms.find((a) => a.MetricName === 'BrakeUnreadable')).toMatchObject({
      Threshold: 1,
      Namespace: 'LlmRateLimiter',
      Dimensions: [{ Name: 'Function', Value: 'brake' }],
    });
    expect(alarms.find((a) => a.MetricName === 'UsageRejected')).toMatchObject({
      Threshold: 1,
      Namespace: 'LlmRateLimiter',
      Dimensions: [{ Name: 'Function', Value: 'proxy' }],
    });
    expect(alarms.find((a) => a.MetricName === 'MicroUsdSettled')).toMatchObject({
      Threshold: 100_000_000,
      Period: 3600,
      Statistic: 'Sum',
      Namespace: 'LlmRateLimiter',
      Dimensions: [{ Name: 'Function', Value: 'proxy' }],
    });
    expect(alarms.every((a) => JSON.stringify(a.AlarmActions).includes('LimiterObservabilityAlarms'))).toBe(true);
    t.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    expect(Object.keys(t.findOutputs('*')).join()).toContain('AlarmTopicArn');
  });

  it('lets props tune an alarm or turn it off', () => {
    const alarms = alarmsOf(
      synth({
        alarms: {
          spendPerHourUsd: 25,
          denialsPerFiveMinutes: false,
          brakeEngaged: false,
          brakeUnreadable: false,
          usageRejected: false,
          brakeMirrorStale: false,
          tenantMisconfigured: false,
          authorizerThrottlesPerFiveMinutes: 20,
        },
      }),
    );
    expect(alarms).toHaveLength(4);
    expect(alarms.find((a) => a.MetricName === 'MicroUsdSettled')!.Threshold).toBe(25_000_000);
    expect(alarms.find((a) => a.MetricName === 'Throttles')!.Threshold).toBe(20);
    expect(
      alarmsOf(synth({ alarms: { authorizerThrottlesPerFiveMinutes: false } })).map((a) => a.MetricName),
    ).not.toContain('Throttles');
  });

  // KMS bills a key monthly until it is deleted (nothing while it waits out its deletion window):
  // a key retained by a destroyed stack is billed for nothing (docs/aws-fidelity.md).
  it("deletes the alarm topic's key with the stack under removalPolicy DESTROY, and keeps it by default", () => {
    const keyOf = (t: Template) => {
      const keys = Object.values(t.findResources('AWS::KMS::Key'));
      expect(keys).toHaveLength(1);
      return keys[0]!;
    };
    expect(keyOf(synth())).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    expect(keyOf(synth({ removalPolicy: RemovalPolicy.RETAIN }))).toMatchObject({ DeletionPolicy: 'Retain' });
    // Nothing at rest is encrypted with it (SNS messages are transient): the shortest window KMS allows.
    expect(keyOf(synth({ removalPolicy: RemovalPolicy.DESTROY }))).toMatchObject({
      DeletionPolicy: 'Delete',
      UpdateReplacePolicy: 'Delete',
      Properties: { PendingWindowInDays: 7 },
    });
  });

  it('wires the opt-in automatic brake: alarm -> function that may only put the brake parameter', () => {
    const t = synth({ automaticBrake: { spendPerHourUsd: 300, brakeFor: Duration.minutes(30) } });
    const auto = alarmsOf(t).find((a) => String(a.AlarmDescription).startsWith('Automatic brake'))!;
    expect(auto).toMatchObject({ Threshold: 300_000_000, MetricName: 'MicroUsdSettled' });
    expect(JSON.stringify(auto.AlarmActions)).toContain('AutoBrake');
    const fn = Object.entries(t.findResources('AWS::Lambda::Function')).find(([id]) => id.includes('AutoBrake'))![1]
      .Properties;
    expect(fn.Environment.Variables).toMatchObject({ BRAKE_FOR_SECONDS: '1800' });
    t.hasResourceProperties('AWS::Lambda::Permission', {
      Principal: 'lambda.alarms.cloudwatch.amazonaws.com',
      Action: 'lambda:InvokeFunction',
    });
    const policies = Object.entries(t.findResources('AWS::IAM::Policy')).filter(([, p]) =>
      JSON.stringify(p.Properties.Roles).includes('AutoBrakeRole'),
    );
    const statements = policies.flatMap(
      ([, p]) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[],
    );
    expect(statements.flatMap((s) => ([] as string[]).concat(s.Action)).sort()).toEqual([
      'logs:CreateLogStream',
      'logs:PutLogEvents',
      'ssm:PutParameter',
    ]);
    expect(JSON.stringify(statements.find((s) => s.Action === 'ssm:PutParameter')!.Resource)).toContain('LimiterBrake');
  });

  it.each<[string, Partial<LlmRateLimiterProps>, RegExp]>([
    [
      'the automatic brake threshold is not positive',
      { automaticBrake: { spendPerHourUsd: 0 } },
      /automaticBrake.spendPerHourUsd is 0; give a positive number/,
    ],
    [
      'the automatic brake holds longer than a week',
      { automaticBrake: { spendPerHourUsd: 10, brakeFor: Duration.days(30) } },
      /automaticBrake.brakeFor is 30 days; use at most 7 days/,
    ],
    [
      'an alarm threshold is negative',
      { alarms: { denialsPerFiveMinutes: -5 } },
      /alarms.denialsPerFiveMinutes is -5; give a positive threshold, or false/,
    ],
  ])('throws when %s', (_name, overrides, message) => {
    expect(() => synth(overrides)).toThrow(message);
  });
});
