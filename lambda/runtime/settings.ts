/**
 * The functions' runtime settings, defined once: the construct writes each one into the environment
 * variable named here (settingsEnvironment), the handlers read it back (numberSetting and friends),
 * and both take the default from here; the props' @defaults say the same. A value the construct
 * never writes (a variable set by hand to something unreadable) stops the function at its cold
 * start with the variable's name, rather than running on a guess.
 */
export const NUMBER_SETTINGS = {
  /** How long a key lookup is reused: a revoked key keeps working this long. */
  keyCacheTtlSeconds: { env: 'KEY_CACHE_TTL_SECONDS', default: 30, max: 60 },
  /** How long a brake reading is reused: the brake takes effect within this. */
  brakeCacheTtlSeconds: { env: 'BRAKE_CACHE_TTL_SECONDS', default: 5, max: 5 },
  /** Retry-After while braked without an end. */
  brakeRetryAfterSeconds: { env: 'BRAKE_RETRY_AFTER_SECONDS', default: 60, max: 86_400 },
  /** How far containers' clocks may disagree. */
  clockSkewMs: { env: 'CLOCK_SKEW_MS', default: 0, max: 5_000 },
  /** Until the upstream starts answering. */
  upstreamTimeoutMs: { env: 'UPSTREAM_TIMEOUT_MS', default: 60_000, max: 900_000 },
  /** Between two chunks of an upstream stream. */
  upstreamIdleTimeoutMs: { env: 'UPSTREAM_IDLE_TIMEOUT_MS', default: 60_000, max: 900_000 },
  /** For a whole non-streamed upstream answer once it has started. */
  upstreamBodyTimeoutMs: { env: 'UPSTREAM_BODY_TIMEOUT_MS', default: 60_000, max: 900_000 },
  /** How long the automatic brake brakes for. */
  brakeForSeconds: { env: 'BRAKE_FOR_SECONDS', default: 3_600, max: 7 * 86_400 },
  /** Share of a limit one busy container may lease, in percent (engine/leases.ts); 0: no leases. */
  leasePercent: { env: 'LEASE_PERCENT', default: 1, max: 10 },
  /** How long a busy container may keep settled usage before writing it to the usage ledger; 0: at every invocation's end. */
  ledgerFlushSeconds: { env: 'LEDGER_FLUSH_SECONDS', default: 0, max: 300 },
  /** Days the usage ledger keeps a row after its day. */
  ledgerRetentionDays: { env: 'LEDGER_RETENTION_DAYS', default: 400, max: 3_650 },
} as const;

export const CHOICE_SETTINGS = {
  /** At a cold start with the brake unreadable: let traffic through, or stop it. */
  brakeColdStart: { env: 'BRAKE_COLD_START', default: 'released', values: ['released', 'braked'] },
} as const;

export const FLAG_SETTINGS = {
  /** Tenant as a metric dimension (a billed set of custom metrics per tenant). */
  metricsByTenant: { env: 'METRICS_BY_TENANT', default: false },
} as const;

export type NumberSetting = keyof typeof NUMBER_SETTINGS;
export type ChoiceSetting = keyof typeof CHOICE_SETTINGS;
export type FlagSetting = keyof typeof FLAG_SETTINGS;
export type SettingValues = { readonly [K in NumberSetting]?: number } & {
  readonly [K in ChoiceSetting]?: (typeof CHOICE_SETTINGS)[K]['values'][number];
} & { readonly [K in FlagSetting]?: boolean };

const unreadable = (env: string, value: string, expected: string): Error =>
  new Error(`environment variable ${env} is ${JSON.stringify(value)}; expected ${expected}`);

/** A number setting from the environment, or its default when the variable is not set. */
export function numberSetting(name: NumberSetting, env: NodeJS.ProcessEnv = process.env): number {
  const s = NUMBER_SETTINGS[name];
  const raw = env[s.env];
  if (raw === undefined || raw === '') return s.default;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || value > s.max)
    throw unreadable(s.env, raw, `a number from 0 to ${s.max}`);
  return value;
}

export function choiceSetting<K extends ChoiceSetting>(
  name: K,
  env: NodeJS.ProcessEnv = process.env,
): (typeof CHOICE_SETTINGS)[K]['values'][number] {
  const s = CHOICE_SETTINGS[name];
  const raw = env[s.env];
  if (raw === undefined || raw === '') return s.default;
  if (!(s.values as readonly string[]).includes(raw)) throw unreadable(s.env, raw, s.values.join(' or '));
  return raw as (typeof CHOICE_SETTINGS)[K]['values'][number];
}

export function flagSetting(name: FlagSetting, env: NodeJS.ProcessEnv = process.env): boolean {
  const s = FLAG_SETTINGS[name];
  const raw = env[s.env];
  if (raw === undefined || raw === '') return s.default;
  if (raw !== 'true' && raw !== 'false') throw unreadable(s.env, raw, 'true or false');
  return raw === 'true';
}

/** The environment variables for the given settings (the construct's side). */
export function settingsEnvironment(values: SettingValues): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const s =
      NUMBER_SETTINGS[name as NumberSetting] ??
      CHOICE_SETTINGS[name as ChoiceSetting] ??
      FLAG_SETTINGS[name as FlagSetting];
    out[s.env] = String(value);
  }
  return out;
}
