/**
 * The IAM scenario (test/fidelity/iam.test.ts, bench fidelity.iam.*): the functions run as in
 * Lambda (built from the environment the template gives them, real SDK clients) against local
 * endpoints that record each call; an IAM policy simulator judges each call on the ARN AWS would
 * see (a real-looking account and region, a secret ARN with its random suffix) against the role's
 * policies from the synthesized template.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { createHandler, depsFromEnvironment } from '../../lambda/authorizer/handler';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn } from '../../local/upstream-standin';
import { createLimitsHandler, limitsDepsFromEnvironment } from '../../lambda/limits/handler';
import { createProxyHandler, proxyDepsFromEnvironment } from '../../lambda/proxy/handler';
import { localClient } from '../../local/dynamodb-local';
import {
  calendarBudget,
  LlmRateLimiter,
  requests,
  requestsPerMinute,
  tokensPerDay,
  tokensPerMinute,
  usdPerCalendarDay,
  usdPerDay,
} from '../../lib';
import { mirrorBrake, mirrorDepsFromEnvironment } from '../../lambda/brake-mirror/handler';
import { BRAKE_MIRROR_STALE_MS } from '../../lambda/runtime/brake';
import { handleConfigEvent, publisherDepsFromEnvironment } from '../../lambda/config-publisher/handler';
import { configSha256 } from '../../lambda/engine/config-hash';
import { parseConfig } from '../../lambda/engine/plans';
import { cfnEvent, startCfnResponseUrl } from './cfn-response';
import { startDynamoFaultProxy } from './dynamo-faults';
import { authorizerEvent, lambdaContext, proxyEvent } from './events';
import { localFunctionEnvironment } from './function-environment';
import { ACCOUNT, allowed, type IamCall, physicalOf, REGION, resolve, rolePolicies, unusedGrants } from './iam-check';

const CHAT = '/v1/chat/completions';
const EMBED = '/v1/embeddings';
const BRAKE = '/llm-limiter/brake';
const SECRET_NAME = 'llm-limiter/openai-key';
/** The complete ARN Secrets Manager gave the secret: its name, a hyphen and six random characters. */
const SECRET_ARN = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${SECRET_NAME}-Ab12Cd`;
const KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/11111111-2222-3333-4444-555555555555`;
export const FUNCTIONS = {
  authorizer: 'LimiterAuthorizer',
  proxy: 'LimiterProxy',
  limits: 'LimiterLimitsFunction',
  'brake-mirror': 'LimiterBrakeMirror',
  'config-publisher': 'LimiterConfigPublisher',
} as const;
// The user's and the endpoint's token buckets refill within a request: their refunds are of units
// already refilled, known from time alone, and the settlement writes only the tenant's item.
// The calendar budgets alert at their first request (authorizer: requests; proxy: dollars), so
// the alert's claim and its event are judged too.
const GLOBAL_LIMITS = [usdPerDay(100), requestsPerMinute(6_000)];

const PLANS = {
  team: {
    tenant: [
      tokensPerDay(100_000),
      requestsPerMinute(1_000),
      requests(calendarBudget(100, 'day'), { alertAt: [1] }),
      usdPerCalendarDay(0.1, { alertAt: [1], timeZone: 'Europe/Paris' }),
    ],
    user: [requestsPerMinute(1_000), tokensPerMinute(10_000_000)],
    endpoints: { [CHAT]: [tokensPerMinute(10_000_000)] },
  },
  // One request a minute: the second is a 429, which the authorizer counts in the usage ledger.
  tight: { user: [requestsPerMinute(1)] },
};
const ENDPOINTS = {
  [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
  [EMBED]: { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
};

export const SECRET_VARIANTS: [string, (stack: Stack) => ISecret, boolean][] = [
  ['a secret imported by name (partial ARN)', (stack) => Secret.fromSecretNameV2(stack, 'Key', SECRET_NAME), false],
  ['a secret imported by complete ARN', (stack) => Secret.fromSecretCompleteArn(stack, 'Key', SECRET_ARN), false],
  [
    'a secret encrypted with a customer managed key',
    (stack) =>
      Secret.fromSecretAttributes(stack, 'Key', {
        secretCompleteArn: SECRET_ARN,
        encryptionKey: kms.Key.fromKeyArn(stack, 'Cmk', KEY_ARN),
      }),
    true,
  ],
];

function synth(secret: (stack: Stack) => ISecret) {
  const stack = new Stack(new App(), 'Iam', { env: { account: ACCOUNT, region: REGION } });
  new LlmRateLimiter(stack, 'Limiter', {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: secret(stack),
    brakeParameterName: BRAKE,
    endpoints: ENDPOINTS,
    plans: PLANS,
    globalLimits: GLOBAL_LIMITS,
    globalFairShare: true,
  });
  return Template.fromStack(stack);
}

export interface IamReport {
  /** Distinct (function, action, resource) calls recorded. */
  readonly calls: IamCall[];
  readonly denied: string[];
  readonly unused: string[];
  /** Requests the scenario expected to succeed that did not (the scenario's own check). */
  readonly failures: string[];
}

/** Runs every kind of request through the three functions with the given secret, and judges the calls. */
export async function iamScenario(
  dynamoEndpoint: string,
  table: string,
  ledgerTable: string,
  secret: (stack: Stack) => ISecret,
  encrypted: boolean,
): Promise<IamReport> {
  installLambdaStreamingGlobals();
  const template = synth(secret);
  const physical = physicalOf(template, table, ledgerTable);
  const dynamo = await startDynamoFaultProxy(dynamoEndpoint);
  const ssm = await startSsmLocal({ account: ACCOUNT, region: REGION });
  const upstream = await startUpstreamStandIn({ usage: { prompt_tokens: 5, completion_tokens: 3 } });
  const saved = { ...process.env };
  const failures: string[] = [];
  try {
    ssm.parameters.set(BRAKE, { value: 'off', version: 1, modified: Date.now() });
    const proxyEnv = Object.values(template.findResources('AWS::Lambda::Function')).find(
      (f) => f.Properties.Environment?.Variables?.UPSTREAM_API_KEY_SECRET,
    )!.Properties.Environment.Variables;
    const secretId = String(resolve(proxyEnv.UPSTREAM_API_KEY_SECRET, physical));
    ssm.secrets.set(secretId, 'sk-upstream');
    Object.assign(process.env, {
      ...localFunctionEnvironment({
        tableName: table,
        brakeParameterName: BRAKE,
        // Shared: the authorizer and the proxy also write the tenants' fair-share meters.
        config: { plans: PLANS, endpoints: ENDPOINTS, global: { limits: GLOBAL_LIMITS, shards: 8, fairShare: true } },
        dynamoEndpoint: dynamo.endpoint,
        ssmEndpoint: ssm.endpoint,
      }),
      AWS_REGION: REGION,
      BRAKE_SOURCE: proxyEnv.BRAKE_SOURCE,
      UPSTREAM_BASE_URL: upstream.baseUrl,
      UPSTREAM_API_KEY_SECRET: secretId,
      LEDGER_TABLE_NAME: String(resolve(proxyEnv.LEDGER_TABLE_NAME, physical)),
    });
    const built = <T>(fn: string, build: () => T): T => {
      process.env.LIMITER_FUNCTION = fn;
      return build();
    };
    const authorizer = built('authorizer', () => createHandler(depsFromEnvironment()));
    const proxy = built('proxy', () => createProxyHandler(proxyDepsFromEnvironment()));
    const limits = built('limits', () => createLimitsHandler(limitsDepsFromEnvironment()));
    const mirror = built('brake-mirror', () => {
      const deps = mirrorDepsFromEnvironment();
      return (clock?: () => number) => mirrorBrake({ ...deps, ...(clock ? { clock } : {}) });
    });
    const publisher = built('config-publisher', () => publisherDepsFromEnvironment());
    // The publisher of the deploy before, whose configuration differs (its config.json did).
    const earlier = built('config-publisher', () => ({
      ...publisherDepsFromEnvironment(),
      config: () =>
        parseConfig(
          JSON.parse(JSON.stringify({ ...publisher.config(), plans: { team: { tenant: [tokensPerDay(50_000)] } } })),
        ),
    }));
    delete process.env.LIMITER_FUNCTION;
    await mirror(); // as EventBridge would on the brake's first change
    const responseUrl = await startCfnResponseUrl();
    try {
      // As CloudFormation does: the deploy before, this deploy, then its rollback to the one before.
      const hashOf = (deps: typeof publisher) => ({ ConfigSha256: configSha256(deps.config()) });
      await handleConfigEvent(cfnEvent('Create', responseUrl.url, hashOf(earlier)), earlier);
      await handleConfigEvent(cfnEvent('Update', responseUrl.url, hashOf(publisher)), publisher);
      await handleConfigEvent(cfnEvent('Update', responseUrl.url, hashOf(earlier)), publisher);
    } finally {
      await responseUrl.stop();
    }

    const client = localClient(dynamoEndpoint);
    const tenant = `tenant-${crypto.randomUUID()}`;
    const apiKey = `sk-${crypto.randomUUID()}`;
    await putTenant(client, table, { id: tenant, plan: 'team' });
    await putApiKey(client, table, apiKey, { tenant, user: 'alice', status: 'active' });
    const auth = { Authorization: `Bearer ${apiKey}` };
    const context = { tenant, user: 'alice', shard: '0' };
    const expectThat = (ok: boolean, what: string) => {
      if (!ok) failures.push(what);
    };

    expectThat(
      (await authorizer(authorizerEvent({ headers: auth }), lambdaContext())).policyDocument.Statement[0]?.Effect ===
        'Allow',
      'authorizer allows a chat request',
    );
    expectThat(
      (await authorizer(authorizerEvent({ headers: auth, route: '/v1/limits', method: 'GET' }), lambdaContext()))
        .policyDocument.Statement[0]?.Effect === 'Allow',
      'authorizer allows GET /v1/limits',
    );
    expectThat(
      await authorizer(authorizerEvent({ headers: { Authorization: 'Bearer sk-nobody' } }), lambdaContext()).then(
        () => false,
        (err: Error) => err.message === 'Unauthorized',
      ),
      'authorizer refuses an unknown key',
    );
    // A 429 counted in the ledger: the authorizer writes it at the end of its next invocation after
    // a pause (a container that was idle writes what it holds).
    const tight = `tight-${crypto.randomUUID()}`;
    const tightKey = `sk-${crypto.randomUUID()}`;
    await putTenant(client, table, { id: tight, plan: 'tight' });
    await putApiKey(client, table, tightKey, { tenant: tight, user: 'bob', status: 'active' });
    const tightAuth = { Authorization: `Bearer ${tightKey}` };
    await authorizer(authorizerEvent({ headers: tightAuth }), lambdaContext());
    expectThat(
      (await authorizer(authorizerEvent({ headers: tightAuth }), lambdaContext())).policyDocument.Statement[0]
        ?.Effect === 'Deny',
      'the authorizer denies a request over the limit',
    );
    await new Promise((r) => setTimeout(r, 1_100));
    await authorizer(authorizerEvent({ headers: tightAuth }), lambdaContext());
    const chat = (body: Record<string, unknown>, route = CHAT) =>
      invokeStreaming(proxy, proxyEvent({ route, body, authorizer: context }), lambdaContext('proxy'));
    expectThat(
      (await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })).statusCode ===
        200,
      'a streamed chat answers 200',
    );
    expectThat(
      (await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })).statusCode === 200,
      'a chat answers 200',
    );
    expectThat(
      (await chat({ model: 'text-embedding-3-small', input: 'hi' }, EMBED)).statusCode === 200,
      'embeddings answer 200',
    );
    upstream.behaviour = { ...upstream.behaviour, status: 500 }; // an upstream failure: the reservation is refunded
    await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    upstream.behaviour = { ...upstream.behaviour, status: undefined };
    expectThat(
      (await limits(proxyEvent({ route: '/v1/limits', authorizer: context }), lambdaContext('limits'))).statusCode ===
        200,
      'GET /v1/limits answers 200',
    );
    // The mirror stops (its last copy minutes old): each function reads the parameter directly (its
    // fallback), and those calls are judged too.
    await mirror(() => Date.now() - BRAKE_MIRROR_STALE_MS - 60_000);
    await authorizer(authorizerEvent({ headers: auth }), lambdaContext());
    await chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    await limits(proxyEvent({ route: '/v1/limits', authorizer: context }), lambdaContext('limits'));
    expectThat(
      responseUrl.answers.length === 3 && responseUrl.answers.every((a) => a.body.Status === 'SUCCESS'),
      'the configuration is published at deploy, and the one before at its rollback',
    );

    const fnOf = (userAgent: string) => /llm-rate-limiter\/([\w-]+)/.exec(userAgent)?.[1] ?? 'unknown';
    const all: IamCall[] = [];
    for (const c of dynamo.calls)
      for (const action of c.iamActions)
        all.push({ fn: fnOf(c.userAgent), action, resource: `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${c.table}` });
    for (const c of ssm.log) {
      const fn = fnOf(c.userAgent);
      if (c.service === 'events')
        all.push({
          fn,
          action: `events:${c.action}`,
          resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default`,
        });
      else if (c.service === 'ssm')
        all.push({
          fn,
          action: `ssm:${c.action}`,
          resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${c.resource.startsWith('/') ? '' : '/'}${c.resource}`,
        });
      else {
        // Whatever id the call names the secret by, IAM judges its complete ARN.
        all.push({ fn, action: `secretsmanager:${c.action}`, resource: SECRET_ARN });
        // Secrets Manager decrypts a secret under a customer managed key with the caller's permissions.
        if (encrypted) all.push({ fn, action: 'kms:Decrypt', resource: KEY_ARN });
      }
    }
    const calls = [...new Map(all.map((c) => [`${c.fn} ${c.action} ${c.resource}`, c])).values()];
    const denied: string[] = [];
    const unused: string[] = [];
    for (const c of calls)
      if (!(c.fn in FUNCTIONS)) denied.push(`a call from an unknown function: ${c.action} on ${c.resource}`);
    for (const [fn, prefix] of Object.entries(FUNCTIONS)) {
      const statements = rolePolicies(template, prefix, physical);
      for (const call of calls.filter((c) => c.fn === fn)) {
        const verdict = await allowed(call, statements);
        if (!verdict.allowed) denied.push(`${fn}: ${call.action} on ${call.resource} (${verdict.detail})`);
      }
      // CloudWatch Logs is written by the Lambda runtime, not by the code.
      unused.push(
        ...unusedGrants(
          statements,
          calls.filter((c) => c.fn === fn),
          (action) => action.startsWith('logs:'),
        ).map((g) => `${fn}: ${g}`),
      );
    }
    return { calls, denied, unused, failures };
  } finally {
    process.env = saved;
    await upstream.stop();
    await ssm.stop();
    await dynamo.stop();
  }
}
