/**
 * CloudWatch metrics in Embedded Metric Format: one JSON log line per event, which CloudWatch turns
 * into metrics (no API call, no extra latency). Written here rather than with Powertools Metrics:
 * the authorizer's cold start stays small, and the proxy emits when a stream settles, which is
 * after middy's `after` hooks (where Powertools flushes) have run.
 *
 * Dimensions are low-cardinality only (layer, code, endpoint, model, outcome); user ids go in the
 * log line as properties, never as dimensions. Tenant is a dimension only when the construct's
 * `metricsByTenant` says so (METRICS_BY_TENANT=true): each tenant then makes billed custom metrics
 * of its own. Otherwise it stays a field of the line, for Logs Insights (`stats ... by Tenant`).
 */
import { type FlagSetting, flagSetting } from './settings';

export const NAMESPACE = 'LlmRateLimiter';

export type Unit = 'Count' | 'Milliseconds' | 'None';

export interface MetricEvent {
  readonly dimensions: Readonly<Record<string, string>>;
  readonly metrics: Readonly<Record<string, { readonly value: number; readonly unit: Unit }>>;
  /** Searchable in Logs Insights, never metric dimensions (user ids, request ids). */
  readonly properties?: Readonly<Record<string, string | number | boolean>>;
}

export type MetricSink = (line: string) => void;

let sink: MetricSink = (line) => {
  if (process.env.LIMITER_LOG !== 'off') console.log(line);
};

/** Tests and the local gateway capture the lines. */
export function setMetricSink(next: MetricSink): void {
  sink = next;
}

/**
 * Each line is published under its full dimension set and two roll-ups, [Function] and
 * [Function, Outcome]: alarms need fixed dimensions, dashboards search the detailed ones.
 */
export function dimensionSets(names: readonly string[]): string[][] {
  const sets = [[...names]];
  if (names.includes('Function') && names.length > 1) sets.push(['Function']);
  if (names.includes('Function') && names.includes('Outcome') && names.length > 2) sets.push(['Function', 'Outcome']);
  return sets;
}

/** Dimensions that are fields of the line but not metric dimensions unless asked for (per-tenant metrics cost money per tenant). */
const OPT_IN_DIMENSIONS: Readonly<Record<string, FlagSetting>> = { Tenant: 'metricsByTenant' };

export function emf(event: MetricEvent, now = Date.now()): string {
  const names = Object.keys(event.dimensions).filter(
    (name) => !(name in OPT_IN_DIMENSIONS) || flagSetting(OPT_IN_DIMENSIONS[name]!),
  );
  return JSON.stringify({
    _aws: {
      Timestamp: now,
      CloudWatchMetrics: [
        {
          Namespace: NAMESPACE,
          Dimensions: dimensionSets(names),
          Metrics: Object.entries(event.metrics).map(([Name, m]) => ({ Name, Unit: m.unit })),
        },
      ],
    },
    ...event.properties,
    ...event.dimensions,
    ...Object.fromEntries(Object.entries(event.metrics).map(([name, m]) => [name, m.value])),
  });
}

export function putMetrics(event: MetricEvent): void {
  sink(emf(event));
}
