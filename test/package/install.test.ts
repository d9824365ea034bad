/**
 * What a user does: pack this package, make an app with `cdk init app --language typescript`
 * (the template of the aws-cdk CLI this project pins), install the tarball by its path as the
 * README says, make the README's first sample the app, and `cdk synth` with no AWS credentials.
 * Once as the template's CommonJS app, once as an ES module app, once on the lowest aws-cdk-lib;
 * then the README's platform sample (two stacks, own topic, VPC) with cdk-nag installed. Needs the npm registry for the template's own packages (the
 * project's npm cache makes it quick); nothing else leaves the machine.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readmeSample, readmeSampleWith } from '../support/readme';
import { inApp, installTarball, newUserApp, packInto, synthApp } from '../support/user-app';

const work = mkdtempSync(join(tmpdir(), 'llm-limiter-package-'));
let tarball: string;

beforeAll(async () => {
  // `npm pack` as the README says, but without its prepack build: pretest ran that build
  // (scripts/build.mjs), and building dist/ again here would race the test files that read it.
  tarball = await packInto(work);
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Template = { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };

async function installAndSynth(dir: string): Promise<Template> {
  await installTarball(dir, tarball);
  const explain = await inApp(dir, 'npm', ['explain', 'esbuild']).catch(() => ({ stdout: '' }));
  // The package brings no bundler (the template's own tsx may): nothing bundles at the user's synth.
  expect(explain.stdout).not.toContain('llm-rate-limiter');
  const installed = JSON.parse(readFileSync(join(dir, 'node_modules', 'llm-rate-limiter', 'package.json'), 'utf8')) as {
    dependencies?: object;
  };
  expect(installed.dependencies ?? {}).toEqual({});
  // The license package.json names comes with the package.
  expect(readFileSync(join(dir, 'node_modules', 'llm-rate-limiter', 'LICENSE'), 'utf8')).toMatch(
    /Apache License\s+Version 2\.0/,
  );
  const synth = await synthApp(dir);
  expect(`${synth.stdout}${synth.stderr}`).not.toMatch(/Bundling asset/);
  return JSON.parse(readFileSync(join(dir, 'cdk.out', 'Llm.template.json'), 'utf8')) as Template;
}

function expectTheLimiter(dir: string, template: Template): void {
  const of = (type: string) =>
    Object.values(template.Resources)
      .filter((r) => r.Type === type)
      .map((r) => r.Properties);
  const methods = of('AWS::ApiGateway::Method');
  expect(
    methods
      .filter((m) => m.HttpMethod === 'POST')
      .map((m) => (m.Integration as { ResponseTransferMode?: string }).ResponseTransferMode),
  ).toEqual(['STREAM']);
  expect(of('AWS::ApiGateway::Authorizer')).toEqual([
    expect.objectContaining({ Type: 'REQUEST', AuthorizerResultTtlInSeconds: 0 }),
  ]);
  expect(of('AWS::ApiGateway::GatewayResponse')).toContainEqual(
    expect.objectContaining({ ResponseType: 'ACCESS_DENIED', StatusCode: '429' }),
  );
  // The limits table (partition key only) and the usage ledger's (with a sort key).
  expect(
    of('AWS::DynamoDB::Table')
      .map((t) => (t.KeySchema as unknown[]).length)
      .sort(),
  ).toEqual([1, 2]);
  expect(of('AWS::SSM::Parameter')).toEqual([expect.objectContaining({ Value: 'off' })]);
  const functions = of('AWS::Lambda::Function').filter((f) => String(f.Description).startsWith('LLM rate limiter'));
  expect(functions).toHaveLength(5); // authorizer, proxy, limits, brake mirror, config publisher
  for (const fn of functions) {
    expect(fn).toMatchObject({
      Runtime: 'nodejs22.x',
      Handler: 'index.handler',
      Code: { S3Key: expect.stringMatching(/^[0-9a-f]{64}\.zip$/) },
    });
    // Each function's asset is the prebuilt handler, with the configuration beside it where it decides requests.
    const asset = join(dir, 'cdk.out', `asset.${String((fn.Code as { S3Key: string }).S3Key).replace('.zip', '')}`);
    if (String(fn.Description).includes('brake parameter')) {
      expect(readdirSync(asset).sort()).toEqual(['index.js', 'index.js.map']);
      continue;
    }
    expect(readdirSync(asset).sort()).toEqual(['config.json', 'index.js', 'index.js.map']);
    expect(JSON.parse(readFileSync(join(asset, 'config.json'), 'utf8')).plans.team.user).toHaveLength(2);
  }
}

describe("the README's install commands", () => {
  it('name the tarball npm pack makes, installed by its path from the app', () => {
    const install = readmeSample('sh', 0);
    expect(install).toMatch(/^npm ci && npm pack\b/m);
    expect(install).toContain(`npm install ../llm-rate-limiter/${basename(tarball)}`);
  });
});

describe('installed into a new CDK app (cdk init app --language typescript)', () => {
  it('synthesises the README sample in a CommonJS app, offline, without AWS credentials', async () => {
    const dir = await newUserApp(work, 'userapp', 'commonjs');
    expectTheLimiter(dir, await installAndSynth(dir));
    // The installed admin CLI is compiled JavaScript: it answers --help with exit 0.
    const help = await inApp(dir, 'npx', ['llm-limiter', '--help']);
    expect(help.stdout).toContain('llm-limiter: operate an LLM rate limiter');
  }, 300_000);

  it('synthesises the README sample in an ES module app', async () => {
    const dir = await newUserApp(work, 'esmapp', 'module');
    expectTheLimiter(dir, await installAndSynth(dir));
  }, 300_000);

  it('synthesises with the lowest aws-cdk-lib it supports (2.230.0, the first with REST response streaming)', async () => {
    const dir = await newUserApp(work, 'oldestapp', 'commonjs', { 'aws-cdk-lib': '2.230.0' });
    expectTheLimiter(dir, await installAndSynth(dir));
    expect(JSON.parse(readFileSync(join(dir, 'node_modules', 'aws-cdk-lib', 'package.json'), 'utf8')).version).toBe(
      '2.230.0',
    );
  }, 300_000);

  it("synthesises the README's platform sample (own topic, VPC, dev and prod in one account) and passes cdk-nag", async () => {
    const sample = readmeSampleWith('ts', 'alarmTopic: Topic.fromTopicArn');
    const dir = await newUserApp(work, 'platformapp', 'commonjs', {}, sample);
    await installTarball(dir, tarball, 'cdk-nag@3');
    await synthApp(dir); // AwsSolutionsChecks is a validation plugin: a finding fails the synth
    for (const env of ['dev', 'prod']) {
      const template = JSON.parse(
        readFileSync(join(dir, 'cdk.out', `Llm-${env}.template.json`), 'utf8'),
      ) as Template & {
        Outputs: Record<string, { Value: unknown; Description: string }>;
      };
      expect(Object.keys(template.Outputs).sort()).toEqual([
        'LimiterAlarmTopicArn',
        'LimiterApiUrl',
        'LimiterBrakeParameterName',
        'LimiterLedgerTableName',
        'LimiterTableName',
      ]);
      expect(JSON.stringify(template.Outputs.LimiterApiUrl!.Value)).toMatch(/"\/v1"\]\]\}$/);
      const of = (type: string) => Object.values(template.Resources).filter((r) => r.Type === type);
      expect(of('AWS::ApiGateway::RestApi').map((r) => r.Properties.Name)).toEqual([`Llm-${env}-Limiter`]);
      const functions = of('AWS::Lambda::Function');
      expect(functions).toHaveLength(5);
      for (const fn of functions)
        expect(fn.Properties.VpcConfig).toMatchObject({
          SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
        });
      const topic = `arn:aws:sns:eu-west-1:123456789012:on-call-${env}`;
      expect(of('AWS::SNS::Topic')).toEqual([]);
      for (const alarm of of('AWS::CloudWatch::Alarm')) expect(alarm.Properties.AlarmActions).toEqual([topic]);
      const table = of('AWS::DynamoDB::Table')[0]!;
      expect(table.Properties.Tags).toContainEqual({ Key: 'environment', Value: env });
    }
  }, 300_000);
});
