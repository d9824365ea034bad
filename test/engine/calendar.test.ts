/**
 * Calendar periods (lambda/engine/calendar.ts) on a fake clock: month ends, leap days, clock
 * changes (23- and 25-hour days, a zone whose clocks jumped over midnight), ISO weeks, and
 * every zone's periods tiling time with no gap and no overlap.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Calendar, localDay, periodIndex, periodStart, PERIODS } from '../../lambda/engine/calendar';
import { InvalidLimitError } from '../../lambda/engine/errors';
import { calendarBudget } from '../../lambda/engine/limits';

const at = (iso: string) => Date.parse(iso);
const local = (t: number, timeZone: string) =>
  new Intl.DateTimeFormat('sv-SE', { timeZone, dateStyle: 'short', timeStyle: 'medium' }).format(t);

/** Zones whose local dates only ever move forward: every offset, half and quarter hours, DST north and south. */
const ZONES = [
  'UTC',
  'Europe/Paris',
  'America/New_York',
  'America/Sao_Paulo',
  'Australia/Lord_Howe',
  'Asia/Kolkata',
  'Asia/Kathmandu',
  'Pacific/Chatham',
  'Pacific/Kiritimati',
  'Pacific/Pago_Pago',
];

describe('calendar periods', () => {
  it('tile time: each moment lies in exactly one period, which starts at local midnight of its first day', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: at('1990-01-01T00:00:00Z'), max: at('2100-01-01T00:00:00Z') }),
        fc.constantFrom(...ZONES),
        fc.constantFrom(...PERIODS),
        (t, timeZone, period) => {
          const calendar: Calendar = { period, timeZone };
          const i = periodIndex(t, calendar);
          const start = periodStart(i, calendar);
          const next = periodStart(i + 1, calendar);
          expect(start).toBeLessThanOrEqual(t);
          expect(t).toBeLessThan(next);
          expect(periodIndex(start, calendar)).toBe(i);
          expect(periodIndex(start - 1, calendar)).toBe(i - 1);
          expect(periodIndex(next - 1, calendar)).toBe(i);
          // Its first moment is the first day at 00:00, or the first moment after a jump over midnight.
          const first = local(start, timeZone);
          const firstDayOk =
            period === 'day' ||
            (period === 'month' && first.slice(8, 10) === '01') ||
            (period === 'week' && new Date(`${first.slice(0, 10)}T00:00:00Z`).getUTCDay() === 1);
          expect(firstDayOk).toBe(true);
          expect(localDay(start - 1, timeZone)).toBeLessThan(localDay(start, timeZone));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('end months on their last day, leap days included, in the zone', () => {
    const paris: Calendar = { period: 'month', timeZone: 'Europe/Paris' };
    // January ends at midnight in Paris: 23:00 UTC (winter, UTC+1).
    const feb = periodIndex(at('2027-02-01T00:00:00+01:00'), paris);
    expect(periodStart(feb, paris)).toBe(at('2027-01-31T23:00:00Z'));
    expect(periodIndex(at('2027-01-31T22:59:59.999Z'), paris)).toBe(feb - 1);
    // February 2028 has 29 days; the 29th belongs to it, March starts after it.
    const utc: Calendar = { period: 'month', timeZone: 'UTC' };
    const feb28 = periodIndex(at('2028-02-29T12:00:00Z'), utc);
    expect(periodIndex(at('2028-02-01T00:00:00Z'), utc)).toBe(feb28);
    expect(periodStart(feb28 + 1, utc) - periodStart(feb28, utc)).toBe(29 * 86_400_000);
    // August in Paris is summer time: it starts at 22:00 UTC on July 31st.
    expect(periodStart(periodIndex(at('2027-08-15T00:00:00Z'), paris), paris)).toBe(at('2027-07-31T22:00:00Z'));
  });

  it('give clock-change days their 23 or 25 hours, and start a day that has no midnight at its first moment', () => {
    const paris: Calendar = { period: 'day', timeZone: 'Europe/Paris' };
    const spring = periodIndex(at('2027-03-28T12:00:00Z'), paris);
    expect(periodStart(spring + 1, paris) - periodStart(spring, paris)).toBe(23 * 3_600_000);
    const autumn = periodIndex(at('2027-10-31T12:00:00Z'), paris);
    expect(periodStart(autumn + 1, paris) - periodStart(autumn, paris)).toBe(25 * 3_600_000);
    // Brazil's clocks jumped from 00:00 to 01:00 on 2018-11-04: that day began at 01:00 local (03:00 UTC).
    const saoPaulo: Calendar = { period: 'day', timeZone: 'America/Sao_Paulo' };
    const day = periodIndex(at('2018-11-04T12:00:00Z'), saoPaulo);
    expect(periodStart(day, saoPaulo)).toBe(at('2018-11-04T03:00:00Z'));
    expect(local(periodStart(day, saoPaulo), 'America/Sao_Paulo')).toBe('2018-11-04 01:00:00');
  });

  it('start ISO weeks on Monday', () => {
    const week: Calendar = { period: 'week', timeZone: 'UTC' };
    // 2027-01-04 is a Monday; Sunday the 3rd belongs to the week before.
    const i = periodIndex(at('2027-01-06T10:00:00Z'), week);
    expect(periodStart(i, week)).toBe(at('2027-01-04T00:00:00Z'));
    expect(periodIndex(at('2027-01-03T23:59:59.999Z'), week)).toBe(i - 1);
  });

  it('number a day or month alike in every zone, so moving a budget to another zone keeps its period', () => {
    for (const timeZone of ZONES) {
      const noonThere = (iso: string) =>
        periodStart(periodIndex(at(iso), { period: 'month', timeZone }), { period: 'month', timeZone });
      expect(periodIndex(noonThere('2027-06-15T12:00:00Z'), { period: 'month', timeZone })).toBe(
        periodIndex(at('2027-06-15T12:00:00Z'), { period: 'month', timeZone: 'UTC' }),
      );
    }
  });

  it('refuse a zone or period they do not know, with the fix', () => {
    expect(() => calendarBudget(100, 'month', 'Mars/Olympus')).toThrow(InvalidLimitError);
    expect(() => calendarBudget(100, 'month', 'Mars/Olympus')).toThrow(
      /'Mars\/Olympus' is not an IANA time zone.*'Europe\/Paris'/,
    );
    expect(() => calendarBudget(100, 'year' as 'month')).toThrow(/period must be one of day, week, month/);
    expect(() => calendarBudget(0, 'day')).toThrow(/calendarBudget limit must be a positive finite number/);
    expect(calendarBudget(5, 'day', 'europe/paris').calendar).toEqual({ period: 'day', timeZone: 'Europe/Paris' });
  });
});
