/**
 * The table of alarms in the reference, made from the list the construct creates them from
 * (ALARMS in lib/observability.ts): prop, default, metric, and what the alarm says when it fires.
 */
import { App, Stack, Token } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import ts from 'typescript';
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

/**
 * The alarms as a markdown section under LimiterAlarms; each member's `@default` must say the
 * default the construct uses (its threshold, or `true` for an alarm that is on or off).
 */
export function alarmsSection(node: ts.InterfaceDeclaration, checker: ts.TypeChecker, problems: string[]): string[] {
  const rows = alarmRows();
  const members = new Map(node.members.filter(ts.isPropertySignature).map((m) => [m.name.getText(), m] as const));
  for (const row of rows) {
    const member = members.get(row.prop);
    if (!member) {
      problems.push(`LimiterAlarms has no ${row.prop}, which ALARMS uses`);
      continue;
    }
    const symbol = checker.getSymbolAtLocation(member.name);
    const said = symbol?.getJsDocTags(checker).find((t) => t.name === 'default');
    const text = said ? ts.displayPartsToString(said.text).trim() : undefined;
    const expected = member.type?.getText() === 'boolean' ? 'true' : String(row.threshold);
    if (text !== expected)
      problems.push(`LimiterAlarms.${row.prop}: @default says ${text}, the alarm's default is ${expected}`);
  }
  for (const prop of members.keys())
    if (!rows.some((r) => r.prop === prop))
      problems.push(`LimiterAlarms.${prop}: no alarm in ALARMS (lib/observability.ts)`);
  const out = [
    '#### The alarms',
    '',
    `All ${rows.length} are created unless turned off, each notifying the alarm topic (output \`AlarmTopicArn\`),`,
    'with one evaluation period, missing data not breaching, and "greater than or equal to" the threshold.',
    'What to do when one fires: [docs/operations.md](../operations.md#what-to-do-when-an-alarm-fires).',
    '',
    '| `alarms` key | default | construct id | fires when | its description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const n = (x: number) => x.toLocaleString('en-US');
    const scaled =
      r.metricThreshold === r.threshold ? '' : ` (${n(r.threshold)} × ${n(r.metricThreshold / r.threshold)})`;
    const dims = r.dimensions ? ` (${r.dimensions})` : '';
    const fires = `${r.statistic} of \`${r.namespace}\` \`${r.metricName}\`${dims} over ${period(r.periodSeconds)} ≥ ${n(r.metricThreshold)}${scaled}`;
    const dflt = members.get(r.prop)?.type?.getText() === 'boolean' ? '`true`' : `\`${r.threshold}\``;
    out.push(
      `| [\`${r.prop}\`](#@@LimiterAlarms.${r.prop}@@) | ${dflt} | \`${r.id}\` | ${fires} | ${r.description.replace(/\|/g, '\\|')} |`,
    );
  }
  return [...out, ''];
}
