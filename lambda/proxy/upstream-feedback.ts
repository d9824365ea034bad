/**
 * The upstream's own limits, fed back (docs/design.md, "The upstream's limits fed back"). When the
 * model provider refuses a request for its rate limit (a 429, Bedrock's throttling) or says it has
 * nothing left (OpenAI's `x-ratelimit-remaining-*`, Anthropic's `anthropic-ratelimit-*-remaining`
 * at 0), the model cools down: every container answers
 * 429 `upstream_rate_limited` for it, without calling, until the provider's own reset, so one
 * tenant's burst does not become the provider's 429s for every tenant.
 *
 * What it trusts, and for how long: a refusal's Retry-After for at most `capMs` (60 s), a "nothing
 * left" for at most `remainingCapMs` (10 s). Cooldowns only start from a real answer, so a lying
 * upstream can hold a model at most that long per answer, never lock it out: the next call after
 * a cooldown asks the upstream again. Shared through one item per model in the limits table (a
 * conditional write that only moves the end later), read by each container at most once per
 * `cacheMs`; a read that fails lets the request through (the upstream still decides).
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { KEY_PREFIX, TABLE, TTL_MARGIN_SECONDS } from '../engine/constants';
import { durationMs } from './dialects/messages';
import { retryAfterMs } from './upstream';

export interface CooldownOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  readonly namespace?: string;
  /** How long a container reuses what it read of a model's cooldown. @default 1000 */
  readonly cacheMs?: number;
  /** The longest cooldown one refusal (429, throttling) can start. @default 60000 */
  readonly capMs?: number;
  /** The longest cooldown one "nothing left" header can start. @default 10000 */
  readonly remainingCapMs?: number;
  /** Deadline of one read or write. @default 500 */
  readonly deadlineMs?: number;
  readonly now?: () => number;
  readonly log?: (entry: Record<string, unknown>) => void;
}

/** Go-style durations as OpenAI sends resets (`1s`, `6m0s`, `20ms`, `1h2m3.5s`), in ms; undefined when not one. */
export const durationHeaderMs = (text: string | null): number | undefined => (text ? durationMs(text) : undefined);

/**
 * When a successful answer's rate-limit headers say the provider has nothing left: no request, or
 * no token, until the reset (now + at most `capMs`), else undefined. Nothing short of empty: one
 * tenant's large request must not stop the model for the small ones that still fit.
 */
export function exhaustedUntil(headers: Pick<Headers, 'get'>, now: number, capMs: number): number | undefined {
  const num = (name: string) => {
    const v = headers.get(name)?.trim();
    return v && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const resetMs = (name: string) => {
    const v = headers.get(name);
    if (v && /^\d+(\.\d+)?$/.test(v.trim())) return Number(v) * 1000; // plain seconds
    const go = durationHeaderMs(v);
    if (go !== undefined) return go;
    const at = v ? Date.parse(v) : Number.NaN; // Anthropic: an RFC 3339 time
    return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
  };
  const candidates = [
    { left: num('x-ratelimit-remaining-requests'), reset: resetMs('x-ratelimit-reset-requests') },
    { left: num('x-ratelimit-remaining-tokens'), reset: resetMs('x-ratelimit-reset-tokens') },
    { left: num('anthropic-ratelimit-requests-remaining'), reset: resetMs('anthropic-ratelimit-requests-reset') },
    { left: num('anthropic-ratelimit-tokens-remaining'), reset: resetMs('anthropic-ratelimit-tokens-reset') },
  ];
  const ends = candidates
    .filter((c) => c.left !== undefined && c.left < 1)
    .map((c) => now + Math.min(c.reset ?? 1_000, capMs));
  return ends.length ? Math.max(...ends) : undefined;
}

/** The model the provider sees (its limits are per its model): the cooldown's key. */
export const upstreamModelOf = (deps: { readonly upstream: unknown }, model: string): string =>
  (deps.upstream as { modelId?: (m: string) => string }).modelId?.(model) ?? model;

/** Each model's cooldown, shared by every container (see the file's comment). */
export class UpstreamCooldown {
  private readonly doc: DynamoDBDocumentClient;
  private readonly now: () => number;
  private readonly seen = new Map<string, { readAt: number; until: number }>();

  constructor(private readonly options: CooldownOptions) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.now = options.now ?? Date.now;
  }

  private key(model: string): string {
    return `${KEY_PREFIX.upstream}${this.options.namespace ?? ''}${model}`;
  }

  /** Until when (epoch ms) `model` cools down; 0 when it does not, or when that cannot be read. */
  async until(model: string): Promise<number> {
    const now = this.now();
    const known = this.seen.get(model);
    if (known && now - known.readAt < (this.options.cacheMs ?? 1_000)) return known.until;
    let until = known?.until ?? 0;
    try {
      const got = await this.doc.send(
        new GetCommand({ TableName: this.options.tableName, Key: { [TABLE.partitionKey]: this.key(model) } }),
        { abortSignal: AbortSignal.timeout(this.options.deadlineMs ?? 500) },
      );
      // The shared item is the truth (only ever moved later), or this container's own end while it
      // lasts (its write may have failed, or the read may not see it yet).
      const own = known && known.until > now ? known.until : 0;
      until = Math.max(Number(got.Item?.untilMs ?? 0), own);
    } catch (err) {
      this.options.log?.({ level: 'warn', outcome: 'cooldown_unreadable', model, error: (err as Error).name });
    }
    this.seen.set(model, { readAt: now, until });
    return until;
  }

  /**
   * A refusal for the provider's rate limit: cool down for its Retry-After, at most `capMs`. Not a
   * request the provider says is too large for its limit at all (OpenAI's "Request too large"):
   * that is the request's doing, and must not stop the model for everyone.
   */
  refused(model: string, headers: Pick<Headers, 'get'>, body = ''): Promise<void> {
    if (/request too large/i.test(body)) return Promise.resolve();
    const now = this.now();
    return this.start(model, now + Math.min(retryAfterMs(headers, now), this.options.capMs ?? 60_000), 'refused');
  }

  /** A successful answer's headers: cool down when they say nothing is left. */
  answered(model: string, headers: Pick<Headers, 'get'>): Promise<void> {
    const until = exhaustedUntil(headers, this.now(), this.options.remainingCapMs ?? 10_000);
    return until === undefined ? Promise.resolve() : this.start(model, until, 'exhausted');
  }

  /** Moves the model's cooldown end to `until`, never earlier than it is. */
  private async start(model: string, until: number, why: string): Promise<void> {
    const known = this.seen.get(model);
    this.seen.set(model, { readAt: known?.readAt ?? this.now(), until: Math.max(known?.until ?? 0, until) });
    // What this container already knows is as late: the shared item is at least as late too. A
    // cooldown shorter than a container's reading of the item is not worth a write: this container keeps it.
    if ((known && known.until >= until) || until - this.now() < (this.options.cacheMs ?? 1_000)) return;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.options.tableName,
          Key: { [TABLE.partitionKey]: this.key(model) },
          UpdateExpression: 'SET untilMs = :u, #exp = :exp',
          ConditionExpression: 'attribute_not_exists(untilMs) OR untilMs < :u',
          ExpressionAttributeNames: { '#exp': TABLE.ttlAttribute },
          ExpressionAttributeValues: { ':u': until, ':exp': Math.ceil(until / 1000) + TTL_MARGIN_SECONDS },
        }),
        { abortSignal: AbortSignal.timeout(this.options.deadlineMs ?? 500) },
      );
      this.options.log?.({ level: 'warn', outcome: 'upstream_cooldown', model, why, untilMs: until });
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return; // another container set a later end
      this.options.log?.({ level: 'warn', outcome: 'cooldown_unwritten', model, error: (err as Error).name });
    }
  }
}
