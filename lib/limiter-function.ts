import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Duration, RemovalPolicy, Stage } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { acknowledge } from './acknowledge';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The handlers the package ships, bundled when the package is built (scripts/build.mjs). */
export type LimiterFunctionName =
  | 'authorizer'
  | 'proxy'
  | 'limits'
  | 'auto-brake'
  | 'brake-mirror'
  | 'config-publisher';

/**
 * Where the prebuilt handler lives: beside the compiled library in the installed package
 * (dist/index.js -> dist/lambda), or in dist/ of this repository when the sources run.
 */
function bundleDir(name: LimiterFunctionName): string {
  const candidates = [path.join(here, 'lambda', name), path.join(here, '..', 'dist', 'lambda', name)];
  const found = candidates.find((dir) => existsSync(path.join(dir, 'index.js')));
  if (!found)
    throw new Error(`the prebuilt ${name} handler is missing (looked in ${candidates.join(', ')}): run npm run build`);
  return found;
}

/** Where every function of one limiter runs and what happens to its logs: the same for all of them. */
export interface FunctionPlacement {
  /** How long the function's log group keeps its events. */
  readonly logRetention: logs.RetentionDays;
  /** What happens to the function's log group when it leaves the stack. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** The VPC to run in (see LlmRateLimiterProps.vpc). @default - no VPC */
  readonly vpc?: ec2.IVpc;
  /** The subnets of `vpc` to run in. @default - the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** The security groups to run with in `vpc`. @default - a new one for this function (lambda.Function's default) */
  readonly securityGroups?: ec2.ISecurityGroup[];
}

/** Props of {@link LimiterFunction}. */
export interface LimiterFunctionProps extends FunctionPlacement {
  /** Which handler. */
  readonly handler: LimiterFunctionName;
  /** Written beside the handler as config.json (the validated limiter configuration). @default - no config.json (the automatic brake needs none) */
  readonly config?: unknown;
  /** The function's description in the console. */
  readonly description: string;
  /** Memory in MB (CPU grows with it). */
  readonly memorySize: number;
  /** The longest an invocation may run. */
  readonly timeout: Duration;
  /** Environment variables beside the handler's own (NODE_OPTIONS, LIMITER_FUNCTION). */
  readonly environment: Record<string, string>;
  /** Executions kept for this function alone; false for none. @default - none */
  readonly reservedConcurrentExecutions?: number | false;
}

/**
 * One of the limiter's functions, written once: the prebuilt handler as its code (staged with
 * config.json beside it at synth: no bundler, Docker or lock file runs), Node 22 on arm64, its own
 * log group and a role that may write to that group only (no managed policy). The asset's hash
 * covers the handler and the configuration, so a changed plan deploys as a new version.
 */
export class LimiterFunction extends lambda.Function {
  /**
   * @param scope - the parent construct
   * @param id - the construct's id, unique within its scope
   * @param props - which handler, its configuration and sizing
   */
  constructor(scope: Construct, id: string, props: LimiterFunctionProps) {
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: props.logRetention,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `LLM rate limiter ${id} function`,
    });
    logGroup.grantWrite(role);
    if (props.vpc) allowNetworkInterfaces(role);
    super(scope, id, {
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(stage(scope, props.handler, props.config)),
      memorySize: props.memorySize,
      timeout: props.timeout,
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment, LIMITER_FUNCTION: props.handler },
      description: props.description,
      role,
      logGroup,
      ...(props.vpc
        ? {
            vpc: props.vpc,
            vpcSubnets: props.vpcSubnets,
            securityGroups: props.securityGroups,
            allowPublicSubnet: false,
          }
        : {}),
      ...(typeof props.reservedConcurrentExecutions === 'number'
        ? { reservedConcurrentExecutions: props.reservedConcurrentExecutions }
        : {}),
    });
    acknowledge(this, {
      id: 'AwsSolutions::AwsSolutions-L1',
      reason: 'Pinned to nodejs22.x: the Node major the code is tested on (the project pins Node 22 for its tests).',
    });
  }
}

/**
 * A function in a VPC reaches it through network interfaces Lambda creates with the function's
 * role. These are the actions of AWS's AWSLambdaVPCAccessExecutionRole without its logs:* on every
 * log group (the role writes to its own group only); EC2 takes no narrower resource for the
 * Describe calls.
 * https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html
 */
function allowNetworkInterfaces(role: iam.Role): void {
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: [
        'ec2:CreateNetworkInterface',
        'ec2:DescribeNetworkInterfaces',
        'ec2:DescribeSubnets',
        'ec2:DeleteNetworkInterface',
        'ec2:AssignPrivateIpAddresses',
        'ec2:UnassignPrivateIpAddresses',
      ],
      resources: ['*'],
    }),
  );
  acknowledge(role, {
    id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
    reason:
      "Lambda creates and deletes the function's network interfaces in the VPC with its role; " +
      'EC2 takes no narrower resource for these actions (AWSLambdaVPCAccessExecutionRole grants them on * too).',
  });
}

/**
 * The asset's folder: the prebuilt handler plus config.json, staged once per distinct content in
 * the app's output folder (cdk.out/.limiter-staging/<hash>), so the user's synth only copies files.
 */
function stage(scope: Construct, handler: LimiterFunctionName, configValue: unknown): string {
  const source = bundleDir(handler);
  const files = readdirSync(source).sort();
  const config = configValue === undefined ? undefined : `${JSON.stringify(configValue, null, 2)}\n`;
  const hash = createHash('sha256');
  for (const file of files) hash.update(file).update(readFileSync(path.join(source, file)));
  if (config) hash.update(config);
  const dir = path.join(
    Stage.of(scope)?.outdir ?? mkdtempSync(path.join(tmpdir(), 'limiter-')),
    '.limiter-staging',
    `${handler}-${hash.digest('hex').slice(0, 16)}`,
  );
  if (!existsSync(dir)) {
    // Staged whole or not at all: an interrupted synth never leaves a half-copied folder behind to reuse.
    const partial = `${dir}.${process.pid}.partial`;
    mkdirSync(partial, { recursive: true });
    for (const file of files) copyFileSync(path.join(source, file), path.join(partial, file));
    if (config) writeFileSync(path.join(partial, 'config.json'), config);
    renameSync(partial, dir);
  }
  return dir;
}
