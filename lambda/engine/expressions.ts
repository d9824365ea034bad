import type { BucketWrite } from './bucket';
import { ATTR } from './constants';
import type { Limit } from './limits';
import { ringLength, type WindowCheck, type WindowGuard } from './sliding-window';

/**
 * One bucket's share of an UpdateItem: a condition and SET clauses over placeholders that are
 * unique to the bucket, so several buckets of one item combine into one conditional write.
 */
export interface Fragment {
  readonly condition?: string;
  readonly sets: readonly string[];
  readonly names: Readonly<Record<string, string>>;
  readonly values: Readonly<Record<string, unknown>>;
}

/** A condition-only guard: "at least `cost` is left" without spending it (admission checks). */
export type BucketGuard =
  | {
      readonly branch: 'room';
      readonly lim: number;
      readonly credit?: { readonly horizon: number; readonly cost: number };
    }
  | WindowGuard;

/** Attribute name of `attr` for the bucket called `bucket` inside an item. */
export const attributeName = (bucket: string, attr: string): string => (bucket === '' ? attr : `${bucket}_${attr}`);

/**
 * `tag` makes placeholders unique within the combined expression (#a0tat, :a0lim, ...).
 */
export function fragment(write: BucketWrite | BucketGuard, limit: Limit, bucket: string, tag: string): Fragment {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const n = (attr: string): string => {
    const placeholder = `#${tag}${attr}`;
    names[placeholder] = attributeName(bucket, attr);
    return placeholder;
  };
  const v = (key: string, value: unknown): string => {
    const placeholder = `:${tag}${key}`;
    values[placeholder] = value;
    return placeholder;
  };
  const done = (condition: string | undefined, sets: string[]): Fragment => ({
    ...(condition ? { condition } : {}),
    sets,
    names,
    values,
  });
  const tat = () => n(ATTR.tat);
  const windowCondition = (check: WindowCheck): string => {
    const parts = [`${n(ATTR.head)} = ${v('head', check.head)}`];
    if (check.maxTotal !== undefined) parts.push(`${n(ATTR.total)} <= ${v('maxTotal', check.maxTotal)}`);
    check.pins.forEach((p, i) => {
      parts.push(`${n(ATTR.slot + p.position)} = ${v(`pin${i}`, p.value)}`);
    });
    return parts.join(' AND ');
  };

  switch (write.branch) {
    case 'advance':
      // The bucket is in use: the increment commutes, the condition holds the limit.
      return done(`${tat()} BETWEEN ${v('late', write.late)} AND ${v('lim', write.lim)}`, [
        `${tat()} = ${tat()} + ${v('inc', write.inc)}`,
      ]);
    case 'start':
      // The bucket was full: charge from the latest time the present could be.
      if (write.lim === undefined)
        return done(`attribute_not_exists(${tat()}) OR ${tat()} < ${v('late', write.late)}`, [
          `${tat()} = ${v('tat', write.tat)}`,
        ]);
      return done(
        `attribute_not_exists(${tat()}) OR (${tat()} < ${v('late', write.late)} AND ${tat()} <= ${v('lim', write.lim)})`,
        [`${tat()} = ${v('tat', write.tat)}`],
      );
    case 'restart': {
      const cr = n(ATTR.credit);
      const conditions = [
        write.expectTat === undefined
          ? `attribute_not_exists(${tat()})`
          : `${tat()} = ${v('expectTat', write.expectTat)}`,
      ];
      conditions.push(
        write.expectCredit === undefined
          ? `attribute_not_exists(${cr})`
          : `${cr} = ${v('expectCredit', write.expectCredit)}`,
      );
      return done(conditions.join(' AND '), [
        `${tat()} = ${v('tat', write.tat)}`,
        `${cr} = ${v('credit', write.credit)}`,
        `${n(ATTR.creditAt)} = ${v('early', write.early)}`,
      ]);
    }
    case 'credit': {
      const cr = n(ATTR.credit);
      return done(
        `${tat()} > ${v('mainBelow', write.mainBelow)} AND ${tat()} <= ${v('horizon', write.horizon)} AND ${cr} >= ${v('cost', write.cost)}`,
        [`${cr} = ${cr} - ${v('cost', write.cost)}`],
      );
    }
    case 'debit':
      return done(`${tat()} >= ${v('late', write.late)}`, [`${tat()} = ${tat()} + ${v('inc', write.inc)}`]);
    case 'refund': {
      const rf = n(ATTR.refunded);
      const floor = `${tat()} >= ${v('floor', write.floor)}`;
      const moved =
        write.refundedMax === undefined
          ? ''
          : ` AND (attribute_not_exists(${rf}) OR ${rf} <= ${v('refundedMax', write.refundedMax)})`;
      return done(`${floor}${moved}`, [
        `${tat()} = ${tat()} - ${v('dec', write.dec)}`,
        `${rf} = if_not_exists(${rf}, ${v('zero', 0)}) + ${v('dec', write.dec)}`,
      ]);
    }
    case 'room': {
      const main = `attribute_not_exists(${tat()}) OR ${tat()} <= ${v('lim', write.lim)}`;
      if (!write.credit) return done(main, []);
      return done(
        `${main} OR (${tat()} <= ${v('horizon', write.credit.horizon)} AND ${n(ATTR.credit)} >= ${v('cost', write.credit.cost)})`,
        [],
      );
    }
    case 'room-window':
      if (!write.check) return done(`attribute_not_exists(${n(ATTR.head)})`, []);
      return done(windowCondition(write.check), []);
    case 'init': {
      if (limit.shape !== 'sliding_window') throw new TypeError('init needs a sliding window');
      const sets = [`${n(ATTR.head)} = ${v('head', write.head)}`, `${n(ATTR.total)} = ${v('total', write.total)}`];
      write.slots.forEach((count, i) => {
        sets.push(`${n(ATTR.slot + i)} = ${v(`s${i}`, count)}`);
      });
      if (write.slots.length !== ringLength(limit)) throw new TypeError('ring length mismatch');
      return done(`attribute_not_exists(${n(ATTR.head)})`, sets);
    }
    case 'roll': {
      const total = n(ATTR.total);
      const sets = [
        `${n(ATTR.head)} = ${v('newHead', write.head)}`,
        `${n(ATTR.slot + write.position)} = ${v('cost', write.cost)}`,
      ];
      for (const p of write.zero) sets.push(`${n(ATTR.slot + p)} = ${v('zero', 0)}`);
      sets.push(
        write.total !== undefined
          ? `${total} = ${v('total', write.total)}`
          : `${total} = ${total} + ${v('delta', write.totalDelta ?? 0)}`,
      );
      return done(windowCondition(write.check), sets);
    }
    case 'add': {
      const slot = n(ATTR.slot + write.position);
      const conditions = [windowCondition(write.check)];
      if (write.minSlot !== undefined) conditions.push(`${slot} >= ${v('minSlot', write.minSlot)}`);
      const sets = [`${slot} = ${slot} + ${v('cost', write.cost)}`];
      if (write.inTotal) sets.push(`${n(ATTR.total)} = ${n(ATTR.total)} + ${v('cost', write.cost)}`);
      return done(conditions.join(' AND '), sets);
    }
  }
}

/** DynamoDB's limit on any one expression string (ConditionExpression, UpdateExpression). */
export const MAX_EXPRESSION_BYTES = 4096;

/**
 * The longest condition and update expressions one item's write can have for these limits: the
 * longest branch of each limit (the numbers do not matter, only placeholders appear), joined as
 * the store joins them, plus the item's expiry and the penalty box's condition. An upper bound of
 * what the store sends, so a plan under it never meets DynamoDB's 4 KB limit.
 */
export function expressionBound(limits: readonly Limit[]): { condition: number; update: number } {
  let condition = 'attribute_not_exists(#blk) OR #blk <= :blkAt'.length + 2;
  let update = 'SET '.length + '#exp = :exp'.length;
  limits.forEach((limit, i) => {
    const tag = `a${i}`;
    let longestCondition = 0;
    let longestSets = 0;
    for (const write of worstWrites(limit)) {
      const f = fragment(write, limit, 'b', tag);
      longestCondition = Math.max(longestCondition, (f.condition?.length ?? 0) + ' AND ()'.length);
      longestSets = Math.max(longestSets, f.sets.join(', ').length + ', '.length);
    }
    condition += longestCondition;
    update += longestSets;
  });
  return { condition, update };
}

/** Every branch a limit can write, with as many slots, pins and zeros as it can have. */
function worstWrites(limit: Limit): (BucketWrite | BucketGuard)[] {
  const n = 1;
  if (limit.shape === 'sliding_window') {
    const ring = ringLength(limit);
    const pins = Array.from({ length: limit.subWindows }, (_, i) => ({ position: ring - 1 - (i % ring), value: n }));
    const check = { head: n, maxTotal: n, pins };
    return [
      { branch: 'init', head: n, slots: Array.from({ length: ring }, () => n), total: n },
      {
        branch: 'roll',
        check,
        head: n,
        position: ring - 1,
        cost: n,
        zero: Array.from({ length: ring - 1 }, (_, i) => ring - 1 - i),
        total: n,
      },
      { branch: 'add', check, position: ring - 1, cost: n, inTotal: true, minSlot: n },
      { branch: 'room-window', check },
    ] as (BucketWrite | BucketGuard)[];
  }
  return [
    { branch: 'advance', late: n, lim: n, inc: n },
    { branch: 'start', late: n, lim: n, tat: n },
    { branch: 'restart', early: n, expectTat: n, expectCredit: n, tat: n, credit: n },
    { branch: 'credit', mainBelow: n, horizon: n, cost: n },
    { branch: 'debit', late: n, inc: n },
    { branch: 'refund', floor: n, dec: n, refundedMax: n },
    { branch: 'room', lim: n, credit: { horizon: n, cost: n } },
  ];
}
