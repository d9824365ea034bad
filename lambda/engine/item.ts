import { admission, type BucketDecision, type BucketState, decide, numbersOf, probe } from './bucket';
import { ATTR } from './constants';
import type { Decision } from './decision';
import { attributeName, type BucketGuard, type Fragment, fragment } from './expressions';
import type { Spent } from './gcra';
import type { Limit } from './limits';
import type { Moment } from './moment';

/** An item as DynamoDB returns it (unmarshalled). */
export type Item = Record<string, unknown>;

/** One limit checked inside an item. Several checks of one item are decided by one write. */
export interface Check {
  /** The bucket's name inside the item (its attributes are `<name>_tat`, ...); '' for none. */
  readonly name: string;
  readonly limit: Limit;
  readonly cost: number;
  /** consume: spend `cost` if it fits. admit: require that `cost` fits, spend nothing. @default 'consume' */
  readonly mode?: 'consume' | 'admit';
  /** Evaluated and spent when it fits, but never denies. @default false */
  readonly shadow?: boolean;
  /**
   * Decided by a write every time, never from a lease (leases.ts): a check against part of its
   * bucket (a plan's global reserve) must see the bucket as it stands, not a container's share of it.
   * @default false
   */
  readonly noLease?: boolean;
}

export interface ItemOutcome {
  readonly allowed: boolean;
  /** One per check, in the order the checks were given. */
  readonly decisions: readonly Decision[];
  /** Index of the first non-shadow check that denied. */
  readonly deniedAt?: number;
  /** Epoch ms until which the item's block attribute (the penalty box) denies. */
  readonly blockedUntil?: number;
  /** The item as last seen (after the write, or as it stood when the decision was made). */
  readonly item?: Readonly<Record<string, unknown>>;
  /** The item exactly as DynamoDB returned it after this admission's own write (absent from a transaction, which returns none). */
  readonly written?: Readonly<Record<string, unknown>>;
  /** Per check, the lease (leases.ts) its cost came out of or was taken with; absent: none. */
  readonly leases?: readonly (number | undefined)[];
}

export interface ItemOptions {
  /** Attribute holding an epoch-ms "denied until"; while it lies ahead, every decision denies. */
  readonly block?: string;
  /** Other limits kept in the same item, so the item's TTL covers them too. */
  readonly alsoHolds?: readonly Limit[];
}

export interface Adjustment {
  readonly name: string;
  readonly limit: Limit;
  /** > 0 debits without a limit check (may leave debt); < 0 refunds, never past full. */
  readonly delta: number;
  /** When the refunded cost was admitted (epoch ms; default: now): a sliding window refunds that slot, a bucket what it has not refilled since. */
  readonly admittedAt?: number;
  /** What that admission spent, and the bucket as its write left it: a refund can then give back exactly what still lies ahead. */
  readonly spent?: Spent;
  /** The lease the admission was spent from or taken with (ItemOutcome.leases): settled into it while it lives. */
  readonly lease?: number;
}

export interface Evaluation {
  readonly decision: Decision;
  /** The bucket's state after a consume, as predicted. */
  readonly next?: BucketState;
  /** The write (consume) or guard (admit) that makes an admission true in the store. */
  readonly source?: BucketDecision['write'] | BucketGuard;
  /** What to try when a stale view says deny; undefined: read first. */
  readonly probe?: BucketDecision['write'] | BucketGuard;
}

function evaluate(c: Check, state: BucketState | undefined, at: Moment): Evaluation {
  if (c.mode === 'admit') {
    const { decision, guard } = admission(c.limit, state, at, c.cost);
    return { decision, source: guard, probe: guard };
  }
  const plan = decide(c.limit, state, at, c.cost);
  if (plan.write) return { decision: plan.decision, source: plan.write, next: plan.next };
  const fallback = probe(c.limit, state, at, c.cost);
  return { decision: plan.decision, ...(fallback ? { probe: fallback } : {}) };
}

export type Step =
  | { readonly kind: 'done'; readonly outcome: ItemOutcome }
  | { readonly kind: 'read' }
  | { readonly kind: 'write'; readonly fragments: Fragment[]; readonly evals: readonly Evaluation[] };

/** What to do next for one item, given the state this container has for it. */
export function planItem(
  checks: readonly Check[],
  options: ItemOptions,
  item: Item | undefined,
  fresh: boolean,
  at: Moment,
): Step {
  const evals = checks.map((c) => evaluate(c, bucketOf(item, c.name), at));
  const blockedUntil = options.block ? numberOf(item, options.block) : undefined;
  const blocked = blockedUntil !== undefined && blockedUntil > at.early;
  const deniedAt = evals.findIndex((e, i) => !checks[i]!.shadow && !e.decision.allowed);
  const final = deniedAt >= 0 && evals[deniedAt]!.decision.exceedsLimit;
  if ((blocked || deniedAt >= 0) && (fresh || final))
    return { kind: 'done', outcome: denial(evals, deniedAt, blocked ? blockedUntil : undefined, item) };
  const fragments: Fragment[] = [];
  for (const [i, e] of evals.entries()) {
    const c = checks[i]!;
    // A stale view that says deny tries the probe: its condition decides, or returns the real state.
    const source = e.decision.allowed ? e.source : c.shadow ? undefined : e.probe;
    if (!source && !e.decision.allowed && !c.shadow) return { kind: 'read' };
    if (source) fragments.push(fragment(source, c.limit, c.name, `a${i}`));
  }
  if (options.block) fragments.push(notBlocked(options.block, at));
  return { kind: 'write', fragments, evals };
}

export function admitted(
  checks: readonly Check[],
  evals: readonly Evaluation[],
  item: Item | undefined,
  at: Moment,
): ItemOutcome {
  // The write went through, so every enforced check was admitted, including one a stale view had
  // denied and whose probe then succeeded. A shadow check that would deny was left out of the write.
  const decisions = checks.map((c, i) =>
    !c.shadow || evals[i]!.decision.allowed
      ? { ...numbersOf(c.limit, bucketOf(item, c.name), at), allowed: true }
      : evals[i]!.decision,
  );
  return { allowed: true, decisions, ...(item ? { item } : {}) };
}

/** The item as this container expects it after its write (a transaction returns no new state). */
export function predictItem(item: Item | undefined, checks: readonly Check[], evals: readonly Evaluation[]): Item {
  return withBuckets(
    item,
    checks.flatMap((c, i) => {
      const state = evals[i]?.next;
      return state && evals[i]!.decision.allowed ? [{ name: c.name, state }] : [];
    }),
  );
}

const FIELDS = {
  tat: ATTR.tat,
  credit: ATTR.credit,
  creditAt: ATTR.creditAt,
  refunded: ATTR.refunded,
  head: ATTR.head,
  total: ATTR.total,
} as const;

/** The item with the given buckets' states written into it (a copy). */
export function withBuckets(
  item: Item | undefined,
  buckets: readonly { readonly name: string; readonly state: BucketState }[],
): Item {
  const next: Item = { ...item };
  for (const { name, state } of buckets) {
    for (const [field, attr] of Object.entries(FIELDS)) {
      const value = state[field as keyof typeof FIELDS];
      if (value !== undefined) next[attributeName(name, attr)] = value;
    }
    state.slots?.forEach((count, j) => {
      next[attributeName(name, ATTR.slot + j)] = count;
    });
  }
  return next;
}

function denial(
  evals: readonly Evaluation[],
  deniedAt: number,
  blockedUntil: number | undefined,
  item: Item | undefined,
): ItemOutcome {
  return {
    allowed: false,
    decisions: evals.map((e) => e.decision),
    ...(deniedAt >= 0 ? { deniedAt } : {}),
    ...(blockedUntil === undefined ? {} : { blockedUntil }),
    ...(item ? { item } : {}),
  };
}

function notBlocked(attribute: string, at: Moment): Fragment {
  return {
    condition: 'attribute_not_exists(#blk) OR #blk <= :blkAt',
    sets: [],
    names: { '#blk': attribute },
    values: { ':blkAt': at.early },
  };
}

function numberOf(item: Item | undefined, attribute: string): number | undefined {
  const value = item?.[attribute];
  return typeof value === 'number' ? value : undefined;
}

/** The state of the bucket called `name` inside an item. */
export function bucketOf(item: Item | undefined, name: string): BucketState | undefined {
  if (!item) return undefined;
  const num = (attr: string) => numberOf(item, attributeName(name, attr));
  const slots: number[] = [];
  for (let i = 0; num(ATTR.slot + i) !== undefined; i++) slots.push(num(ATTR.slot + i)!);
  const state: Record<string, number | number[]> = {};
  for (const [field, attr] of Object.entries(FIELDS)) {
    const value = num(attr);
    if (value !== undefined) state[field] = value;
  }
  if (slots.length > 0) state.slots = slots;
  return Object.keys(state).length ? (state as BucketState) : undefined;
}
