import type { Limit } from './limits';
import { bucketName, type LimitSpec } from './plans';
import type { LimitStore } from './store';

/**
 * Weighted fair shares of an oversold global limit (`LimiterConfig.global.fairShare`; the
 * algorithm and its bound are in docs/design.md, "Fair shares of the global cap"). Token and
 * leaky buckets are shared; a sliding window or a calendar budget stays whole (first come).
 *
 * Every tenant's use of each shared limit over the last `windowMs` is metered in one item per
 * tenant. A request checks each global limit against part of its bucket only: the part above a
 * line that rises with the tenant's use per unit of its weight (0 for a tenant using little, up
 * to `topLine` of the bucket for one using the whole limit). When the global runs short, the
 * heaviest users (per weight) are stopped first and the bucket settles at the line where what
 * refills is just used: the tenants stopped there have equal use per weight, and every tenant
 * using less than them (within its share) still finds the part of the bucket between its line
 * and theirs. That is water-filling: weighted max-min fairness, with nothing held back while
 * demand is below the limit (a tenant alone still gets all of the refill).
 */
export const SHARE = {
  /** The meter's window: use over the last 10 s is kept (in one-second slots). */
  windowMs: 10_000,
  /**
   * How fast old use stops counting (the window is weighted, newest first): use `a` seconds ago
   * counts e^(-a/3). A plain average would let a burst move the line twice, when it enters the
   * window and again when it leaves it 10 s later; and a tenant's use, so its line, falls smoothly
   * while it is refused (what the Retry-After of `global_share` counts on).
   */
  decaySeconds: 3,
  /** A container writes a tenant's meter at most every 500 ms. */
  flushMs: 500,
  /** The highest line: a tenant using the whole limit still has the top 20% of its bucket. */
  topLine: 0.8,
  /** Use per weight (as a fraction of the limit, per unit of the top weight) below which a tenant has no line. */
  least: 0.01,
  /**
   * A tenant refused at its line lately at least as much as it was admitted (it asks twice what it
   * gets, or more) has its line raised by this many times the request's cost (never past
   * `topLine`): of two tenants using alike, the one that asks about what it gets then keeps two
   * requests' room under the other's line, instead of losing the race for each refill to the one
   * that asks many times a second. The price: such a tenant can be held below its max-min share
   * by what two requests are of the bucket.
   */
  refusedMargin: 2,
} as const;

/** What a bucket lets through per second when sustained (what shares divide); undefined for a window (not shared). */
export function sustainedRate(limit: Limit): number | undefined {
  if (limit.shape === 'token_bucket') return limit.refillPerSecond;
  return limit.shape === 'leaky_bucket' ? limit.drainPerSecond : undefined;
}

/**
 * The part of a shared bucket a tenant whose use is `s` may not use (`s`: its use per second as a
 * fraction of the limit's rate, times the top weight over its weight): 0 under `least`, then
 * rising with the logarithm of its use, to `topLine` at the whole limit.
 */
export function lineOf(s: number): number {
  if (!(s > SHARE.least)) return 0;
  return SHARE.topLine * Math.min(1, Math.log(s / SHARE.least) / Math.log(1 / SHARE.least));
}

/** A tenant's standing on a shared limit: its use `s` (as lineOf takes it) and whether it is refused lately as much as admitted. */
export interface Standing {
  readonly s: number;
  readonly refused: boolean;
}

/** The window's full slots' weights (at their middles) as seen from the start of the current second. */
const FULL_SLOTS = Array.from({ length: SHARE.windowMs / 1000 - 1 }, (_, i) =>
  Math.exp(-(i + 0.5) / SHARE.decaySeconds),
).reduce((a, b) => a + b, 0);

/** Tenants a container keeps meters for (the oldest go first). */
const CACHE_SIZE = 10_000;

const SEP = '@';
/** What a tenant was refused on a bucket is kept beside its use, under the bucket's name and this mark. */
const refusedOf = (bucket: string) => `${bucket}~`;
const slotAttr = (bucket: string, second: number) => `${bucket}${SEP}${second}`;

function parseSlot(attr: string): { bucket: string; second: number } | undefined {
  const at = attr.lastIndexOf(SEP);
  if (at <= 0) return undefined;
  const second = Number(attr.slice(at + 1));
  return Number.isInteger(second) ? { bucket: attr.slice(0, at), second } : undefined;
}

/** A map bounded to `size` entries (the oldest set goes first). */
function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > size) map.delete(map.keys().next().value!);
}

/**
 * One container's view of every tenant's meter, and what it admitted that is not written yet.
 * Written with a decision of the tenant's (in parallel, so no added round-trip) at most once per
 * `flushMs`, and only for a tenant with a line (using at least `least` of a limit per weight): one
 * using less writes nothing (its line is 0 whatever the meter says).
 */
export class ShareMeter {
  /** By tenant: the meter as its last write returned it. */
  private readonly seen = new Map<string, Readonly<Record<string, unknown>>>();
  /** By tenant: slot attribute -> what this container admitted and has not written. */
  private readonly pending = new Map<string, Map<string, number>>();
  /** By tenant: what a write on its way carries (counted until its answer brings it back in the meter). */
  private readonly inflight = new Map<string, Readonly<Record<string, number>>>();
  /** By tenant: when this container last wrote its meter (epoch ms). */
  private readonly writtenAt = new Map<string, number>();
  /** The sustained rate of each shared limit, by bucket name. */
  private readonly rates: ReadonlyMap<string, number>;

  constructor(
    private readonly store: LimitStore,
    specs: readonly LimitSpec[],
    private readonly topWeight: number,
    private readonly namespace = '',
    private readonly log: (entry: Record<string, unknown>) => void = () => {},
  ) {
    // Lines go on token and leaky buckets only: on a window, a line would cap what it lets through
    // per window (not only its burst), and a calendar budget is not a rate.
    this.rates = new Map(
      specs.flatMap((s) => {
        const rate = sustainedRate(s.limit);
        return rate ? [[bucketName(s), rate] as const] : [];
      }),
    );
  }

  /**
   * Units of `bucket` the tenant used per second lately, as far as this container knows: each
   * slot's count weighted by the age of its middle (the current slot's: of the part gone by), over
   * the time the slots stand for, weighted alike. Use that stops falls as e^(-t/decaySeconds).
   */
  usePerSecond(tenant: string, bucket: string, nowMs: number): number {
    const now = nowMs / 1000;
    const second = Math.floor(now);
    const oldest = second - SHARE.windowMs / 1000;
    const elapsed = Math.max(0.05, now - second);
    let sum = 0;
    const count = (attr: string, n: unknown) => {
      const slot = parseSlot(attr);
      if (slot?.bucket !== bucket || slot.second <= oldest || slot.second > second || typeof n !== 'number') return;
      const middle = slot.second === second ? second + elapsed / 2 : slot.second + 0.5;
      sum += n * Math.exp(-(now - middle) / SHARE.decaySeconds);
    };
    for (const [attr, n] of Object.entries(this.seen.get(tenant) ?? {})) count(attr, n);
    for (const [attr, n] of Object.entries(this.inflight.get(tenant) ?? {})) count(attr, n);
    for (const [attr, n] of this.pending.get(tenant) ?? []) count(attr, n);
    const span =
      elapsed * Math.exp(-elapsed / 2 / SHARE.decaySeconds) + Math.exp(-elapsed / SHARE.decaySeconds) * FULL_SLOTS;
    return Math.max(0, sum) / span;
  }

  /**
   * The tenant's standing on each shared limit with a line (by bucket name; the others are left
   * out): its use per unit of the top weight, and whether it was refused at its line lately as
   * much as it was admitted (its line is then raised by `refusedMargin` requests).
   */
  lines(tenant: string, weight: number, nowMs: number): Map<string, Standing> {
    const lines = new Map<string, Standing>();
    for (const [bucket, rate] of this.rates) {
      const use = this.usePerSecond(tenant, bucket, nowMs);
      const s = (use / rate) * (this.topWeight / weight);
      if (lineOf(s) === 0) continue;
      const refused = this.usePerSecond(tenant, refusedOf(bucket), nowMs);
      lines.set(bucket, { s, refused: refused > 0 && refused >= use });
    }
    return lines;
  }

  /** Counts what a request was refused at its line on a shared limit. */
  refused(tenant: string, bucket: string, amount: number, nowMs: number): void {
    if (this.rates.has(bucket)) this.record(tenant, refusedOf(bucket), amount, nowMs);
  }

  /** Counts what an admission spent (or a settlement gave back, negative) on a shared limit. */
  record(tenant: string, bucket: string, amount: number, nowMs: number): void {
    if (!(this.rates.has(bucket) || this.rates.has(bucket.slice(0, -1))) || amount === 0) return;
    let slots = this.pending.get(tenant);
    if (!slots) {
      slots = new Map();
      remember(this.pending, tenant, slots, CACHE_SIZE);
    }
    const attr = slotAttr(bucket, Math.floor(nowMs / 1000));
    slots.set(attr, (slots.get(attr) ?? 0) + amount);
    // A tenant under `least` is never written: its slots are dropped once they leave the window.
    if (slots.size > 4 * this.rates.size * (SHARE.windowMs / 1000)) {
      const oldest = Math.floor(nowMs / 1000) - SHARE.windowMs / 1000;
      for (const key of [...slots.keys()]) if ((parseSlot(key)?.second ?? 0) <= oldest) slots.delete(key);
    }
  }

  /**
   * Writes the tenant's meter when due: this container has not written it in the last `flushMs`,
   * and the tenant's use (as known here, written or not) reaches `least` of some limit per unit
   * of its weight. Never rejects: a failed write is logged and its counts are kept for the next.
   */
  flush(tenant: string, weight: number, nowMs: number): Promise<void> | undefined {
    if (nowMs - (this.writtenAt.get(tenant) ?? Number.NEGATIVE_INFINITY) < SHARE.flushMs) return undefined;
    // One write at a time per tenant: two could land out of order and roll the view back.
    if (this.inflight.has(tenant)) return undefined;
    const heavy = [...this.rates].some(
      ([bucket, rate]) => this.usePerSecond(tenant, bucket, nowMs) >= (SHARE.least * rate * weight) / this.topWeight,
    );
    if (!heavy) return undefined;
    const oldest = Math.floor(nowMs / 1000) - SHARE.windowMs / 1000;
    const adds: Record<string, number> = {};
    for (const [attr, n] of this.pending.get(tenant) ?? []) if ((parseSlot(attr)?.second ?? 0) > oldest) adds[attr] = n;
    // Slots that have left the window go in the same write (at most 50 a write: the rest with the next).
    const removes = Object.keys(this.seen.get(tenant) ?? {})
      .filter((attr) => {
        const slot = parseSlot(attr);
        return slot !== undefined && slot.second <= oldest && !(attr in adds);
      })
      .slice(0, 50);
    this.pending.delete(tenant);
    this.inflight.set(tenant, adds);
    remember(this.writtenAt, tenant, nowMs, CACHE_SIZE);
    return this.store.addToMeter(`${this.namespace}${tenant}`, adds, removes, nowMs + SHARE.windowMs).then(
      (item) => {
        this.inflight.delete(tenant);
        remember(this.seen, tenant, item, CACHE_SIZE);
      },
      (err: unknown) => {
        this.inflight.delete(tenant);
        for (const [attr, n] of Object.entries(adds)) {
          const slot = parseSlot(attr)!;
          this.record(tenant, slot.bucket, n, slot.second * 1000);
        }
        this.log({
          level: 'warn',
          message: 'fair-share meter not written: kept for the next',
          error: (err as Error).name,
        });
      },
    );
  }
}
