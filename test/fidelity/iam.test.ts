/**
 * Every AWS call the functions make is allowed by the IAM the construct synthesizes, and nothing
 * is granted that no call uses (test/support/iam-scenario.ts). Would have caught a secret granted
 * by its partial ARN: IAM matches the complete one, with its six random characters.
 */
import { describe, expect, it } from 'vitest';
import { dynamoEndpoint, ledgerTableName, tableName } from '../support/dynamo';
import { iamScenario, SECRET_VARIANTS } from '../support/iam-scenario';

describe.each(SECRET_VARIANTS)('IAM against the calls the functions make, with %s', (_name, secret, encrypted) => {
  it('allows every call, and grants nothing no call uses', async () => {
    const report = await iamScenario(dynamoEndpoint(), tableName(), ledgerTableName(), secret, encrypted);
    expect(report.failures).toEqual([]);
    // Every function called something; the functions on the request path read SSM only when the mirror's copy is stale (as here).
    expect(new Set(report.calls.map((c) => `${c.fn} ${c.action.split(':')[0]}`))).toEqual(
      new Set([
        'authorizer dynamodb',
        'authorizer ssm',
        'authorizer events',
        'proxy dynamodb',
        'proxy events',
        'proxy secretsmanager',
        'proxy ssm',
        'limits dynamodb',
        'limits ssm',
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
