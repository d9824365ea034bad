import { runSimulation } from '@cloud-copilot/iam-simulate';
import type { Template } from 'aws-cdk-lib/assertions';

/**
 * Checks AWS calls the functions made against the role policies of a synthesized template, with
 * an IAM policy simulator (@cloud-copilot/iam-simulate, a test-only dependency). The template's
 * intrinsic functions are resolved for a sample account and region and for the names the calls
 * used, so each call is judged on the ARN AWS would see.
 */
export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';

/** One call as IAM sees it: which function's role, which action, on which resource ARN, with which condition keys set. */
export interface IamCall {
  readonly fn: string;
  readonly action: string;
  readonly resource: string;
  /** Condition keys the service sets for this evaluation (e.g. bedrock:InferenceProfileArn). */
  readonly context?: Readonly<Record<string, string>>;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
  Condition?: Json;
}

/** Physical values for the template's resources: Ref and Fn::GetAtt by logical id. */
export interface Physical {
  readonly ref: Record<string, string>;
  readonly arn: Record<string, string>;
}

/** What each logical id is on AWS, for the names this run uses (the table's name given). */
export function physicalOf(template: Template, table: string, ledgerTable = `${table}-ledger`): Physical {
  const ref: Record<string, string> = {};
  const arn: Record<string, string> = {};
  for (const [id, r] of Object.entries(
    template.toJSON().Resources as Record<string, { Type: string; Properties?: Record<string, unknown> }>,
  )) {
    if (r.Type === 'AWS::DynamoDB::Table') {
      // Two tables: the limits table, and the usage ledger's (lib/limits-table.ts).
      const name = id.includes('Ledger') ? ledgerTable : table;
      ref[id] = name;
      arn[id] = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${name}`;
    } else if (r.Type === 'AWS::SSM::Parameter') {
      ref[id] = String(r.Properties?.Name);
    } else if (r.Type === 'AWS::Logs::LogGroup') {
      ref[id] = `/aws/lambda/${id}`;
      arn[id] = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/${id}:*`;
    } else {
      ref[id] = `${id}-physical`;
      arn[id] = `arn:aws:${r.Type.split('::')[1]!.toLowerCase()}:${REGION}:${ACCOUNT}:${id}`;
    }
  }
  return { ref, arn };
}

/** A template value with its intrinsic functions (Ref, Fn::GetAtt, Fn::Join, ...) resolved to what AWS would see. */
export function resolve(value: Json, physical: Physical): Json {
  if (Array.isArray(value)) return value.map((v) => resolve(v, physical));
  if (value === null || typeof value !== 'object') return value;
  if ('Ref' in value) {
    const id = value.Ref as string;
    const pseudo: Record<string, string> = {
      'AWS::Partition': 'aws',
      'AWS::Region': REGION,
      'AWS::AccountId': ACCOUNT,
      'AWS::URLSuffix': 'amazonaws.com',
    };
    const out = pseudo[id] ?? physical.ref[id];
    if (out === undefined) throw new Error(`no physical value for Ref ${id}`);
    return out;
  }
  if ('Fn::GetAtt' in value) {
    const [id, attr] = value['Fn::GetAtt'] as [string, string];
    const out = attr === 'Arn' ? physical.arn[id] : undefined;
    if (out === undefined) throw new Error(`no physical value for Fn::GetAtt ${id}.${attr}`);
    return out;
  }
  if ('Fn::Join' in value) {
    const [sep, parts] = value['Fn::Join'] as [string, Json[]];
    return parts.map((p) => resolve(p, physical)).join(sep);
  }
  if ('Fn::Select' in value) {
    const [index, list] = value['Fn::Select'] as [number, Json];
    return (resolve(list, physical) as Json[])[index]!;
  }
  if ('Fn::Split' in value) {
    const [sep, source] = value['Fn::Split'] as [string, Json];
    return String(resolve(source, physical)).split(sep);
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v, physical)]));
}

/** The statements of every policy attached to the role of the function whose logical id starts with `fnPrefix`. */
export function rolePolicies(template: Template, fnPrefix: string, physical: Physical): Statement[] {
  const functions = Object.entries(template.findResources('AWS::Lambda::Function')).filter(([id]) =>
    id.startsWith(fnPrefix),
  );
  if (functions.length !== 1) throw new Error(`expected one function ${fnPrefix}*, found ${functions.length}`);
  const role = (functions[0]![1].Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
    .flatMap((p) => resolve(p.Properties.PolicyDocument.Statement as Json, physical) as unknown as Statement[]);
}

const DEFAULT_KEY_POLICY = {
  Version: '2012-10-17',
  Statement: [
    {
      Sid: 'Enable IAM User Permissions',
      Effect: 'Allow',
      Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` },
      Action: 'kms:*',
      Resource: '*',
    },
  ],
};

/** Is `call` allowed by `statements` (identity policies of the caller's role)? */
export async function allowed(call: IamCall, statements: Statement[]): Promise<{ allowed: boolean; detail: string }> {
  const response = await runSimulation(
    {
      request: {
        principal: `arn:aws:iam::${ACCOUNT}:role/${call.fn}`,
        action: call.action,
        resource: { resource: call.resource, accountId: ACCOUNT },
        contextVariables: { ...call.context },
      },
      identityPolicies: [{ name: call.fn, policy: { Version: '2012-10-17', Statement: statements } }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      // A KMS key is only usable through IAM if its key policy delegates to the account, as the
      // default key policy does ("Enable IAM User Permissions"); the README asks for that.
      ...(call.action.startsWith('kms:') ? { resourcePolicy: DEFAULT_KEY_POLICY } : {}),
    },
    {},
  );
  if (response.resultType === 'error' && REGIONLESS.test(call.resource)) {
    const ok = allowedByMatching(call, statements);
    return { allowed: ok, detail: `${ok ? 'Allowed' : 'ImplicitlyDenied'} (region-less ARN, judged by matching)` };
  }
  if (response.resultType === 'error') return { allowed: false, detail: JSON.stringify(response.errors) };
  return { allowed: response.overallResult === 'Allowed', detail: response.overallResult };
}

/** An ARN without a region, such as the foundation model global cross-Region inference evaluates (arn:aws:bedrock:::foundation-model/...). */
const REGIONLESS = /^arn:[^:]+:[^:]+::/;

/**
 * IAM's evaluation where the simulator cannot model the resource (its resource types need a region,
 * so it refuses a region-less ARN): allowed when an Allow statement's action and resource match
 * (IAM wildcards) and its conditions hold. Only StringEquals is judged; anything else throws, as
 * does a Deny statement, rather than guess.
 */
function allowedByMatching(call: IamCall, statements: Statement[]): boolean {
  const list = (v: unknown) => ([] as unknown[]).concat(v).map(String);
  return statements.some((s) => {
    if (s.Effect !== 'Allow') throw new Error('a Deny statement: judge it with the simulator');
    const conditions = Object.entries((s.Condition ?? {}) as Record<string, Record<string, Json>>);
    if (conditions.some(([operator]) => operator !== 'StringEquals'))
      throw new Error(`condition ${JSON.stringify(s.Condition)} is not judged by matching`);
    return (
      list(s.Action).some((a) => matches(a, call.action)) &&
      list(s.Resource).some((r) => matches(r, call.resource)) &&
      conditions.every(([, keys]) =>
        Object.entries(keys).every(([key, value]) => list(value).includes(call.context?.[key] ?? '')),
      )
    );
  });
}

/** IAM's wildcard match (* and ?) of an ARN against a policy's resource. */
export function matches(pattern: string, arn: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(arn);
}

/** Granted (action, resource) pairs of `statements` that no call in `calls` used. */
export function unusedGrants(
  statements: Statement[],
  calls: readonly IamCall[],
  ignore: (action: string) => boolean,
): string[] {
  const unused: string[] = [];
  for (const s of statements) {
    if (s.Effect !== 'Allow') continue;
    for (const action of ([] as string[]).concat(s.Action)) {
      if (ignore(action)) continue;
      for (const resource of ([] as string[]).concat(s.Resource)) {
        if (!calls.some((c) => c.action === action && matches(resource, c.resource)))
          unused.push(`${action} on ${resource}`);
      }
    }
  }
  return unused;
}
