/**
 * Calendar periods in an IANA time zone: the day, the ISO week (Monday first) or the month a
 * moment falls in, numbered so that the same local day or month has the same number in every
 * zone (days since 1970-01-01, weeks since the Monday 1969-12-29, months since January 1970).
 *
 * A calendar budget is a sliding window of one slot whose slots are these periods
 * (sliding-window.ts): an admission counts in the period of its moment and is checked against
 * that period alone, so the count starts again at each period's first moment, with no reset job.
 *
 * A period starts at the first millisecond whose local date is its first day: local midnight, or
 * the end of the gap where a zone's clocks jump over midnight. Where a zone's clocks go back over
 * midnight, a moment whose local date falls back a day belongs to the period already begun (the
 * window counts into its newest slot), so a period never starts twice.
 */
import { InvalidLimitError } from './errors';

/** The periods a calendar budget can count in. */
export const PERIODS = ['day', 'week', 'month'] as const;
/** A calendar day, an ISO week (from Monday) or a calendar month. */
export type Period = (typeof PERIODS)[number];

/** Where a calendar budget's periods start: its period and time zone. */
export interface Calendar {
  /** Day, ISO week or month. */
  readonly period: Period;
  /** An IANA time zone name ('Europe/Paris', 'America/New_York', 'UTC'). */
  readonly timeZone: string;
}

const DAY_MS = 86_400_000;
/** Longest a period can last: a 31-day month plus an hour a clock change adds. */
export const LONGEST_PERIOD_MS: Record<Period, number> = {
  day: DAY_MS + 3_600_000,
  week: 7 * DAY_MS + 3_600_000,
  month: 31 * DAY_MS + 3_600_000,
};

const formats = new Map<string, Intl.DateTimeFormat>();

function formatOf(timeZone: string): Intl.DateTimeFormat {
  let format = formats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      era: 'short',
    });
    formats.set(timeZone, format);
  }
  return format;
}

/** The zone's canonical name, or a clear error for one Intl does not know. */
export function requireTimeZone(timeZone: unknown, what: string): string {
  if (typeof timeZone !== 'string' || !timeZone)
    throw new InvalidLimitError(
      `${what} timeZone must be an IANA time zone name such as 'Europe/Paris', got ${JSON.stringify(timeZone)}`,
    );
  try {
    return formatOf(timeZone).resolvedOptions().timeZone;
  } catch {
    throw new InvalidLimitError(
      `${what} timeZone '${timeZone}' is not an IANA time zone this runtime knows: use a name such as 'Europe/Paris' or 'UTC'`,
    );
  }
}

/** The local date of `t` (epoch ms) in `timeZone`, as days since 1970-01-01. */
export function localDay(t: number, timeZone: string): number {
  let year = 0;
  let month = 0;
  let day = 0;
  let bc = false;
  for (const part of formatOf(timeZone).formatToParts(t)) {
    if (part.type === 'year') year = Number(part.value);
    else if (part.type === 'month') month = Number(part.value);
    else if (part.type === 'day') day = Number(part.value);
    else if (part.type === 'era') bc = part.value === 'BC';
  }
  const utc = new Date(0);
  utc.setUTCFullYear(bc ? 1 - year : year, month - 1, day);
  return Math.floor(utc.getTime() / DAY_MS);
}

/** The period a local day falls in. */
function periodOfDay(day: number, period: Period): number {
  if (period === 'day') return day;
  if (period === 'week') return Math.floor((day + 3) / 7); // 1970-01-01 was a Thursday
  const date = new Date(day * DAY_MS);
  return (date.getUTCFullYear() - 1970) * 12 + date.getUTCMonth();
}

/** The first local day of a period. */
function firstDay(index: number, period: Period): number {
  if (period === 'day') return index;
  if (period === 'week') return index * 7 - 3;
  const date = new Date(0);
  date.setUTCFullYear(1970 + Math.floor(index / 12), ((index % 12) + 12) % 12, 1);
  return Math.floor(date.getTime() / DAY_MS);
}

/** The period `t` (epoch ms) falls in. */
export const periodIndex = (t: number, calendar: Calendar): number =>
  periodOfDay(localDay(Math.floor(t), calendar.timeZone), calendar.period);

const starts = new Map<string, number>();

/**
 * The first whole millisecond whose local date is the period's first day or later: the least t
 * with periodIndex(t) >= index. UTC offsets lie within [-12 h, +14 h]: the start lies within a day
 * of the first day's midnight in UTC, found by bisection (cached: a few periods are ever asked).
 */
export function periodStart(index: number, calendar: Calendar): number {
  const key = `${calendar.timeZone}\u0000${calendar.period}\u0000${index}`;
  const cached = starts.get(key);
  if (cached !== undefined) return cached;
  const day = firstDay(index, calendar.period);
  const reached = (t: number) => localDay(t, calendar.timeZone) >= day;
  let lo = day * DAY_MS - DAY_MS; // its local date is the day before, or earlier
  let hi = day * DAY_MS + DAY_MS; // its local date is the day, or later
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (reached(mid)) hi = mid;
    else lo = mid;
  }
  if (starts.size > 10_000) starts.clear();
  starts.set(key, hi);
  return hi;
}
