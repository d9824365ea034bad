/**
 * What a deployed stack costs, from its synthesized template at AWS list prices (us-east-1, no free
 * tier): what it costs idle each month, and what one streamed request costs by component. The
 * README's tables are made from these (`npx tsx bench/cost-tables.ts`), test/docs/cost.test.ts
 * keeps them equal, and `npm run bench -- footprint` reports the sums.
 */

/** List prices in USD, us-east-1, each with the page it comes from. */
export const PRICES = {
  /** https://aws.amazon.com/cloudwatch/pricing/ ("Dashboards": $3.00 per dashboard per month) */
  dashboardPerMonth: 3,
  /** https://aws.amazon.com/cloudwatch/pricing/ ("Alarms": standard resolution, $0.10 per alarm metric per month) */
  alarmMetricPerMonth: 0.1,
  /** https://aws.amazon.com/kms/pricing/ ($1.00 per customer managed key per month) */
  kmsKeyPerMonth: 1,
  /** https://aws.amazon.com/systems-manager/pricing/ (Parameter Store standard parameters: no charge) */
  ssmStandardParameterPerMonth: 0,
  /** https://aws.amazon.com/eventbridge/pricing/ (scheduled rules and AWS service events: no charge) */
  eventBridgeRulePerMonth: 0,
  /** https://aws.amazon.com/lambda/pricing/ ($0.20 per million requests) */
  lambdaPerMillionRequests: 0.2,
  /** https://aws.amazon.com/lambda/pricing/ (Arm: $0.0000133334 per GB-second, first tier) */
  lambdaArmPerGbSecond: 0.0000133334,
  /** https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.625 per million write request units) */
  dynamoPerMillionWrites: 0.625,
  /** https://aws.amazon.com/dynamodb/pricing/on-demand/ ($0.125 per million read request units) */
  dynamoPerMillionReads: 0.125,
  /** https://aws.amazon.com/cloudwatch/pricing/ (Logs: $0.50 per GB ingested, standard class) */
  logsPerGbIngested: 0.5,
  /** https://aws.amazon.com/api-gateway/pricing/ (REST APIs: $3.50 per million requests, first 333 million) */
  restApiPerMillionRequests: 3.5,
  /** https://aws.amazon.com/xray/pricing/ ($5.00 per million traces recorded past the free tier) */
  xrayPerMillionTraces: 5,
} as const;

/** AWS bills a month as 730 hours. */
const MINUTES_PER_MONTH = 730 * 60;
/**
 * One idle run of the brake mirror: what it does (one SSM read, four eventually consistent reads
 * of half a read unit, four writes every tenth run for the heartbeat), its billed time (assumed
 * 100 ms: two round trips) and what it logs (Lambda's START/END/REPORT lines and its own, ~400 bytes).
 */
const MIRROR_RUN = { readUnits: 2, writeUnits: 4 / 10, billedMs: 100, logBytes: 400 } as const;

export interface CostRow {
  readonly resource: string;
  readonly count: number;
  readonly price: string;
  /** USD a month (idle rows), or per million requests (request rows). */
  readonly usd: number;
}

type Resources = Record<string, { Type: string; Properties?: Record<string, unknown> }>;

/** Metrics an alarm is billed for: one, or each metric a metric-math alarm reads. */
const alarmMetrics = (props: Record<string, unknown> | undefined): number => {
  const metrics = props?.Metrics as { MetricStat?: unknown }[] | undefined;
  return metrics ? metrics.filter((m) => m.MetricStat).length : 1;
};

/** The function a rule's target invokes (Fn::GetAtt [id, 'Arn']), in the same template. */
const targetFunction = (rule: Record<string, unknown> | undefined, resources: Resources) => {
  const arn = (rule?.Targets as { Arn?: { 'Fn::GetAtt'?: [string, string] } }[] | undefined)?.[0]?.Arn;
  const id = arn?.['Fn::GetAtt']?.[0];
  return id ? resources[id]?.Properties : undefined;
};

/** Each resource that bills while no request arrives, with its list price and what it costs a month. */
export function idleCost(template: { Resources: Resources }): CostRow[] {
  const resources = template.Resources;
  const ofType = (type: string) => Object.values(resources).filter((r) => r.Type === type);
  const rows: CostRow[] = [];
  const dashboards = ofType('AWS::CloudWatch::Dashboard').length;
  if (dashboards > 0)
    rows.push({
      resource: 'CloudWatch dashboard',
      count: dashboards,
      price: `$${PRICES.dashboardPerMonth} a month`,
      usd: dashboards * PRICES.dashboardPerMonth,
    });
  const alarms = ofType('AWS::CloudWatch::Alarm').reduce((n, a) => n + alarmMetrics(a.Properties), 0);
  rows.push({
    resource: 'CloudWatch alarms (standard resolution, per metric)',
    count: alarms,
    price: `$${PRICES.alarmMetricPerMonth.toFixed(2)} a month`,
    usd: alarms * PRICES.alarmMetricPerMonth,
  });
  const keys = ofType('AWS::KMS::Key').length;
  rows.push({
    resource: 'KMS key (the alarm topic)',
    count: keys,
    price: `$${PRICES.kmsKeyPerMonth} a month`,
    usd: keys * PRICES.kmsKeyPerMonth,
  });
  for (const rule of ofType('AWS::Events::Rule').filter((r) => r.Properties?.ScheduleExpression === 'rate(1 minute)')) {
    const fn = targetFunction(rule.Properties, resources);
    const gb = Number(fn?.MemorySize ?? 128) / 1024;
    const runs = MINUTES_PER_MONTH;
    rows.push({
      resource: `brake mirror, once a minute (Lambda ${fn?.MemorySize} MB arm64, ~${MIRROR_RUN.billedMs} ms a run)`,
      count: runs,
      price: `$${PRICES.lambdaPerMillionRequests}/M requests + $${PRICES.lambdaArmPerGbSecond}/GB-s`,
      usd:
        (runs * PRICES.lambdaPerMillionRequests) / 1e6 +
        runs * (MIRROR_RUN.billedMs / 1000) * gb * PRICES.lambdaArmPerGbSecond,
    });
    rows.push({
      resource: `its DynamoDB reads (${MIRROR_RUN.readUnits} units a run) and heartbeat writes (4 every 10 runs)`,
      count: runs,
      price: `$${PRICES.dynamoPerMillionReads}/M reads, $${PRICES.dynamoPerMillionWrites}/M writes`,
      usd:
        (runs * MIRROR_RUN.readUnits * PRICES.dynamoPerMillionReads +
          runs * MIRROR_RUN.writeUnits * PRICES.dynamoPerMillionWrites) /
        1e6,
    });
    rows.push({
      resource: `its log lines (~${MIRROR_RUN.logBytes} bytes a run)`,
      count: runs,
      price: `$${PRICES.logsPerGbIngested}/GB ingested`,
      usd: (runs * MIRROR_RUN.logBytes * PRICES.logsPerGbIngested) / 1024 ** 3,
    });
  }
  const rules = ofType('AWS::Events::Rule').length;
  const parameters = ofType('AWS::SSM::Parameter').length;
  rows.push({
    resource: 'EventBridge rules, SSM parameter (standard)',
    count: rules + parameters,
    price: 'no charge',
    usd: rules * PRICES.eventBridgeRulePerMonth + parameters * PRICES.ssmStandardParameterPerMonth,
  });
  return rows;
}

export const total = (rows: readonly CostRow[]): number => rows.reduce((a, r) => a + r.usd, 0);

const usd = (n: number) => `$${n.toFixed(2)}`;

/** The README's idle table: one row per resource, then the sum. */
export function idleCostTable(rows: readonly CostRow[]): string {
  return [
    '| resource | count | list price | $ a month |',
    '| --- | ---: | --- | ---: |',
    ...rows.map((r) => `| ${r.resource} | ${r.count.toLocaleString('en-US')} | ${r.price} | ${usd(r.usd)} |`),
    `| **total** | | | **${usd(total(rows))}** |`,
  ].join('\n');
}

/** What shapes one streamed request's bill, besides its length. */
export interface RequestShape {
  /** The proxy's memory, held for the whole stream. */
  readonly proxyMemoryMb: number;
  readonly authorizerMemoryMb: number;
  /** The authorizer's billed time per decision (ms). */
  readonly authorizerMs: number;
  /** The proxy's own time besides the stream (ms): parsing, counting, settling. */
  readonly proxyOverheadMs: number;
  /** DynamoDB per request, as `npm run bench -- cost` measures it. */
  readonly writeUnits: number;
  readonly readUnits: number;
}

/** Each component of one streamed request lasting `streamSeconds`, in USD per million requests. */
export function perRequestCost(streamSeconds: number, shape: RequestShape): CostRow[] {
  const gbSeconds = (mb: number, ms: number) => (mb / 1024) * (ms / 1000);
  const million = 1e6;
  return [
    {
      resource: 'API Gateway REST request',
      count: 1,
      price: `$${PRICES.restApiPerMillionRequests}/M`,
      usd: PRICES.restApiPerMillionRequests,
    },
    {
      resource: `authorizer (${shape.authorizerMemoryMb} MB, ~${shape.authorizerMs} ms)`,
      count: 1,
      price: `$${PRICES.lambdaPerMillionRequests}/M + $${PRICES.lambdaArmPerGbSecond}/GB-s`,
      usd:
        PRICES.lambdaPerMillionRequests +
        million * gbSeconds(shape.authorizerMemoryMb, shape.authorizerMs) * PRICES.lambdaArmPerGbSecond,
    },
    {
      resource: `proxy (${shape.proxyMemoryMb} MB held for the stream)`,
      count: 1,
      price: `$${PRICES.lambdaPerMillionRequests}/M + $${PRICES.lambdaArmPerGbSecond}/GB-s`,
      usd:
        PRICES.lambdaPerMillionRequests +
        million *
          gbSeconds(shape.proxyMemoryMb, streamSeconds * 1000 + shape.proxyOverheadMs) *
          PRICES.lambdaArmPerGbSecond,
    },
    {
      resource: 'DynamoDB (leased, busy key; the usage ledger a write)',
      count: 1,
      price: `$${PRICES.dynamoPerMillionWrites}/M writes`,
      usd: shape.writeUnits * PRICES.dynamoPerMillionWrites + shape.readUnits * PRICES.dynamoPerMillionReads,
    },
  ];
}

/** The README's per-request table: a column per stream length, in USD per million requests. */
export function perRequestTable(seconds: readonly number[], shape: RequestShape): string {
  const columns = seconds.map((s) => perRequestCost(s, shape));
  const cell = (n: number) => (n < 1 ? `$${n.toFixed(3)}` : `$${n.toFixed(2)}`);
  return [
    `| $ per million streamed requests | ${seconds.map((s) => `${s} s stream`).join(' | ')} |`,
    `| --- | ${seconds.map(() => '---:').join(' | ')} |`,
    ...columns[0]!.map((row, i) => `| ${row.resource} | ${columns.map((c) => cell(c[i]!.usd)).join(' | ')} |`),
    `| **total** | ${columns.map((c) => `**${cell(total(c))}**`).join(' | ')} |`,
  ].join('\n');
}
