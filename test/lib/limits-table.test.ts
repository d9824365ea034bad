import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { TABLE } from '../../lambda/engine/constants';
import { LimitsTable } from '../../lib';

const synth = (props?: ConstructorParameters<typeof LimitsTable>[2]) => {
  const stack = new Stack(new App(), 'Test');
  new LimitsTable(stack, 'Limits', props);
  return Template.fromStack(stack);
};

describe('LimitsTable', () => {
  it('deploys the key schema and TTL attribute the engine and the tests use', () => {
    synth().hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: TABLE.partitionKey, KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: TABLE.partitionKey, AttributeType: 'S' }],
      TimeToLiveSpecification: { AttributeName: TABLE.ttlAttribute, Enabled: true },
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  it('retains the table by default and honours removalPolicy', () => {
    expect(Object.values(synth().findResources('AWS::DynamoDB::Table'))[0]).toMatchObject({ DeletionPolicy: 'Retain' });
    expect(
      Object.values(synth({ removalPolicy: RemovalPolicy.DESTROY }).findResources('AWS::DynamoDB::Table'))[0],
    ).toMatchObject({ DeletionPolicy: 'Delete' });
  });
});
