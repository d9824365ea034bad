import { fillMs } from './gcra';
import type { Check } from './item';
import type { Limit } from './limits';
import type { Moment } from './moment';
import { slotIndex, slotMs, slotStart } from './sliding-window';

/**
 * Leases: a container that decides often on one bucket takes a few units more than the request
 * needs in the same conditional write, and spends them from memory on the requests that follow,
 * with no write at all.
 *
 * Why it is exact: a token or leaky bucket's write that takes a lease stamps its charge `ms`
 * later than the present (the same machinery as a clock that may be `ms` behind, moment.ts): its
 * condition is judged at the early end, its charge lands at the late end. A unit spent from memory
 * at any moment up to that late end is then a unit admitted at a time the store allowed for, so
 * the bucket never admits more than its limit in any interval, whichever container spends what.
 * A sliding window counts a lease in the slot of its write, and its units are spent only while
 * the present (its late end) is still in that slot: every window that holds the spend holds the
 * slot. The container checks the late end of its own present against the lease's last moment
 * before every spend.
 *
 * The price, and its bound: a write that takes a lease on a bucket that was full charges from
 * `ms` later, so up to rate x `ms` of refill is lost; units a container leased and did not spend
 * before the lease ends are lost too (a container that dies loses its lease the same way; a
 * window's come back when their slot leaves the window). Both are capped by `share` of the limit:
 * `ms` is at most `share` of the time the bucket takes to fill, and a lease at most `share` of its
 * capacity. With the default 1%, a container holds back at most 2% of a limit, and only while it
 * uses it that fast. A limit whose share is less than a unit is never leased, so small limits
 * behave exactly as without leases.
 *
 * Token buckets with burst credit are not leased. `remaining` in a decision counts every lease as
 * spent, this container's unspent one included.
 */
export interface LeaseOptions {
  /** Longest a lease lives (a per-day quota's 1% of its fill time would be 14 minutes). @default 10000 */
  readonly maxMs?: number;
  /** Largest share of a bucket's capacity one lease takes, and of its fill time a lease lives. @default 0.01 */
  readonly share?: number;
}

export const DEFAULT_LEASES: Required<LeaseOptions> = { maxMs: 10_000, share: 0.01 };

interface Lease {
  readonly id: number;
  units: number;
  /** The last moment (the late end of this container's present, epoch ms) the lease may be spent. */
  readonly lastMs: number;
}

/** What this container spent on a bucket recently: the size of the next lease. */
interface Use {
  windowStart: number;
  spent: number;
  previous: number;
}

const key = (pk: string, name: string) => `${pk}\u0000${name}`;

export class LeaseBook {
  /** Live leases by bucket, oldest first: a container may hold a few (one taken while another is short). */
  private readonly held = new Map<string, Lease[]>();
  private readonly use = new Map<string, Use>();
  /** What each settlement's lease part did (taken or not), by settlement, bucket and lease: a retry repeats it, never re-applies it. */
  private readonly settled = new Map<string, boolean>();
  private nextId = 1;
  private readonly options: Required<LeaseOptions>;

  constructor(
    options: LeaseOptions = {},
    private readonly cacheSize = 10_000,
  ) {
    this.options = { ...DEFAULT_LEASES, ...options };
  }

  /** How much later a write that takes a lease on `limit` stamps its charge (ms; 0 for a window, which leases by slot). */
  stampMs(limit: Limit): number {
    if (limit.shape === 'sliding_window' || (limit.shape === 'token_bucket' && limit.burstCredit)) return 0;
    return Math.floor(Math.min(this.options.maxMs, this.options.share * fillMs(limit)));
  }

  /**
   * How long a lease on `limit` lives at most (ms); 0 when it is not leased. A calendar budget's
   * lease lives no longer than `maxMs` either, though its slot is a month.
   */
  private lifeMs(limit: Limit): number {
    if (limit.shape !== 'sliding_window') return this.stampMs(limit);
    return limit.calendar ? Math.min(this.options.maxMs, slotMs(limit)) : slotMs(limit);
  }

  /** The last moment a lease taken with a write stamped `at` may be spent. */
  lastMoment(limit: Limit, at: Moment): number {
    if (limit.shape !== 'sliding_window') return at.late;
    const slotEnd = slotStart(slotIndex(at.late, limit) + 1, limit) - 1;
    return limit.calendar ? Math.min(slotEnd, at.late + this.lifeMs(limit)) : slotEnd;
  }

  /** The live leases of a bucket at `lateMs` (the dead ones are dropped). */
  private live(k: string, lateMs: number): Lease[] {
    const all = this.held.get(k);
    if (!all) return [];
    if (all.every((l) => lateMs <= l.lastMs)) return all;
    const live = all.filter((l) => lateMs <= l.lastMs);
    if (live.length === 0) this.held.delete(k);
    else if (live.length !== all.length) this.held.set(k, live);
    return live;
  }

  /**
   * Spends every consume check of an item from this container's leases, all or none, at a present
   * whose late end is `lateMs`. Returns the lease each check was spent from (undefined for checks
   * that spend nothing), or undefined when some check has no live lease that covers it.
   */
  spend(pk: string, checks: readonly Check[], lateMs: number): (number | undefined)[] | undefined {
    const leases = checks.map((c) =>
      c.mode === 'admit' ? undefined : this.live(key(pk, c.name), lateMs).find((l) => l.units >= c.cost),
    );
    if (checks.some((c, i) => c.mode !== 'admit' && !leases[i])) return undefined;
    return checks.map((c, i) => {
      const lease = leases[i];
      if (!lease) return undefined;
      lease.units -= c.cost;
      this.used(pk, c, lateMs);
      return lease.id;
    });
  }

  /** Units of `name` in item `pk` this container holds in leases and has not spent (0: none). */
  unspent(pk: string, name: string, lateMs: number): number {
    return this.live(key(pk, name), lateMs).reduce((a, l) => a + l.units, 0);
  }

  /** Whether this container holds a live lease with units left on one of `names` of item `pk`. */
  holds(pk: string, names: readonly string[], lateMs: number): boolean {
    return names.some((name) => this.live(key(pk, name), lateMs).some((l) => l.units > 0));
  }

  /** Units to take beyond `check.cost` in a write this container makes anyway (0: no lease). */
  extraFor(pk: string, check: Check, nowMs: number): number {
    const limit = check.limit;
    if (check.mode === 'admit' || check.shadow || check.noLease) return 0;
    const life = this.lifeMs(limit);
    const size = limit.shape === 'sliding_window' ? limit.limit : limit.capacity;
    const most = Math.floor(this.options.share * size) - check.cost;
    if (life <= 0 || most < 1) return 0;
    const u = this.fresh(key(pk, check.name), nowMs, life);
    // Sized for what this container will spend in a lease's time at the pace it spent lately: the
    // last lease's time, or this one's so far (counted from a twentieth of it, so the first two
    // decisions do not look infinitely fast). Units a lease holds unspent are capped by `most`.
    const pace = (u.spent * life) / Math.max(nowMs - u.windowStart, life / 20);
    return Math.max(0, Math.min(most, Math.floor(Math.max(pace, u.previous) - check.cost)));
  }

  /** Records a lease of `units` taken with a write, spendable up to `lastMs`; returns its id. */
  grant(pk: string, check: Check, units: number, lastMs: number): number {
    const id = this.nextId++;
    const k = key(pk, check.name);
    const leases = this.held.get(k) ?? [];
    this.held.delete(k);
    this.held.set(k, [...leases, { id, units, lastMs }]);
    if (this.held.size > this.cacheSize) this.held.delete(this.held.keys().next().value!);
    return id;
  }

  /** Counts a spend (a lease's size follows all of this container's use of the bucket). */
  used(pk: string, check: Check, nowMs: number): void {
    const life = this.lifeMs(check.limit);
    if (life <= 0 || check.mode === 'admit') return;
    this.fresh(key(pk, check.name), nowMs, life).spent += check.cost;
  }

  /**
   * Settles `delta` (> 0 more spent, < 0 given back) against lease `id` if this container still
   * holds it live at `lateMs`: units given back are spent again later, a debit comes out of it.
   * False when the lease cannot take it (the caller writes to DynamoDB instead). `once` names the
   * settlement: a retry of it (its answer lost) gets the first answer again, and the lease is not
   * moved twice, even when it has ended meanwhile.
   */
  settle(pk: string, name: string, id: number, delta: number, lateMs: number, once?: string): boolean {
    const k = once === undefined ? undefined : `${once}\u0000${key(pk, name)}\u0000${id}`;
    const before = k === undefined ? undefined : this.settled.get(k);
    if (before !== undefined) return before;
    const taken = this.take(pk, name, id, delta, lateMs);
    if (k !== undefined) {
      this.settled.set(k, taken);
      if (this.settled.size > this.cacheSize) this.settled.delete(this.settled.keys().next().value!);
    }
    return taken;
  }

  private take(pk: string, name: string, id: number, delta: number, lateMs: number): boolean {
    const lease = this.held.get(key(pk, name))?.find((l) => l.id === id);
    if (!lease || lateMs > lease.lastMs) return false;
    if (delta > 0 && lease.units < delta) return false;
    lease.units -= delta;
    return true;
  }

  private fresh(k: string, nowMs: number, ms: number): Use {
    let u = this.use.get(k);
    if (!u) {
      u = { windowStart: nowMs, spent: 0, previous: 0 };
      this.use.set(k, u);
      if (this.use.size > this.cacheSize) this.use.delete(this.use.keys().next().value!);
    } else if (nowMs - u.windowStart >= ms) {
      u.previous = nowMs - u.windowStart >= 2 * ms ? 0 : u.spent;
      u.spent = 0;
      u.windowStart = nowMs;
    }
    return u;
  }
}
