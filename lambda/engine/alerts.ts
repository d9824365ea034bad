/**
 * Budget alerts: a calendar budget (limits.ts, calendarBudget) says when its spend reaches each of
 * its thresholds (50, 80 and 100 percent by default), once per period each, however many
 * containers see the line crossed at once.
 *
 * Once: the container that sees a threshold reached claims it with one conditional put
 * (`a#<item>#<bucket>#<period>#<threshold>`, attribute_not_exists), and only the one whose put
 * creates the item publishes the alert. A container remembers what it claimed or saw claimed, so
 * the write is made once per container and period at most. Judged at admission, on what is spent
 * and reserved (and leased, which `remaining` counts as spent): an alert can come a little early,
 * never late.
 */
import { type Calendar, periodIndex, periodStart } from './calendar';
import type { LimitOutcome } from './contract';
import type { Layer } from './plans';

/** The alert event's source and detail-type (an EventBridge rule matches on them). */
export const ALERT_SOURCE = 'llm-rate-limiter';
export const ALERT_DETAIL_TYPE = 'Budget threshold reached';

/** A budget's thresholds when none are given, in percent of its limit. */
export const DEFAULT_ALERT_THRESHOLDS: readonly number[] = [50, 80, 100];

/** What an alert says (the EventBridge event's detail): see docs/design.md, "Budget alerts". */
export interface BudgetAlert {
  readonly tenant: string;
  /** The user, for a budget of the user layer. */
  readonly user?: string;
  readonly layer: Layer;
  /** The endpoint, for a budget of the endpoint layer. */
  readonly route?: string;
  /** The budget's code, as in 429s: tenant_usd_per_calendar_month. */
  readonly budget: string;
  readonly unit: 'requests' | 'tokens' | 'usd';
  readonly period: {
    readonly period: Calendar['period'];
    readonly timeZone: string;
    /** ISO times of the period's first moment and the next period's. */
    readonly start: string;
    readonly end: string;
  };
  /** Spent (and reserved) this period when the threshold was seen reached, in `unit` (usd in dollars). */
  readonly spent: number;
  readonly limit: number;
  /** Percent of the limit. */
  readonly threshold: number;
}

/** Where alerts go (the runtime's EventBridge publisher, a test's list). */
export interface AlertSink {
  publish(alert: BudgetAlert): Promise<void>;
}

/** A threshold a decision found reached, with the key that claims it. */
export interface Crossing {
  readonly claim: string;
  readonly expiresAtMs: number;
  readonly alert: BudgetAlert;
}

/**
 * The thresholds an admission found reached on the calendar budgets of one layer's item.
 * `itemKey` names the item, `outcomes` are that layer's limits as decided.
 */
export function crossings(
  itemKey: string,
  outcomes: readonly LimitOutcome[],
  who: { tenant: string; user?: string; route?: string },
  nowMs: number,
): Crossing[] {
  const out: Crossing[] = [];
  for (const o of outcomes) {
    const limit = o.spec.limit;
    if (limit.shape !== 'sliding_window' || !limit.calendar || !o.decision.allowed) continue;
    const thresholds = o.spec.alertAt ?? DEFAULT_ALERT_THRESHOLDS;
    const used = o.decision.limit - o.decision.remaining;
    const index = periodIndex(nowMs, limit.calendar);
    const start = periodStart(index, limit.calendar);
    const end = periodStart(index + 1, limit.calendar);
    const shown = (n: number) => (o.spec.counts === 'usd' ? n / 1_000_000 : n);
    for (const threshold of thresholds) {
      if (used * 100 < threshold * o.decision.limit) continue;
      out.push({
        claim: `${itemKey}#${o.code}#${index}#${threshold}`,
        expiresAtMs: end,
        alert: {
          tenant: who.tenant,
          ...(o.layer === 'user' && who.user !== undefined ? { user: who.user } : {}),
          layer: o.layer,
          ...(o.layer === 'endpoint' && who.route ? { route: who.route } : {}),
          budget: o.code,
          unit: o.spec.counts,
          period: {
            ...limit.calendar,
            start: new Date(start).toISOString(),
            end: new Date(end).toISOString(),
          },
          spent: shown(used),
          limit: shown(o.decision.limit),
          threshold,
        },
      });
    }
  }
  return out;
}
