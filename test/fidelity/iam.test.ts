/**
 * Every AWS call the functions make is allowed by the IAM the construct synthesizes, and nothing
 * is granted that no call uses (test/support/iam-scenario.ts). Would have caught a secret granted
 * by its partial ARN: IAM matches the complete one, with its six random characters.
 */
import { describe, expect, it } from 'vitest';
import { dynamoEndpoint, tableName } from '../support/dynamo';
import { iamScenario, SECRET_VARIANTS } from '../support/iam-scenario';

describe.each(SECRET_VARIANTS)('IAM against the calls the functions make, with %s', (_name, secret, encrypted) => {
  it('allows every call, and grants nothing no call uses', async () => {
    const report = await iamScenario(dynamoEndpoint(), tableName(), secret, encrypted);
    expect(report.failures).toEqual([]);
    // Every function called something; only the brake mirror reads SSM (the others read its copy in the table).
    expect(new Set(report.calls.map((c) => `${c.fn} ${c.action.split(':')[0]}`))).toEqual(
      new Set([
        'authorizer dynamodb',
        'proxy dynamodb',
        'proxy secretsmanager',
        'limits dynamodb',
        'brake-mirror ssm',
        'brake-mirror dynamodb',
        'config-publisher dynamodb',
        ...(encrypted ? ['proxy kms'] : []),
      ]),
    );
    expect(report.denied).toEqual([]);
    expect(report.unused).toEqual([]);
  });
});
