/** The README's Bedrock example, as written, synthesizes with no secret and a clean cdk-nag report. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { transformSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as lib from '../../lib';

const readme = readFileSync(join(process.cwd(), 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

describe("the README's Bedrock example", () => {
  it('synthesizes: Bedrock permissions on its model, no secret, cdk-nag clean', () => {
    const example = blocks.find((b) => b.includes('Upstream.bedrock()'));
    expect(example).toBeDefined();
    // The example's code with its import from the package replaced by the library itself.
    const body = example!.replace(/^import .* from 'llm-rate-limiter';$/m, '');
    const { code } = transformSync(body, { loader: 'ts', format: 'cjs' });
    const app = new App();
    const stack = new Stack(app, 'Readme', { env: { account: '123456789012', region: 'us-east-1' } });
    new Function('lib', 'stack', `const { ${Object.keys(lib).join(', ')} } = lib;\n${code}`)(lib, stack);
    const template = Template.fromStack(stack);
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(policies).toContain('bedrock:InvokeModelWithResponseStream');
    expect(policies).toContain('inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0');
    expect(policies).not.toContain('secretsmanager:GetSecretValue');
    // cdk-nag's AwsSolutions pack finds nothing unacknowledged (a finding fails the synth).
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow();
  });
});
