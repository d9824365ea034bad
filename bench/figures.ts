/**
 * Every figure `npm run bench` prints, by scenario, in the order the scenarios run (gateway last:
 * npm start's stack points the SDK's environment at its own local services): the one list that
 * the run checks its output against (bench/run.ts) and that docs/benchmarks.md must name, no more
 * and no less (test/bench/figures.test.ts). A new figure is added here and in the docs.
 */

const SHAPES = ['token_bucket', 'leaky_bucket', 'sliding_window'] as const;
/** The model families whose input pre-count bench/reach.ts measures against their bill. */
export const PRECOUNT_FAMILIES = ['openai_o200k', 'openai_cl100k', 'claude', 'llama', 'nova'] as const;

export const FIGURES = {
  engine: [
    'engine.calibration.offered_per_s',
    'baseline.rate_limiter_flexible.hot.decisions_per_s',
    'baseline.rate_limiter_flexible.hot.calls_per_decision',
    'baseline.rate_limiter_flexible.hot.admitted_ratio',
    'baseline.rate_limiter_flexible.distinct.calls_per_decision',
    ...SHAPES.flatMap((shape) =>
      [
        'hot.decisions_per_s',
        'hot.calls_per_decision',
        'hot.admitted_ratio',
        'hot.p50_ms',
        'hot.p99_ms',
        'distinct.calls_per_decision',
        'distinct.decisions_per_s',
      ].map((figure) => `engine.${shape}.${figure}`),
    ),
    'engine.concurrency.over_admitted',
    'engine.concurrency.gave_up',
    'engine.leases.over_admitted',
    'test.mutation_score.engine',
  ],
  authorizer: [
    'authorizer.decision.round_trips',
    'authorizer.decision.write_units',
    'authorizer.decision.reads',
    'authorizer.decisions_per_s',
    'authorizer.decision.p50_ms',
    'authorizer.transaction.round_trips',
    'authorizer.transaction.write_units',
    'authorizer.transaction.decisions_per_s',
    'authorizer.transaction.p50_ms',
    'authorizer.contention.parallel.admitted',
    'authorizer.contention.transaction.admitted',
    'authorizer.contention.write_units_per_decision',
  ],
  observability: ['observability.decision_p50_ms'],
  proxy: [
    'proxy.ttft_overhead_ms',
    'proxy.ttft_p50_ms',
    'gateway.ttft_overhead_ms',
    'proxy.settle.round_trips',
    'proxy.tokenizer.init_ms',
    'proxy.tokenizer.init_ms_vs_gpt_tokenizer',
    'proxy.tokenizer.tokens_per_s',
    'proxy.tokenizer.tokens_per_s_vs_stock_js_tiktoken',
    'proxy.tokenizer.adversarial_ms_per_100kb',
    'proxy.tokenizer.adversarial_ms_per_100kb_vs_repeated_text',
  ],
  security: ['security.hidden_tokens.overrun_factor', 'security.hang.decision_ms'],
  fidelity: [
    'fidelity.iam.calls_checked',
    'fidelity.iam.calls_denied',
    'fidelity.iam.unused_grants',
    'fidelity.faults.over_admitted',
    'fidelity.faults.settlements_lost',
    'fidelity.faults.transactions_per_throttled_settlement_try',
  ],
  cost: [
    'scale.hot_tenant.wcu_per_request_on_busiest_item',
    'scale.global.wcu_per_request_on_busiest_item',
    'scale.hot_tenant.admitted_ratio_under_item_limit',
    'scale.hot_tenant.client_errors_under_item_limit',
    'cost.streamed_chat.dynamodb_requests',
    'cost.streamed_chat.write_units',
    'cost.streamed_chat.read_units',
    'cost.streamed_chat.usd_per_million_requests',
  ],
  brake: ['brake.ssm_reads_per_s', 'brake.ssm_reads_per_s_1000_containers', 'brake.flip_to_effect_ms'],
  construct: [
    'construct.authorizer.bundle_bytes',
    'construct.authorizer.init_ms',
    'construct.proxy.bundle_bytes',
    'construct.proxy.init_ms',
  ],
  package: ['package.tarball_bytes', 'package.install_ms', 'package.synth_ms'],
  footprint: [
    'package.idle_usd_per_month',
    'cost.usd_per_million_streamed_requests.10s',
    'cost.usd_per_million_streamed_requests.60s',
    'proxy.peak_rss_mb',
  ],
  reach: [
    'proxy.bedrock.ttft_overhead_ms',
    'proxy.bedrock.ttft_p50_ms',
    'proxy.messages.ttft_overhead_ms',
    'proxy.messages.ttft_p50_ms',
    ...PRECOUNT_FAMILIES.flatMap((family) => [
      `proxy.precount_error_ratio.${family}`,
      `proxy.precount_min_ratio.${family}`,
    ]),
  ],
  economics: [
    'economics.alerts.duplicates',
    'economics.ledger.write_units_per_request',
    'economics.ledger.dynamodb_requests_per_request',
    'economics.ledger.write_units_per_request.flush_1s',
    'economics.ledger.busiest_partition_wcu_per_request',
  ],
  fairness: [
    'fairness.starved_tenant_share',
    'fairness.global_over_admitted',
    'fairness.idle_share_used',
    'fairness.share.dynamodb_requests_per_decision',
    'fairness.upstream_429s_avoided',
    'fairness.upstream_429s_avoided.retry_after_clients',
  ],
  gateway: [
    'gateway.added_latency_ms.p50',
    'gateway.added_latency_ms.p99',
    'gateway.requests_per_s',
    'gateway.isolation.tenant_b_ttft_p50_ms',
  ],
  hardcap: [
    'security.hardcap.billed_over_limit',
    'security.hardcap.underbilled_requests',
    'proxy.disconnect_to_upstream_abort_ms',
  ],
} as const satisfies Record<string, readonly string[]>;

export type Scenario = keyof typeof FIGURES;
export const SCENARIOS = Object.keys(FIGURES) as Scenario[];

const FIELDS = new Set(['name', 'value', 'unit', 'baseline', 'ratio']);

/**
 * What is wrong with a run's stdout, given the scenarios it ran: lines that are not a figure
 * (`{"name","value","unit"}` with a finite value, plus a finite `baseline` and its `ratio`, null
 * when the baseline is 0), names printed twice or not expected, and expected names missing.
 */
export function checkOutput(stdout: string, scenarios: readonly Scenario[]): string[] {
  const problems: string[] = [];
  const expected = new Set<string>(scenarios.flatMap((s) => FIGURES[s]));
  const seen = new Set<string>();
  for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) {
    let figure: Record<string, unknown>;
    try {
      figure = JSON.parse(line) as Record<string, unknown>;
    } catch {
      problems.push(`not JSON: ${line}`);
      continue;
    }
    const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    const valid =
      figure !== null &&
      typeof figure === 'object' &&
      Object.keys(figure).every((k) => FIELDS.has(k)) &&
      typeof figure.name === 'string' &&
      finite(figure.value) &&
      typeof figure.unit === 'string' &&
      figure.unit !== '' &&
      ('baseline' in figure
        ? finite(figure.baseline) && (finite(figure.ratio) || (figure.ratio === null && figure.baseline === 0))
        : !('ratio' in figure));
    if (!valid) problems.push(`not a figure with a finite value: ${line}`);
    const name = String(figure?.name);
    if (seen.has(name)) problems.push(`printed twice: ${name}`);
    else if (!expected.has(name)) problems.push(`not in bench/figures.ts: ${name}`);
    seen.add(name);
  }
  for (const name of expected) if (!seen.has(name)) problems.push(`missing: ${name}`);
  return problems;
}
