import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { describe, expect, it } from 'vitest';
import { apiRoutes, FUNCTION_SETTINGS, functionEnvironment, proxyEnvironment } from '../../lambda/gateway/api';
import { GATEWAY_RESPONSES } from '../../lambda/gateway/responses';
import { DEMO_CONFIG } from '../../local/start';
import { LlmRateLimiter } from '../../lib';

/**
 * The local gateway serves apiRoutes() and renders GATEWAY_RESPONSES, and builds the functions from
 * functionEnvironment(); the construct must deploy exactly the same, or what passes locally would
 * not pass deployed.
 */
describe('the construct and the local gateway cannot drift', () => {
  const stack = new Stack(new App(), 'Drift');
  new LlmRateLimiter(stack, 'Limiter', {
    upstreamBaseUrl: 'https://api.openai.com/v1',
    upstreamApiKeySecret: Secret.fromSecretNameV2(stack, 'Key', 'k'),
    plans: DEMO_CONFIG.plans,
    endpoints: DEMO_CONFIG.endpoints,
    ...(DEMO_CONFIG.global ? { globalLimits: DEMO_CONFIG.global.limits, globalShards: DEMO_CONFIG.global.shards } : {}),
  });
  const template = Template.fromStack(stack);
  // biome-ignore lint/suspicious/noExplicitAny: a synthesized template's properties are free-form JSON, read field by field
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, any> }>;

  function pathOf(resourceId: unknown): string {
    if (typeof resourceId !== 'object' || resourceId === null || !('Ref' in resourceId)) return '';
    const r = resources[(resourceId as { Ref: string }).Ref];
    if (r?.Type !== 'AWS::ApiGateway::Resource') return '';
    return `${pathOf(r.Properties.ParentId)}/${r.Properties.PathPart}`;
  }

  it('deploys exactly the routes the local gateway serves, streaming where it streams, authorized where it runs the authorizer', () => {
    const deployed = Object.values(resources)
      .filter((r) => r.Type === 'AWS::ApiGateway::Method')
      .map((m) => ({
        method: m.Properties.HttpMethod,
        path: pathOf(m.Properties.ResourceId),
        streaming: m.Properties.Integration?.ResponseTransferMode === 'STREAM',
        authorized: m.Properties.AuthorizationType === 'CUSTOM',
      }))
      .sort((a, b) => a.path.localeCompare(b.path));
    const local = apiRoutes(DEMO_CONFIG.endpoints)
      .map((r) => ({ method: r.method, path: r.path, streaming: r.streaming, authorized: r.authorized }))
      .sort((a, b) => a.path.localeCompare(b.path));
    expect(deployed).toEqual(local);
  });

  it('deploys the gateway responses the local gateway renders', () => {
    const deployed = Object.values(resources)
      .filter((r) => r.Type === 'AWS::ApiGateway::GatewayResponse')
      .map((g) => ({
        type: g.Properties.ResponseType,
        status: g.Properties.StatusCode,
        headers: g.Properties.ResponseParameters,
        template: g.Properties.ResponseTemplates['application/json'],
      }));
    const local = GATEWAY_RESPONSES.map((d) => ({
      type: d.type,
      status: d.statusCode,
      headers: Object.fromEntries(
        Object.entries(d.responseHeaders).map(([k, v]) => [`gatewayresponse.header.${k}`, v]),
      ),
      template: d.template,
    }));
    expect(deployed.sort((a, b) => a.type.localeCompare(b.type))).toEqual(
      local.sort((a, b) => a.type.localeCompare(b.type)),
    );
  });

  it('gives the functions the settings and environment the local run builds them from', () => {
    const functions = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    const find = (prefix: string) => functions.find(([id]) => id.startsWith(prefix))![1].Properties;
    // biome-ignore lint/suspicious/noExplicitAny: a synthesized template's properties are free-form JSON, read field by field
    const envKeys = (p: Record<string, any>) => Object.keys(p.Environment.Variables).sort();
    const common = Object.keys(
      functionEnvironment({
        tableName: '',
        ledgerTableName: '',
        brakeParameterName: '',
        settings: {},
      }),
    );
    expect(find('LimiterAuthorizer')).toMatchObject({
      MemorySize: FUNCTION_SETTINGS.authorizer.memorySize,
      Timeout: FUNCTION_SETTINGS.authorizer.timeoutSeconds,
    });
    expect(find('LimiterProxy')).toMatchObject({ MemorySize: FUNCTION_SETTINGS.proxy.memorySize });
    expect(find('LimiterLimitsFunction')).toMatchObject({
      MemorySize: FUNCTION_SETTINGS.limits.memorySize,
      Timeout: FUNCTION_SETTINGS.limits.timeoutSeconds,
    });
    // Each function also says which it is (the user agent of its AWS calls names it).
    expect(envKeys(find('LimiterAuthorizer'))).toEqual([...common, 'LIMITER_FUNCTION'].sort());
    expect(envKeys(find('LimiterProxy'))).toEqual(
      [
        ...common,
        ...Object.keys(proxyEnvironment({ upstreamBaseUrl: '', upstreamApiKeySecret: '' })),
        'LIMITER_FUNCTION',
      ].sort(),
    );
    for (const [prefix, name] of [
      ['LimiterAuthorizer', 'authorizer'],
      ['LimiterProxy', 'proxy'],
      ['LimiterLimitsFunction', 'limits'],
    ])
      expect(find(prefix!).Environment.Variables.LIMITER_FUNCTION).toBe(name);
  });
});
