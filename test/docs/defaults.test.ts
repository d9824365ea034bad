/**
 * The defaults the reference shows for LlmRateLimiter's props (docs/reference/interfaces/LlmRateLimiterProps.md,
 * typedoc's props table, from their @default) are the ones the code applies: a default written as code is evaluated and
 * compared with the settings' table, the engine's constants, or what a stack without the prop deploys.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { beforeAll, describe, expect, it } from 'vitest';
import { CHOICE_SETTINGS, FLAG_SETTINGS, NUMBER_SETTINGS } from '../../lambda/runtime/settings';
import { DEFAULT_GLOBAL_SHARDS, DEFAULT_PENALTY } from '../../lib';
import { defaultTemplate } from '../support/default-stack';

/** The props table's default column, by prop, as the page shows it (typedoc's HTML table, markdown in its cells). */
function documentedDefaults(): Map<string, string> {
  const page = readFileSync(join(process.cwd(), 'docs', 'reference', 'interfaces', 'LlmRateLimiterProps.md'), 'utf8');
  const header = page.slice(page.indexOf('<thead>'), page.indexOf('</thead>'));
  const column = [...header.matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1]).indexOf('Default value');
  const rows = page.slice(page.indexOf('<tbody>'), page.indexOf('</tbody>')).split('<tr>').slice(1);
  return new Map(
    rows.map((row) => {
      const cells = [...row.matchAll(/<td>\n\n([\s\S]*?)\n\n<\/td>/g)].map((m) => m[1]!.trim());
      return [/`(\w+)\??`$/.exec(cells[0]!)![1]!, cells[column]!];
    }),
  );
}

/** The default's leading code (`Duration.seconds(30)`, `8`, `'live'`), evaluated as a user's app would. */
function evaluated(shown: string | undefined): unknown {
  const code = /^`([^`]+)`/.exec(shown ?? '')?.[1];
  if (code === undefined) throw new Error(`the default ${JSON.stringify(shown)} does not start with code`);
  const scope = { Duration, RemovalPolicy, RetentionDays };
  return new Function(...Object.keys(scope), `return (${code});`)(...Object.values(scope));
}

const seconds = (d: unknown) => (d as Duration).toSeconds();

describe("the reference's defaults for LlmRateLimiter's props", () => {
  let template: Template;
  const shown = documentedDefaults();
  beforeAll(() => {
    template = defaultTemplate();
  });
  // biome-ignore lint/suspicious/noExplicitAny: a synthesized template's properties are free-form JSON
  const resources = (type: string) => Object.values(template.findResources(type)) as any[];
  const fn = (description: RegExp) =>
    resources('AWS::Lambda::Function').find((f) => description.test(f.Properties.Description))!.Properties;

  it('documents a default for every optional prop, and says which props are required', () => {
    expect(shown.size).toBeGreaterThan(25);
    expect([...shown.entries()].filter(([, d]) => d === '`undefined`' || d === '')).toEqual([]);
    expect([...shown.entries()].filter(([, d]) => d === '*required*').map(([prop]) => prop)).toEqual([
      'plans',
      'endpoints',
    ]);
  });

  it.each<[string, (documented: unknown) => void]>([
    ['keyCacheTtl', (d) => expect(seconds(d)).toBe(NUMBER_SETTINGS.keyCacheTtlSeconds.default)],
    ['brakeCacheTtl', (d) => expect(seconds(d)).toBe(NUMBER_SETTINGS.brakeCacheTtlSeconds.default)],
    ['brakeRetryAfter', (d) => expect(seconds(d)).toBe(NUMBER_SETTINGS.brakeRetryAfterSeconds.default)],
    ['clockSkew', (d) => expect((d as Duration).toMilliseconds()).toBe(NUMBER_SETTINGS.clockSkewMs.default)],
    ['upstreamTimeout', (d) => expect(seconds(d) * 1000).toBe(NUMBER_SETTINGS.upstreamTimeoutMs.default)],
    ['leasePercent', (d) => expect(d).toBe(NUMBER_SETTINGS.leasePercent.default)],
    ['ledgerFlush', (d) => expect(seconds(d)).toBe(NUMBER_SETTINGS.ledgerFlushSeconds.default)],
    ['ledgerRetention', (d) => expect((d as Duration).toDays()).toBe(NUMBER_SETTINGS.ledgerRetentionDays.default)],
    ['brakeColdStart', (d) => expect(d).toBe(CHOICE_SETTINGS.brakeColdStart.default)],
    ['metricsByTenant', (d) => expect(d).toBe(FLAG_SETTINGS.metricsByTenant.default)],
    ['globalShards', (d) => expect(d).toBe(DEFAULT_GLOBAL_SHARDS)],
    ['penalty', (d) => expect(d).toEqual(DEFAULT_PENALTY)],
    ['streamTimeout', (d) => expect(fn(/streaming pass-through/).Timeout).toBe(seconds(d))],
    ['authorizerReservedConcurrency', (d) => expect(fn(/identity/).ReservedConcurrentExecutions).toBe(d)],
    ['brakeReservedConcurrency', (d) => expect(fn(/copies the brake parameter/).ReservedConcurrentExecutions).toBe(d)],
    ['stageName', (d) => expect(resources('AWS::ApiGateway::Stage')[0].Properties.StageName).toBe(d)],
    ['cloudWatchRole', (d) => expect(resources('AWS::ApiGateway::Account').length > 0).toBe(d)],
    [
      'logRetention',
      (d) =>
        expect(new Set(resources('AWS::Logs::LogGroup').map((g) => g.Properties.RetentionInDays))).toEqual(
          new Set([d]),
        ),
    ],
    [
      'removalPolicy',
      (d) =>
        expect(resources('AWS::DynamoDB::Table')[0].DeletionPolicy).toBe(
          d === RemovalPolicy.RETAIN ? 'Retain' : 'Delete',
        ),
    ],
  ])('%s: the documented default is what the code applies', (prop, check) => {
    check(evaluated(shown.get(prop)));
  });
});
