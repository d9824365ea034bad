/**
 * What a platform team wires next: the outputs and names it finds in the console, its own alarm
 * topic, its VPC, log retention and removal policy on everything, tags, several limiters at once.
 */
import { App, RemovalPolicy, Stack, Tags, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { EventBus } from 'aws-cdk-lib/aws-events';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { LlmRateLimiter, type LlmRateLimiterProps, requestsPerMinute, tokensPerDay, usdPerMonth } from '../../lib';

function props(stack: Stack, overrides: Partial<LlmRateLimiterProps> = {}): LlmRateLimiterProps {
  return {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, `Key${stack.node.children.length}`, 'openai-key'),
    endpoints: {
      '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
    },
    plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(60)] } },
    automaticBrake: { spendPerHourUsd: 100 },
    ...overrides,
  };
}

function synth(overrides: Partial<LlmRateLimiterProps> | ((stack: Stack) => Partial<LlmRateLimiterProps>) = {}) {
  const stack = new Stack(new App(), 'Llm-dev');
  const limiter = new LlmRateLimiter(
    stack,
    'Limiter',
    props(stack, typeof overrides === 'function' ? overrides(stack) : overrides),
  );
  return { stack, limiter, template: Template.fromStack(stack) };
}

const valuesOf = (t: Template, type: string) => Object.values(t.findResources(type));
const functionsOf = (t: Template) => valuesOf(t, 'AWS::Lambda::Function');

describe('outputs and names', () => {
  it('outputs the API URL ending in /v1 (the only URL), the tables, the brake and the alarm topic, under fixed names', () => {
    const { template } = synth();
    const outputs = template.findOutputs('*');
    expect(Object.keys(outputs).sort()).toEqual([
      'LimiterAlarmTopicArn',
      'LimiterApiUrl',
      'LimiterBrakeParameterName',
      'LimiterLedgerTableName',
      'LimiterTableName',
    ]);
    for (const o of Object.values(outputs)) expect(o.Description).toMatch(/^.{20,}$/);
    const [, parts] = outputs.LimiterApiUrl!.Value['Fn::Join'];
    expect(parts[0]).toBe('https://');
    expect(parts.at(-2)).toEqual({ Ref: expect.stringMatching(/^LimiterApiDeploymentStagelive/) });
    expect(parts.at(-1)).toBe('/v1');
    expect(outputs.LimiterTableName!.Value).toEqual({ Ref: expect.stringMatching(/^LimiterLimitsTable/) });
    expect(outputs.LimiterLedgerTableName!.Value).toEqual({ Ref: expect.stringMatching(/^LimiterLedgerTable/) });
    expect(outputs.LimiterBrakeParameterName!.Value).toEqual({ Ref: expect.stringMatching(/^LimiterBrake/) });
    expect(outputs.LimiterAlarmTopicArn!.Value).toEqual({ Ref: expect.stringMatching(/^LimiterObservabilityAlarms/) });
  });

  it('names the REST API after the stack and the construct', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'Llm-dev-Limiter' });
  });

  it('exposes what a user wires next as the resources the template holds', () => {
    const { stack, limiter, template } = synth();
    const typeOf = (token: string) => {
      const resolved = stack.resolve(token) as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
      return template.toJSON().Resources[resolved.Ref ?? resolved['Fn::GetAtt']![0]]?.Type;
    };
    expect(typeOf(limiter.api.restApiId)).toBe('AWS::ApiGateway::RestApi');
    expect(typeOf(limiter.table.tableName)).toBe('AWS::DynamoDB::Table');
    expect(typeOf(limiter.brakeParameter.parameterName)).toBe('AWS::SSM::Parameter');
    expect(typeOf(limiter.alarmTopic!.topicArn)).toBe('AWS::SNS::Topic');
    for (const fn of [
      limiter.authorizerFunction,
      limiter.proxyFunction,
      limiter.limitsFunction,
      limiter.brakeMirrorFunction,
      limiter.autoBrakeFunction!,
    ])
      expect(typeOf(fn.functionArn)).toBe('AWS::Lambda::Function');
    expect(stack.resolve(limiter.apiUrl)).toEqual(
      stack.resolve(template.findOutputs('LimiterApiUrl').LimiterApiUrl!.Value),
    );
  });
});

describe('custom domain', () => {
  it("maps a domain added through limiter.api to the limiter's stage, as the README shows", () => {
    const stack = new Stack(new App(), 'Domain');
    const limiter = new LlmRateLimiter(stack, 'Limiter', props(stack));
    limiter.api.addDomainName('Domain', {
      domainName: 'llm.example.com',
      certificate: Certificate.fromCertificateArn(stack, 'Cert', 'arn:aws:acm:eu-west-1:123456789012:certificate/abc'),
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::ApiGateway::DomainName', { DomainName: 'llm.example.com' });
    // No base path: the domain's root is the stage's, so clients use https://llm.example.com/v1.
    template.hasResourceProperties('AWS::ApiGateway::BasePathMapping', {
      RestApiId: { Ref: Match.stringLikeRegexp('^LimiterApi') },
      Stage: { Ref: Match.stringLikeRegexp('^LimiterApiDeploymentStagelive') },
      BasePath: Match.absent(),
    });
  });
});

describe('alarm topic', () => {
  it("sends every alarm to the user's own topic, and creates no topic or key of its own", () => {
    const { template, limiter } = synth((stack) => ({ alarmTopic: new sns.Topic(stack, 'Ops') }));
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.resourceCountIs('AWS::KMS::Key', 0);
    const alarms = valuesOf(template, 'AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThan(5);
    for (const a of alarms) expect(a.Properties.AlarmActions).toContainEqual({ Ref: expect.stringMatching(/^Ops/) });
    expect(template.findOutputs('LimiterAlarmTopicArn').LimiterAlarmTopicArn!.Value).toEqual({
      Ref: expect.stringMatching(/^Ops/),
    });
    expect(limiter.alarmTopic).toBeDefined();
  });

  it('with alarmTopic false, keeps the alarms without notifying anyone, and creates no topic', () => {
    const { template, limiter } = synth({ alarmTopic: false });
    template.resourceCountIs('AWS::SNS::Topic', 0);
    template.resourceCountIs('AWS::KMS::Key', 0);
    const alarms = valuesOf(template, 'AWS::CloudWatch::Alarm');
    expect(alarms.length).toBeGreaterThan(5);
    // Only the automatic brake's alarm has an action: its function.
    for (const a of alarms)
      for (const action of a.Properties.AlarmActions ?? [])
        expect(action).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^LimiterObservabilityAutoBrake/), 'Arn'] });
    expect(Object.keys(template.findOutputs('*'))).not.toContain('LimiterAlarmTopicArn');
    expect(limiter.alarmTopic).toBeUndefined();
  });
});

describe('VPC', () => {
  const network = (stack: Stack) => {
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0123456789abcdef0',
      availabilityZones: ['eu-west-1a', 'eu-west-1b'],
      privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'],
      isolatedSubnetIds: ['subnet-0cccccccccccccccc', 'subnet-0dddddddddddddddd'],
    });
    return { vpc, sg: ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-0123456789abcdef0') };
  };

  it('runs every function in the given subnets with the given security groups, allowed to manage its network interfaces', () => {
    const { template } = synth((stack) => {
      const { vpc, sg } = network(stack);
      return { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED }, securityGroups: [sg] };
    });
    const functions = functionsOf(template);
    expect(functions).toHaveLength(6); // with the automatic brake
    for (const fn of functions)
      expect(fn.Properties.VpcConfig).toEqual({
        SubnetIds: ['subnet-0cccccccccccccccc', 'subnet-0dddddddddddddddd'],
        SecurityGroupIds: ['sg-0123456789abcdef0'],
      });
    const roles = Object.keys(template.findResources('AWS::IAM::Role')).filter((id) => !id.includes('CloudWatchRole'));
    for (const role of roles)
      template.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: role }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Action: Match.arrayWith(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']) }),
          ]),
        },
      });
  });

  it('without security groups, gives the functions one of their own that only sends', () => {
    const { template } = synth((stack) => ({ vpc: network(stack).vpc }));
    template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    const [sg] = valuesOf(template, 'AWS::EC2::SecurityGroup');
    expect(sg!.Properties.SecurityGroupIngress).toBeUndefined();
    for (const fn of functionsOf(template)) {
      expect(fn.Properties.VpcConfig.SubnetIds).toEqual(['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb']);
      expect(fn.Properties.VpcConfig.SecurityGroupIds).toEqual([
        { 'Fn::GetAtt': [expect.stringMatching(/^LimiterFunctionsSecurityGroup/), 'GroupId'] },
      ]);
    }
  });

  it('passes cdk-nag in a VPC, with its own security group or the given ones', () => {
    const app = new App();
    for (const [name, groups] of [
      ['Own', false],
      ['Given', true],
    ] as const) {
      const stack = new Stack(app, name);
      const { vpc, sg } = network(stack);
      new LlmRateLimiter(stack, 'Limiter', props(stack, { vpc, ...(groups ? { securityGroups: [sg] } : {}) }));
    }
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow();
  });

  it('without a VPC, runs the functions outside any VPC', () => {
    for (const fn of functionsOf(synth().template)) expect(fn.Properties.VpcConfig).toBeUndefined();
  });
});

describe('retention, removal and tags', () => {
  it('gives every log group the retention asked for, API Gateway execution logs included', () => {
    const { template } = synth({ logRetention: RetentionDays.ONE_WEEK });
    const groups = valuesOf(template, 'AWS::Logs::LogGroup');
    expect(groups).toHaveLength(8); // 6 functions, access logs, execution logs
    for (const g of groups) expect(g.Properties.RetentionInDays).toBe(7);
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: {
        'Fn::Join': ['', ['API-Gateway-Execution-Logs_', { Ref: Match.stringLikeRegexp('^LimiterApi') }, '/live']],
      },
    });
  });

  it.each([
    [RemovalPolicy.DESTROY, 'Delete'],
    [RemovalPolicy.RETAIN, 'Retain'],
  ])('applies removal policy %s to the tables, the KMS key and every log group', (removalPolicy, deletion) => {
    const { template } = synth({ removalPolicy });
    const stateful = ['AWS::DynamoDB::Table', 'AWS::KMS::Key', 'AWS::Logs::LogGroup'].flatMap((type) =>
      valuesOf(template, type),
    );
    expect(stateful).toHaveLength(11);
    for (const r of stateful) expect([r.DeletionPolicy, r.UpdateReplacePolicy]).toEqual([deletion, deletion]);
  });

  it('carries tags set with Tags.of to the functions, the table, the API and the logs', () => {
    const stack = new Stack(new App(), 'Tagged');
    new LlmRateLimiter(stack, 'Limiter', props(stack));
    Tags.of(stack).add('cost-center', 'platform-42');
    const template = Template.fromStack(stack);
    for (const type of [
      'AWS::Lambda::Function',
      'AWS::DynamoDB::Table',
      'AWS::ApiGateway::RestApi',
      'AWS::Logs::LogGroup',
    ])
      for (const r of valuesOf(template, type))
        expect(r.Properties.Tags).toContainEqual({ Key: 'cost-center', Value: 'platform-42' });
  });
});

describe('several limiters', () => {
  it('two in one stack and one in another stack of the same app: distinct outputs and names, nothing set by hand, cdk-nag clean', () => {
    const app = new App();
    const one = new Stack(app, 'Llm-prod');
    new LlmRateLimiter(one, 'Limiter', props(one));
    new LlmRateLimiter(one, 'Canary', props(one));
    const two = new Stack(app, 'Llm-dev');
    new LlmRateLimiter(two, 'Limiter', props(two));
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow(); // cdk-nag included
    const t1 = Template.fromStack(one);
    expect(Object.keys(t1.findOutputs('*')).sort()).toEqual([
      'CanaryAlarmTopicArn',
      'CanaryApiUrl',
      'CanaryBrakeParameterName',
      'CanaryLedgerTableName',
      'CanaryTableName',
      'LimiterAlarmTopicArn',
      'LimiterApiUrl',
      'LimiterBrakeParameterName',
      'LimiterLedgerTableName',
      'LimiterTableName',
    ]);
    const names = [t1, Template.fromStack(two)].flatMap((t) =>
      valuesOf(t, 'AWS::ApiGateway::RestApi').map((a) => a.Properties.Name),
    );
    expect(names).toEqual(['Llm-prod-Limiter', 'Llm-prod-Canary', 'Llm-dev-Limiter']);
    // One account-wide logging role setting per stack: the second limiter's stage waits for the first one's.
    const accounts = Object.keys(t1.findResources('AWS::ApiGateway::Account'));
    expect(accounts).toEqual([expect.stringMatching(/^LimiterApiAccount/)]);
    const canaryStage = Object.entries(t1.findResources('AWS::ApiGateway::Stage')).find(([id]) =>
      id.startsWith('Canary'),
    )!;
    expect(canaryStage[1].DependsOn).toContain(accounts[0]);
    Template.fromStack(two).resourceCountIs('AWS::ApiGateway::Account', 1);
    // Names CloudFormation generates: the brake parameters, alarms and dashboards of one account never clash.
    for (const t of [t1, Template.fromStack(two)]) {
      for (const p of valuesOf(t, 'AWS::SSM::Parameter')) expect(p.Properties.Name).toBeUndefined();
      for (const a of valuesOf(t, 'AWS::CloudWatch::Alarm')) expect(a.Properties.AlarmName).toBeUndefined();
      for (const d of valuesOf(t, 'AWS::CloudWatch::Dashboard')) expect(d.Properties.DashboardName).toBeUndefined();
    }
  });

  it('names the outputs of a limiter inside a construct after its path in the stack', () => {
    const stack = new Stack(new App(), 'Nested');
    const { Construct } = require('constructs') as typeof import('constructs');
    new LlmRateLimiter(new Construct(stack, 'Team-A'), 'Limiter', props(stack));
    expect(Object.keys(Template.fromStack(stack).findOutputs('*'))).toContain('TeamALimiterApiUrl');
  });
});

describe('budget alerts', () => {
  it('puts them on the default bus, and with a topic, a rule sends each there; with a bus of yours, on it', async () => {
    const { template } = synth((stack) => ({
      plans: { team: { tenant: [usdPerMonth(500, { timeZone: 'Europe/Paris' })] } },
      budgetAlertTopic: new sns.Topic(stack, 'Budgets'),
    }));
    template.hasResourceProperties('AWS::Events::Rule', {
      EventBusName: 'default',
      EventPattern: { source: ['llm-rate-limiter'], 'detail-type': ['Budget threshold reached'] },
      Targets: [Match.objectLike({ Arn: { Ref: Match.stringLikeRegexp('^Budgets') } })],
    });
    const putEvents = Object.entries(template.findResources('AWS::IAM::Policy')).filter(([, p]) =>
      JSON.stringify(p).includes('events:PutEvents'),
    );
    expect(putEvents.map(([id]) => id.replace(/RoleDefaultPolicy.*/, '')).sort()).toEqual([
      'LimiterAuthorizer',
      'LimiterProxy',
    ]);
    expect(JSON.stringify(putEvents[0]![1])).toContain(':event-bus/default');

    const own = synth((stack) => ({ alertEventBus: new EventBus(stack, 'Billing', { eventBusName: 'billing' }) }));
    expect(valuesOf(own.template, 'AWS::Events::Rule').filter((r) => JSON.stringify(r).includes('Budget'))).toEqual([]);
    const env = functionsOf(own.template).filter((f) => f.Properties.Environment?.Variables?.ALERT_EVENT_BUS);
    expect(env).toHaveLength(2);
  });
});
