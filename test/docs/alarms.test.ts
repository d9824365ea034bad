/**
 * The one list of alarms a user reads (docs/reference/alarms.md, made from ALARMS in
 * lib/observability.ts by `npm run docs`) is the list a default stack deploys: ids, metrics, thresholds, descriptions.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultTemplate } from '../support/default-stack';

/** The rows of the alarms table, as the reader sees them. */
function documentedAlarms() {
  const page = readFileSync(join(process.cwd(), 'docs', 'reference', 'alarms.md'), 'utf8');
  return [...page.matchAll(/^\| \[`(\w+)`\]\([^)]*\) \| `(\w+)` \| `(\w+)` \| (.+?) \| (.+) \|$/gm)].map((m) => ({
    id: m[3]!,
    metricName: /`(\w+)` \(/.exec(m[4]!)?.[1],
    threshold: Number(/≥ ([\d,]+)/.exec(m[4]!)![1]!.replace(/,/g, '')),
    description: m[5]!.replace(/\\\|/g, '|'),
  }));
}

function deployedAlarms() {
  const alarms = defaultTemplate().findResources('AWS::CloudWatch::Alarm');
  return Object.entries(alarms).map(([logicalId, a]) => ({
    id: /^LimiterObservability([A-Za-z]+Alarm)[0-9A-F]{8}$/.exec(logicalId)?.[1] ?? logicalId,
    metricName: a.Properties.MetricName as string,
    threshold: a.Properties.Threshold as number,
    description: a.Properties.AlarmDescription as string,
  }));
}

describe('the alarms in the reference', () => {
  it('are the alarms a default stack deploys, with their metrics, thresholds and descriptions', () => {
    const documented = documentedAlarms();
    expect(documented.length).toBeGreaterThanOrEqual(10);
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id);
    expect(documented.sort(byId)).toEqual(deployedAlarms().sort(byId));
  });
});
