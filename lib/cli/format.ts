import type { Limit } from '../../lambda/engine/limits';
import type { Counts } from '../../lambda/engine/plans';

/** Columns aligned with two spaces between them; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A whole number with thousands separators, or dollars (usd limits are kept in micro-dollars). */
export function amount(value: number, counts: Counts, microDollars = true): string {
  if (counts === 'usd') {
    const dollars = microDollars ? value / 1_000_000 : value;
    return `$${dollars.toFixed(dollars !== 0 && Math.abs(dollars) < 1 ? 4 : 2)}`;
  }
  return Math.round(value).toLocaleString('en-US');
}

/** 90 -> 1 min 30 s; 86400 -> 1 d. */
export function span(seconds: number): string {
  if (seconds <= 0) return 'now';
  const parts: string[] = [];
  let left = Math.round(seconds);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['min', 60],
    ['s', 1],
  ] as const) {
    if (left >= size) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** The limit's size in its own unit: a bucket's capacity or a window's count. */
export const sizeOf = (limit: Limit): number => (limit.shape === 'sliding_window' ? limit.limit : limit.capacity);

export const SHAPE_NAMES: Record<Limit['shape'], string> = {
  token_bucket: 'token bucket',
  leaky_bucket: 'leaky bucket',
  sliding_window: 'sliding window',
};

/** Billionths of a dollar as an exact decimal string: 1234567891 -> 1.234567891. */
export function nanoDollars(nano: number): string {
  const whole = Math.floor(nano / 1e9);
  return `${whole}.${String(nano - whole * 1e9).padStart(9, '0')}`;
}

/** The denial codes that occur in `lines`, sorted: one column each. */
export const deniedCodes = (lines: readonly { denied: Readonly<Record<string, number>> }[]): string[] =>
  [...new Set(lines.flatMap((l) => Object.keys(l.denied)))].sort();
