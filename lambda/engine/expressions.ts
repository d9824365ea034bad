import type { BucketWrite } from './bucket';
import { ATTR } from './constants';
import type { Limit } from './limits';
import { ringLength } from './sliding-window';

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
  | { readonly branch: 'room'; readonly lim: number; readonly credit?: { readonly horizon: number; readonly cost: number } }
  | { readonly branch: 'room-window'; readonly head?: number; readonly maxTotal?: number; readonly firstLive?: number; readonly writes?: number };

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
  const done = (condition: string | undefined, sets: string[]): Fragment => ({ ...(condition ? { condition } : {}), sets, names, values });
  const tat = () => n(ATTR.tat);

  switch (write.branch) {
    case 'advance':
      // The bucket is in use: the increment commutes, the condition holds the limit.
      return done(`${tat()} BETWEEN ${v('late', write.late)} AND ${v('lim', write.lim)}`, [`${tat()} = ${tat()} + ${v('inc', write.inc)}`]);
    case 'start':
      // The bucket was full: charge from the latest time the present could be.
      if (write.lim === undefined) return done(`attribute_not_exists(${tat()}) OR ${tat()} < ${v('late', write.late)}`, [`${tat()} = ${v('tat', write.tat)}`]);
      return done(`attribute_not_exists(${tat()}) OR (${tat()} < ${v('late', write.late)} AND ${tat()} <= ${v('lim', write.lim)})`, [`${tat()} = ${v('tat', write.tat)}`]);
    case 'restart': {
      const cr = n(ATTR.credit);
      const conditions = [write.expectTat === undefined ? `attribute_not_exists(${tat()})` : `${tat()} = ${v('expectTat', write.expectTat)}`];
      conditions.push(write.expectCredit === undefined ? `attribute_not_exists(${cr})` : `${cr} = ${v('expectCredit', write.expectCredit)}`);
      return done(conditions.join(' AND '), [`${tat()} = ${v('tat', write.tat)}`, `${cr} = ${v('credit', write.credit)}`, `${n(ATTR.creditAt)} = ${v('early', write.early)}`]);
    }
    case 'credit': {
      const cr = n(ATTR.credit);
      return done(`${tat()} > ${v('mainBelow', write.mainBelow)} AND ${tat()} <= ${v('horizon', write.horizon)} AND ${cr} >= ${v('cost', write.cost)}`, [`${cr} = ${cr} - ${v('cost', write.cost)}`]);
    }
    case 'debit':
      return done(`${tat()} >= ${v('late', write.late)}`, [`${tat()} = ${tat()} + ${v('inc', write.inc)}`]);
    case 'refund':
      return done(`${tat()} >= ${v('floor', write.floor)}`, [`${tat()} = ${tat()} - ${v('dec', write.dec)}`]);
    case 'refill':
      return done(`${tat()} = ${v('expectTat', write.expectTat)}`, [`${tat()} = ${v('late', write.late)}`]);
    case 'room': {
      const main = `attribute_not_exists(${tat()}) OR ${tat()} <= ${v('lim', write.lim)}`;
      if (!write.credit) return done(main, []);
      return done(`${main} OR (${tat()} <= ${v('horizon', write.credit.horizon)} AND ${n(ATTR.credit)} >= ${v('cost', write.credit.cost)})`, []);
    }
    case 'room-window': {
      const hd = n(ATTR.head);
      if (write.head === undefined) return done(`attribute_not_exists(${hd})`, []);
      if (write.firstLive !== undefined) return done(`${hd} < ${v('firstLive', write.firstLive)}`, []);
      if (write.maxTotal !== undefined) return done(`${hd} = ${v('head', write.head)} AND ${n(ATTR.total)} <= ${v('maxTotal', write.maxTotal)}`, []);
      return done(`${hd} = ${v('head', write.head)} AND ${n(ATTR.writes)} = ${v('writes', write.writes ?? 0)}`, []);
    }
    case 'init':
    case 'roll': {
      if (limit.shape !== 'sliding_window') throw new TypeError(`write ${write.branch} needs a sliding window`);
      const hd = n(ATTR.head);
      const sets = [`${hd} = ${v('head', write.head)}`, `${n(ATTR.total)} = ${v('total', write.total)}`];
      write.slots.forEach((count, i) => sets.push(`${n(ATTR.slot + i)} = ${v(`s${i}`, count)}`));
      if (write.slots.length !== ringLength(limit)) throw new TypeError('ring length mismatch');
      if (write.branch === 'init') return done(`attribute_not_exists(${hd})`, [...sets, `${n(ATTR.writes)} = ${v('one', 1)}`]);
      const writes = n(ATTR.writes);
      return done(`${hd} = ${v('expectHead', write.expectHead)} AND ${writes} = ${v('expectWrites', write.expectWrites)}`, [...sets, `${writes} = ${writes} + ${v('one', 1)}`]);
    }
    case 'add': {
      const slot = n(ATTR.slot + write.position);
      const conditions = [`${n(ATTR.head)} = ${v('head', write.head)}`];
      if (write.maxTotal !== undefined) conditions.push(`${n(ATTR.total)} <= ${v('maxTotal', write.maxTotal)}`);
      if (write.minSlot !== undefined) conditions.push(`${slot} >= ${v('minSlot', write.minSlot)}`);
      const sets = [`${slot} = ${slot} + ${v('cost', write.cost)}`, `${n(ATTR.writes)} = ${n(ATTR.writes)} + ${v('one', 1)}`];
      if (write.inTotal) sets.push(`${n(ATTR.total)} = ${n(ATTR.total)} + ${v('cost', write.cost)}`);
      return done(conditions.join(' AND '), sets);
    }
  }
}
