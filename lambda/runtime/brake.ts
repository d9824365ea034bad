import { GetParameterCommand, ParameterNotFound, type SSMClient } from '@aws-sdk/client-ssm';
import { type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { TABLE } from '../engine/constants';
import type { MetricEvent } from './metrics';

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

export type BrakeSource = 'ssm' | 'mirror' | 'cache' | 'last-known' | 'cold-start-fallback' | 'missing' | 'unreadable';

/**
 * One read of the brake: its value, or that there is none. Two sources: the SSM parameter itself
 * (the CLI, npm start's tests), or the table's mirror of it (the deployed functions: see
 * lambda/brake-mirror), which any number of containers can read without SSM's 40 reads a second.
 */
export interface BrakeReading {
  readonly value: string;
  readonly missing?: boolean;
  readonly source: 'ssm' | 'mirror';
  /** When the mirror last copied the parameter (epoch ms). */
  readonly mirroredAt?: number;
}
export type BrakeReader = (signal: AbortSignal) => Promise<BrakeReading>;

/** Items the mirror writes the brake to; each container reads one at random, so no single item takes every read. */
export const BRAKE_MIRROR_SHARDS = 4;
/** The mirror's item for one shard, keyed by the parameter it copies. */
export const brakeMirrorKey = (parameterName: string, shard: number): string => `brake#${parameterName}#${shard}`;
/**
 * How often the mirror rewrites an unchanged copy (its heartbeat): it runs once a minute but writes
 * only a change, or a copy this old, so an idle stack writes 4 items every 10 minutes rather than
 * every minute (docs/design.md, "The brake mirror's writes").
 */
export const BRAKE_MIRROR_HEARTBEAT_MS = 600_000;
/**
 * A copy older than this is stale: a healthy mirror rewrites it at least once per heartbeat, so
 * 150 s past it means two runs in a row failed or never ran when the heartbeat was due. A stale
 * copy is logged (BrakeMirrorStale), and the functions read the parameter itself
 * (BrakeOptions.directRead). The alarm watches the mirror's own errors, which show sooner.
 */
export const BRAKE_MIRROR_STALE_MS = BRAKE_MIRROR_HEARTBEAT_MS + 150_000;

export function ssmBrakeReader(client: SSMClient, parameterName: string): BrakeReader {
  return async (signal) => {
    try {
      const out = await client.send(new GetParameterCommand({ Name: parameterName }), { abortSignal: signal });
      return { value: out.Parameter?.Value ?? '', source: 'ssm' };
    } catch (err) {
      if (err instanceof ParameterNotFound) return { value: '', missing: true, source: 'ssm' };
      throw err;
    }
  };
}

export function mirrorBrakeReader(
  doc: DynamoDBDocumentClient,
  tableName: string,
  parameterName: string,
  shards = BRAKE_MIRROR_SHARDS,
): BrakeReader {
  return async (signal) => {
    const key = brakeMirrorKey(parameterName, Math.floor(Math.random() * shards));
    const out = await doc.send(new GetCommand({ TableName: tableName, Key: { [TABLE.partitionKey]: key } }), {
      abortSignal: signal,
    });
    // No copy yet (the first run is at most a minute after a deploy): as a missing parameter, unless
    // the Brake reads the parameter directly then (BrakeOptions.directRead).
    if (!out.Item) return { value: '', missing: true, source: 'mirror' };
    return {
      value: String(out.Item.value ?? ''),
      missing: out.Item.missing === true,
      source: 'mirror',
      mirroredAt: Number(out.Item.mirroredAt),
    };
  };
}

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
  return {
    enabled,
    ...(reason ? { reason: reason.slice(0, 200) } : {}),
    ...(untilMs === undefined ? {} : { until: untilMs }),
  };
}

/** What an unparseable value means: braked (fail safe), until an operator writes a valid one. */
const UNREADABLE_BRAKE: BrakeState = {
  enabled: true,
  reason: 'the brake parameter holds a value that is not a brake setting (fail safe)',
};

/** Is the brake on at `now`? */
/** How long a braked caller should wait: until the brake's end, or `defaultSeconds` when it has none. */
export const brakeWaitMs = (state: BrakeState, now: number, defaultSeconds: number): number =>
  state.until !== undefined ? state.until - now : defaultSeconds * 1000;

export const isBraked = (state: BrakeState, now: number): boolean =>
  state.enabled && (state.until === undefined || state.until > now);

export interface BrakeOptions {
  /** Where the brake is read: the SSM parameter (client + parameterName) unless `reader` says otherwise. */
  readonly client?: SSMClient;
  readonly parameterName: string;
  readonly reader?: BrakeReader;
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
  /**
   * Read when the mirror's copy is stale (BRAKE_MIRROR_STALE_MS) or missing: the parameter itself,
   * within its own short deadline. If it fails too (SSM throttles past its shared 40 reads a
   * second), the copy stands. @default none: the copy stands
   */
  readonly directRead?: { readonly reader: BrakeReader; readonly deadlineMs: number };
}

const DEFAULT_BRAKE_DEADLINE_MS = 5_000;

/** Reads the brake through an in-container cache; when the read fails, the last known value holds. */
export class Brake {
  private known?: BrakeState;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private failedAt = Number.NEGATIVE_INFINITY;
  private readonly cacheMs: number;
  private readonly clock: () => number;
  private readonly log: (entry: Record<string, unknown>) => void;
  private readonly reader: BrakeReader;

  constructor(private readonly options: BrakeOptions) {
    if (!options.reader && !options.client) throw new TypeError('Brake needs a reader or an SSM client');
    this.reader = options.reader ?? ssmBrakeReader(options.client!, options.parameterName);
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
      const reading = await this.current(
        await this.reader(AbortSignal.timeout(this.options.deadlineMs ?? DEFAULT_BRAKE_DEADLINE_MS)),
        now,
      );
      this.fetchedAt = now;
      if (reading.missing) {
        this.known = { enabled: false };
        this.log({
          level: 'warn',
          message: 'brake parameter does not exist: treated as released',
          parameter: this.options.parameterName,
          source: reading.source,
        });
        return { ...this.known, source: 'missing' };
      }
      const parsed = parseBrake(reading.value);
      if (parsed) {
        this.known = parsed;
        return { ...parsed, source: reading.source };
      }
      // Fail safe: whoever wrote it most likely meant to stop traffic. Loud: log line and metric (alarmed).
      this.known = UNREADABLE_BRAKE;
      this.log({
        level: 'error',
        message:
          'BRAKE UNREADABLE: the brake parameter holds a value that is not a brake setting; acting as braked until it is fixed (write on or off)',
        parameter: this.options.parameterName,
      });
      this.options.metrics?.({
        dimensions: { Function: 'brake' },
        metrics: { BrakeUnreadable: { value: 1, unit: 'Count' } },
      });
      return { ...UNREADABLE_BRAKE, source: 'unreadable' };
    } catch (err) {
      // Any failure (network, throttling, permissions): keep serving what we knew.
      this.failedAt = now;
      this.log({
        level: 'error',
        message: 'brake parameter could not be read',
        parameter: this.options.parameterName,
        error: (err as Error).name,
      });
    }
    return this.fallback(true);
  }

  /** The reading, or when it is a stale (or no) copy of the mirror, the parameter read directly if that answers. */
  private async current(reading: BrakeReading, now: number): Promise<BrakeReading> {
    if (reading.source !== 'mirror') return reading;
    if (reading.mirroredAt !== undefined) {
      if (now - reading.mirroredAt <= BRAKE_MIRROR_STALE_MS) return reading;
      // The mirror function is failing: the value may be old. Loud, and alarmed.
      this.log({
        level: 'error',
        message: 'BRAKE MIRROR STALE: the brake mirror has not copied the parameter for minutes',
        parameter: this.options.parameterName,
        mirroredAt: new Date(reading.mirroredAt).toISOString(),
      });
      this.options.metrics?.({
        dimensions: { Function: 'brake' },
        metrics: { BrakeMirrorStale: { value: 1, unit: 'Count' } },
      });
    }
    const direct = this.options.directRead;
    if (!direct) return reading;
    try {
      return await direct.reader(AbortSignal.timeout(direct.deadlineMs));
    } catch (err) {
      this.log({
        level: 'warn',
        message: 'brake parameter could not be read directly either: the mirror’s copy stands',
        parameter: this.options.parameterName,
        error: (err as Error).name,
      });
      return reading;
    }
  }

  private fallback(loud: boolean): BrakeState & { source: BrakeSource } {
    if (this.known) return { ...this.known, source: 'last-known' };
    const fallback = { enabled: this.options.coldStart === 'braked' };
    if (loud)
      this.log({
        level: 'error',
        message: `BRAKE UNKNOWN at cold start: acting as ${fallback.enabled ? 'braked' : 'released'} until SSM answers`,
        parameter: this.options.parameterName,
      });
    return { ...fallback, source: 'cold-start-fallback' };
  }
}
