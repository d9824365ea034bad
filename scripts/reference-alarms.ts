/**
 * docs/reference/alarms.md, the one list of alarms, made from the list the construct creates them
 * from (ALARMS in lib/observability.ts): prop, default, metric, and what the alarm says when it fires.
 * `npm run docs` writes it after typedoc; test/docs/reference.test.ts checks LimiterAlarms' defaults.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Stack, Token } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { ALARMS, type LimiterObservabilityProps } from '../lib/observability';

export interface AlarmRow {
  /** The key in the `alarms` prop. */
  readonly prop: string;
  /** The alarm's construct id (its logical id starts with the limiter's id and this). */
  readonly id: string;
  /** The threshold the alarm has when the prop is unset, in the prop's unit. */
  readonly threshold: number;
  /** The CloudWatch threshold: `threshold` in the metric's unit. */
  readonly metricThreshold: number;
  readonly namespace: string;
  readonly metricName: string;
  readonly statistic: string;
  readonly periodSeconds: number;
  /** The alarm's description at the default threshold: what a notification says. */
  readonly description: string;
  /** The metric's dimensions, a function's name said as which function. */
  readonly dimensions: string;
}

/** Every alarm ALARMS defines, at its default threshold. */
export function alarmRows(): AlarmRow[] {
  const stack = new Stack(new App(), 'Reference');
  const fn = (id: string) =>
    new lambda.Function(stack, id, {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = () => {}'),
    });
  const functions = {
    authorizerFunction: fn('Authorizer'),
    proxyFunction: fn('Proxy'),
    brakeMirrorFunction: fn('Mirror'),
  };
  const names = new Map([
    [functions.authorizerFunction.functionName, 'the authorizer'],
    [functions.proxyFunction.functionName, 'the proxy'],
    [functions.brakeMirrorFunction.functionName, 'the brake mirror'],
  ]);
  return ALARMS.map((a) => {
    const metric =
      typeof a.metric === 'function' ? a.metric(functions as unknown as LimiterObservabilityProps) : a.metric;
    const stat = metric.toMetricConfig().metricStat!;
    const dimensions = (stat.dimensions ?? [])
      .map((d) => `${d.name}: ${Token.isUnresolved(d.value) ? (names.get(d.value) ?? 'a function') : d.value}`)
      .join(', ');
    return {
      prop: a.prop,
      id: a.id,
      threshold: a.threshold,
      metricThreshold: a.threshold * (a.scale ?? 1),
      namespace: stat.namespace,
      metricName: stat.metricName,
      statistic: stat.statistic,
      periodSeconds: stat.period.toSeconds(),
      description: a.description(a.threshold),
      dimensions,
    };
  });
}

const period = (seconds: number) =>
  seconds % 3600 === 0 ? `${seconds / 3600} h` : seconds % 60 === 0 ? `${seconds / 60} min` : `${seconds} s`;

/** The alarms page: every alarm ALARMS creates, at its default threshold. */
export function alarmsPage(): string {
  const rows = alarmRows();
  const n = (x: number) => x.toLocaleString('en-US');
  const out = [
    '# The alarms',
    '',
    '<!-- Generated from ALARMS in lib/observability.ts by `npm run docs`: edit the source, not this file. -->',
    '',
    `All ${rows.length} are created unless turned off in the [\`alarms\`](interfaces/LlmRateLimiterProps.md#property-alarms) prop`,
    '([`LimiterAlarms`](interfaces/LimiterAlarms.md)), each notifying the alarm topic (output `AlarmTopicArn`), with one',
    'evaluation period, missing data not breaching, and "greater than or equal to" the threshold. A number tunes an',
    "alarm's threshold (a key typed `boolean` takes only `true` or `false`), `false` turns it off. What to do when one fires:",
    '[docs/operations.md](../operations.md#what-to-do-when-an-alarm-fires).',
    '',
    '| `alarms` key | default threshold | construct id | fires when | its description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const scaled =
      r.metricThreshold === r.threshold ? '' : ` (${n(r.threshold)} × ${n(r.metricThreshold / r.threshold)})`;
    const dims = r.dimensions ? ` (${r.dimensions})` : '';
    const metric = `${r.statistic} of \`${r.namespace}\` \`${r.metricName}\`${dims}`;
    const fires = `${metric} over ${period(r.periodSeconds)} ≥ ${n(r.metricThreshold)}${scaled}`;
    const key = `[\`${r.prop}\`](interfaces/LimiterAlarms.md#property-${r.prop.toLowerCase()})`;
    out.push(`| ${key} | \`${r.threshold}\` | \`${r.id}\` | ${fires} | ${r.description.replace(/\|/g, '\\|')} |`);
  }
  return `${out.join('\n')}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(join(process.argv[2] ?? 'docs/reference', 'alarms.md'), alarmsPage());
}
