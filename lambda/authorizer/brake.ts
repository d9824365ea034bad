import { GetParameterCommand, ParameterNotFound, type SSMClient } from '@aws-sdk/client-ssm';
import type { MetricEvent } from '../runtime/metrics';

/**
 * The operators' kill-switch, an SSM String parameter holding JSON:
 *   {"enabled": true, "reason": "provider outage", "until": "2026-11-27T18:00:00Z"}
 * `off`, an empty value, {"enabled": false} or an `until` in the past mean released; `on` means
 * braked with no reason or end.
 */
export interface BrakeState {
  readonly enabled: boolean;
  readonly reason?: string;
  /** Epoch ms when the brake releases itself. */
  readonly until?: number;
}

export type BrakeSource = 'ssm' | 'cache' | 'last-known' | 'cold-start-fallback' | 'missing' | 'unreadable';

export const MAX_BRAKE_CACHE_MS = 5_000;
const RETRY_AFTER_FAILURE_MS = 1_000;

const ON_WORDS = new Set(['on', 'true', 'yes', '1', 'braked', 'enabled']);
const OFF_WORDS = new Set(['', 'off', 'false', 'no', '0', 'released', 'disabled']);

/** A word or JSON scalar that says on (true) or off (false); undefined when it says neither. */
function intent(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value === 1 ? true : value === 0 ? false : undefined;
  if (typeof value !== 'string') return undefined;
  const word = value.trim().toLowerCase();
  return ON_WORDS.has(word) ? true : OFF_WORDS.has(word) ? false : undefined;
}

/**
 * Parses the parameter's value: a word (on/true/yes/1, off/false/no/0, empty) or JSON with an
 * `enabled` that says one of those. Undefined when the value says neither: the Brake then treats
 * it as braked (an operator who wrote something meant to stop traffic, most likely).
 */
export function parseBrake(value: string): BrakeState | undefined {
  const text = value.trim();
  const word = intent(text);
  if (word !== undefined) return { enabled: word };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  // A JSON scalar ("on") says it directly; an object says it in `enabled`.
  const isObject = typeof json === 'object' && json !== null && !Array.isArray(json);
  const enabled = intent(isObject ? (json as { enabled?: unknown }).enabled : json);
  if (!isObject) return enabled === undefined ? undefined : { enabled };
  if (enabled === undefined) return undefined;
  const { reason, until } = json as { reason?: unknown; until?: unknown };
  if (reason !== undefined && typeof reason !== 'string') return undefined;
  let untilMs: number | undefined;
  if (until !== undefined) {
    untilMs = typeof until === 'string' ? Date.parse(until) : Number.NaN;
    if (Number.isNaN(untilMs)) return undefined;
  }
  return { enabled, ...(reason ? { reason: reason.slice(0, 200) } : {}), ...(untilMs === undefined ? {} : { until: untilMs }) };
}

/** What an unparseable value means: braked (fail safe), until an operator writes a valid one. */
const UNREADABLE_BRAKE: BrakeState = { enabled: true, reason: 'the brake parameter holds a value that is not a brake setting (fail safe)' };

/** Is the brake on at `now`? */
export const isBraked = (state: BrakeState, now: number): boolean => state.enabled && (state.until === undefined || state.until > now);

export interface BrakeOptions {
  readonly client: SSMClient;
  readonly parameterName: string;
  /** How long a read is reused; at most 5 s. @default 5000 */
  readonly cacheMs?: number;
  /** At a cold start with SSM unreachable (no value known yet): released or braked. @default 'released' */
  readonly coldStart?: 'released' | 'braked';
  readonly clock?: () => number;
  readonly log?: (entry: Record<string, unknown>) => void;
  /** Deadline of one read, retries included: past it the last known state holds. The functions use 500. @default 5000 */
  readonly deadlineMs?: number;
  /** Where the BrakeUnreadable metric goes. @default none */
  readonly metrics?: (event: MetricEvent) => void;
}

const DEFAULT_BRAKE_DEADLINE_MS = 5_000;

/** Reads the brake through an in-container cache; when SSM fails, the last known value holds. */
export class Brake {
  private known?: BrakeState;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private failedAt = Number.NEGATIVE_INFINITY;
  private readonly cacheMs: number;
  private readonly clock: () => number;
  private readonly log: (entry: Record<string, unknown>) => void;

  constructor(private readonly options: BrakeOptions) {
    this.cacheMs = Math.min(MAX_BRAKE_CACHE_MS, options.cacheMs ?? MAX_BRAKE_CACHE_MS);
    this.clock = options.clock ?? Date.now;
    this.log = options.log ?? ((entry) => console.error(JSON.stringify(entry)));
  }

  async state(): Promise<BrakeState & { source: BrakeSource }> {
    const now = this.clock();
    if (this.known && now - this.fetchedAt < this.cacheMs) return { ...this.known, source: 'cache' };
    // After a failure, ask SSM again at most once a second rather than on every request.
    if (now - this.failedAt < RETRY_AFTER_FAILURE_MS) return this.fallback(false);
    try {
      const out = await this.options.client.send(new GetParameterCommand({ Name: this.options.parameterName }), { abortSignal: AbortSignal.timeout(this.options.deadlineMs ?? DEFAULT_BRAKE_DEADLINE_MS) });
      this.fetchedAt = now;
      const parsed = parseBrake(out.Parameter?.Value ?? '');
      if (parsed) {
        this.known = parsed;
        return { ...parsed, source: 'ssm' };
      }
      // Fail safe: whoever wrote it most likely meant to stop traffic. Loud: log line and metric (alarmed).
      this.known = UNREADABLE_BRAKE;
      this.log({ level: 'error', message: 'BRAKE UNREADABLE: the brake parameter holds a value that is not a brake setting; acting as braked until it is fixed (write on or off)', parameter: this.options.parameterName });
      this.options.metrics?.({ dimensions: { Function: 'brake' }, metrics: { BrakeUnreadable: { value: 1, unit: 'Count' } } });
      return { ...UNREADABLE_BRAKE, source: 'unreadable' };
    } catch (err) {
      if (err instanceof ParameterNotFound) {
        this.fetchedAt = now;
        this.known = { enabled: false };
        this.log({ level: 'warn', message: 'brake parameter does not exist: treated as released', parameter: this.options.parameterName });
        return { ...this.known, source: 'missing' };
      }
      // Any other failure (network, throttling, permissions): keep serving what we knew.
      this.failedAt = now;
      this.log({ level: 'error', message: 'brake parameter could not be read', parameter: this.options.parameterName, error: (err as Error).name });
    }
    return this.fallback(true);
  }

  private fallback(loud: boolean): BrakeState & { source: BrakeSource } {
    if (this.known) return { ...this.known, source: 'last-known' };
    const fallback = { enabled: this.options.coldStart === 'braked' };
    if (loud) this.log({ level: 'error', message: `BRAKE UNKNOWN at cold start: acting as ${fallback.enabled ? 'braked' : 'released'} until SSM answers`, parameter: this.options.parameterName });
    return { ...fallback, source: 'cold-start-fallback' };
  }
}
