/**
 * The usage ledger: what each tenant's users used of each model each day (requests, input,
 * output, cached and reasoning tokens, dollars) and how often they were denied, by code. The
 * figures are the settled ones, so the ledger adds up to what the buckets were charged.
 *
 * Write path (docs/design.md, "Usage ledger"): each container keeps its own rows, one per tenant x
 * user x model x day, and adds what it settled to them with one UpdateItem per row. A row has one
 * writer, so a sequence number in the row makes each write idempotent: a write that landed but
 * whose answer was lost is resent with the same number and refused by its condition, never added
 * twice. By default a container writes at the end of every invocation that settled something, so
 * nothing settled is lost with the container; `flushSeconds` trades that for fewer writes (a
 * container then keeps up to that long of its usage in memory while it is busy).
 *
 * Read path: a tenant's rows sit in LEDGER_TABLE.shards partitions (by writer), sorted by day:
 * one Query per partition reads any range of days.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { localDay } from './calendar';
import { LEDGER_TABLE } from './constants';
import type { LimitSpec, Plan } from './plans';
import { ensureTableOf } from './store';

/** What a row counts. Dollars are kept in billionths (each request's cost rounded to the nearest), so sums are exact. */
export interface LedgerCounts {
  /** Requests admitted and settled (however they ended: finished, cut off, failed upstream). */
  readonly requests: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Of inputTokens, those the upstream reported as read from its prompt cache. */
  readonly cachedTokens: number;
  /** Of outputTokens, those the upstream reported as reasoning. */
  readonly reasoningTokens: number;
  readonly nanoUsd: number;
  /** Requests denied, by the 429's code. */
  readonly denied: Readonly<Record<string, number>>;
}

/** Whose usage a row holds, and when: `day` is YYYY-MM-DD in `timeZone`. */
export interface LedgerKey {
  readonly tenant: string;
  readonly user: string;
  readonly model: string;
  readonly day: string;
  readonly timeZone: string;
}

export interface LedgerRow extends LedgerKey, LedgerCounts {}

/** What one settled request adds. */
export interface SettledUse {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedTokens?: number;
  readonly reasoningTokens?: number;
  readonly microUsd: number;
}

export const EMPTY_COUNTS: LedgerCounts = {
  requests: 0,
  inputTokens: 0,
  outputTokens: 0,
  cachedTokens: 0,
  reasoningTokens: 0,
  nanoUsd: 0,
  denied: {},
};

/** The model of a row for denials that came before any model was read (the authorizer's). */
export const NO_MODEL = '-';

/** How long rows are kept after their day when nothing else is said: 13 months, a year's invoices and one to compare. */
export const DEFAULT_LEDGER_RETENTION_DAYS = 400;

const DAY_MS = 86_400_000;
const NUMBERS = ['requests', 'inputTokens', 'outputTokens', 'cachedTokens', 'reasoningTokens', 'nanoUsd'] as const;
const DENIED_PREFIX = 'denied_';
const WRITES_AT_ONCE = 16;

/**
 * The zone a tenant's ledger days are reckoned in: its plan's first calendar budget's, so that a
 * month of the ledger is the month its budget counts; UTC when the plan has none.
 */
export function ledgerZone(plan: Plan): string {
  const specs: LimitSpec[] = [
    ...(plan.tenant ?? []),
    ...(plan.user ?? []),
    ...Object.values(plan.endpoints ?? {}).flat(),
  ];
  for (const spec of specs)
    if (spec.limit.shape === 'sliding_window' && spec.limit.calendar) return spec.limit.calendar.timeZone;
  return 'UTC';
}

/** The local date of `t` (epoch ms) in `timeZone` as YYYY-MM-DD. */
export function ledgerDay(t: number, timeZone: string): string {
  return new Date(localDay(t, timeZone) * DAY_MS).toISOString().slice(0, 10);
}

export interface LedgerOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** Prefix of every partition key: several deployments (or test runs) can share one table. @default '' */
  readonly namespace?: string;
  /**
   * How long a busy container may keep settled usage before writing it: 0 writes at the end of
   * every invocation that recorded something. Denials alone wait up to `denialFlushSeconds`.
   * @default 0
   */
  readonly flushSeconds?: number;
  /** How long a busy container may keep denial counts (a client hammering a limit costs no write per 429). @default 60 */
  readonly denialFlushSeconds?: number;
  /** An invocation that started this long after the previous one ended finds the container idle: it writes what it has. @default 1000 */
  readonly busyGapMs?: number;
  /** Days a row is kept after its day (DynamoDB's TTL deletes it later). @default 400 */
  readonly retentionDays?: number;
  /** This container's id in its rows. @default a random one */
  readonly writer?: string;
  readonly now?: () => number;
  /** Deadline of one write (the answer is not waiting: the stream has ended, or the 429 is decided). @default 500 */
  readonly deadlineMs?: number;
  /** After a write fails, how long no write is tried (each invocation's end would otherwise wait for DynamoDB). @default 30000 */
  readonly backoffMs?: number;
  readonly log?: (entry: Record<string, unknown>) => void;
}

/** A row this container writes: what it holds in memory, what it is sending, and the row's sequence. */
interface OwnRow {
  readonly key: LedgerKey;
  readonly sk: string;
  pending: MutableCounts | undefined;
  /** When the oldest pending settled usage (not denials) was recorded. */
  usageSince: number | undefined;
  deniedSince: number | undefined;
  /** Sent and not known to have landed: resent as it was, with the same sequence number. */
  sending: { seq: number; counts: MutableCounts } | undefined;
}

type MutableCounts = { -readonly [K in (typeof NUMBERS)[number]]: number } & { denied: Record<string, number> };

const emptyCounts = (): MutableCounts => ({ ...EMPTY_COUNTS, denied: {} });

/** Adds `b` into `a`. */
export function addCounts(a: MutableCounts, b: LedgerCounts): MutableCounts {
  for (const n of NUMBERS) a[n] += b[n];
  for (const [code, n] of Object.entries(b.denied)) a.denied[code] = (a.denied[code] ?? 0) + n;
  return a;
}

/** Each container's rows of the ledger, and the writes that keep them (see the file's comment). */
export class Ledger {
  readonly writer: string;
  /** DynamoDB requests and rows written (benchmarks read these). */
  readonly stats = { calls: 0, failures: 0 };
  private readonly rows = new Map<string, OwnRow>();
  private readonly doc: DynamoDBDocumentClient;
  private readonly now: () => number;
  private queue: Promise<unknown> = Promise.resolve();
  private lastEnd: number | undefined;
  /** The last sequence number sent: starts at this writer's birth in ms, so it only grows, also across a writer id reused. */
  private seq: number;
  /** After a failed write, none is tried before this (epoch ms): a DynamoDB in trouble does not hold every invocation. */
  private backoffUntil = 0;

  constructor(private readonly options: LedgerOptions) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.now = options.now ?? Date.now;
    this.writer = options.writer ?? crypto.randomUUID().replaceAll('-', '').slice(0, 16);
    this.seq = this.now() * 1000;
  }

  /** Records a settled request of `tenant`'s `user` on `model`, on the day of `at` (epoch ms) in `timeZone`. */
  recordUse(who: Omit<LedgerKey, 'day'>, at: number, use: SettledUse): void {
    this.add(who, at, {
      requests: 1,
      inputTokens: use.inputTokens,
      outputTokens: use.outputTokens,
      cachedTokens: use.cachedTokens ?? 0,
      reasoningTokens: use.reasoningTokens ?? 0,
      nanoUsd: Math.round(use.microUsd * 1000),
      denied: {},
    });
  }

  /** Records a request denied with `code`. */
  recordDenial(who: Omit<LedgerKey, 'day'>, at: number, code: string): void {
    this.add(who, at, { ...EMPTY_COUNTS, denied: { [code]: 1 } });
  }

  private add(who: Omit<LedgerKey, 'day'>, at: number, counts: LedgerCounts): void {
    const key: LedgerKey = { ...who, day: ledgerDay(at, who.timeZone) };
    const sk = sortKey(key, this.writer);
    const pk = partitionKey(key.tenant, this.writer, this.options.namespace);
    const id = `${pk}\n${sk}`;
    let row = this.rows.get(id);
    if (!row) {
      row = { key, sk, pending: undefined, usageSince: undefined, deniedSince: undefined, sending: undefined };
      this.rows.set(id, row);
    }
    row.pending = addCounts(row.pending ?? emptyCounts(), counts);
    const now = this.now();
    if (counts.requests > 0) row.usageSince ??= now;
    else row.deniedSince ??= now;
  }

  /** Rows of `tenant` from day `from` to day `to` in this ledger's table (see readLedger). */
  read(tenant: string, from: string, to: string, abortSignal?: AbortSignal): Promise<LedgerRow[]> {
    return readLedger(
      this.options.client,
      this.options.tableName,
      tenant,
      from,
      to,
      this.options.namespace,
      abortSignal,
    );
  }

  /** Settled requests held in memory, not yet written (or not known to be). */
  unwritten(): LedgerCounts {
    const total = emptyCounts();
    for (const row of this.rows.values()) {
      if (row.pending) addCounts(total, row.pending);
      if (row.sending) addCounts(total, row.sending.counts);
    }
    return total;
  }

  /**
   * The end of an invocation that began at `startedAt`: writes the rows that are due (all of them
   * when the container was idle before it). Never throws: a row that cannot be written is kept
   * and tried again at the next invocation's end, and logged.
   */
  async endInvocation(startedAt: number): Promise<void> {
    const idle = this.lastEnd === undefined || startedAt - this.lastEnd >= (this.options.busyGapMs ?? 1_000);
    const now = this.now();
    this.lastEnd = now;
    if (now < this.backoffUntil) return;
    const usageMs = (this.options.flushSeconds ?? 0) * 1000;
    const deniedMs = (this.options.denialFlushSeconds ?? 60) * 1000;
    const due = (row: OwnRow) =>
      row.sending !== undefined ||
      (row.pending !== undefined &&
        (idle ||
          (row.usageSince !== undefined && now - row.usageSince >= usageMs) ||
          (row.deniedSince !== undefined && now - row.deniedSince >= deniedMs)));
    // One batch at most: an invocation waits for one round of writes, whatever is held.
    await this.write(due, WRITES_AT_ONCE);
  }

  /** Writes every row that holds something, whatever the policy (tests and benchmarks: a function never needs it). */
  async flush(): Promise<void> {
    this.backoffUntil = 0;
    await this.write((row) => row.pending !== undefined || row.sending !== undefined, Number.POSITIVE_INFINITY);
  }

  private write(due: (row: OwnRow) => boolean, most: number): Promise<void> {
    // One write of a row at a time: a row's sequence numbers go out in order.
    const run = this.queue.then(async () => {
      const rows = [...this.rows.values()].filter(due).slice(0, most);
      // A few at a time: a container that held many rows does not open a connection for each.
      for (let i = 0; i < rows.length && this.now() >= this.backoffUntil; i += WRITES_AT_ONCE)
        await Promise.all(rows.slice(i, i + WRITES_AT_ONCE).map((row) => this.writeRow(row)));
      // Rows of past days that hold nothing are forgotten: a container's memory stays the size of
      // its day. Yesterday is reckoned once per zone, not once per row.
      const yesterday = new Map<string, string>();
      const before = this.now() - DAY_MS;
      for (const [id, row] of this.rows) {
        if (row.pending || row.sending) continue;
        const zone = row.key.timeZone;
        if (!yesterday.has(zone)) yesterday.set(zone, ledgerDay(before, zone));
        if (row.key.day < yesterday.get(zone)!) this.rows.delete(id);
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async writeRow(row: OwnRow): Promise<void> {
    for (let round = 0; round < 2; round++) {
      if (!row.sending) {
        if (!row.pending) return;
        // One sequence for all of this writer's rows, never reused: a row forgotten and made again
        // (a past day's, or another zone's) starts above whatever it holds, so its first write lands.
        row.sending = { seq: ++this.seq, counts: row.pending };
        row.pending = undefined;
        row.usageSince = undefined;
        row.deniedSince = undefined;
      }
      const { seq, counts } = row.sending;
      try {
        this.stats.calls++;
        await this.doc.send(this.update(row, seq, counts), {
          abortSignal: AbortSignal.timeout(this.options.deadlineMs ?? 500),
        });
      } catch (err) {
        // Refused: this sequence number (or a later one) is in the row already. It landed before.
        if (!(err instanceof ConditionalCheckFailedException)) {
          this.stats.failures++;
          this.backoffUntil = this.now() + (this.options.backoffMs ?? 30_000);
          this.options.log?.({
            level: 'warn',
            outcome: 'ledger_write_failed',
            tenant: row.key.tenant,
            day: row.key.day,
            error: (err as Error).name,
            message: 'usage kept in memory; written at the end of an invocation after the back-off',
          });
          return;
        }
      }
      row.sending = undefined;
    }
  }

  private update(row: OwnRow, seq: number, counts: MutableCounts): UpdateCommand {
    const names: Record<string, string> = { '#seq': 'seq' };
    const values: Record<string, unknown> = { ':seq': seq };
    const set = ['#seq = :seq'];
    const add: string[] = [];
    const fields: [string, unknown][] = [
      ['tenant', row.key.tenant],
      ['user', row.key.user],
      ['model', row.key.model],
      ['day', row.key.day],
      ['timeZone', row.key.timeZone],
      ['writer', this.writer],
      [LEDGER_TABLE.ttlAttribute, expiry(row.key.day, this.options.retentionDays ?? DEFAULT_LEDGER_RETENTION_DAYS)],
    ];
    fields.forEach(([name, value], i) => {
      names[`#f${i}`] = name;
      values[`:f${i}`] = value;
      set.push(`#f${i} = :f${i}`);
    });
    const sums: [string, number][] = [
      ...NUMBERS.map((n) => [n, counts[n]] as [string, number]),
      ...Object.entries(counts.denied).map(([code, n]) => [DENIED_PREFIX + code, n] as [string, number]),
    ];
    sums.forEach(([name, n], i) => {
      names[`#n${i}`] = name;
      values[`:n${i}`] = n;
      add.push(`#n${i} :n${i}`);
    });
    return new UpdateCommand({
      TableName: this.options.tableName,
      Key: {
        [LEDGER_TABLE.partitionKey]: partitionKey(row.key.tenant, this.writer, this.options.namespace),
        [LEDGER_TABLE.sortKey]: row.sk,
      },
      UpdateExpression: `SET ${set.join(', ')} ADD ${add.join(', ')}`,
      ConditionExpression: 'attribute_not_exists(#seq) OR #seq < :seq',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }
}

/** The shard of a writer's rows: a hash of its id, so each container's rows stay in one partition per tenant. */
export function shardOfWriter(writer: string): number {
  let h = 0;
  for (let i = 0; i < writer.length; i++) h = (h * 31 + writer.charCodeAt(i)) >>> 0;
  return h % LEDGER_TABLE.shards;
}

const partitionKey = (tenant: string, writer: string, namespace = ''): string =>
  `${namespace}${tenant}#${shardOfWriter(writer)}`;

/**
 * Day first, so a Query reads a range of days; then the zone (a tenant whose zone changed keeps a
 * date's rows of each zone apart); user and model escaped, so no id can end in another's.
 */
const sortKey = (key: LedgerKey, writer: string): string =>
  `${key.day}#${key.timeZone}#${encodeURIComponent(key.user)}#${encodeURIComponent(key.model)}#${writer}`;

/** Epoch seconds at which DynamoDB's TTL may delete a row: `days` after its day ends. */
const expiry = (day: string, days: number): number =>
  Math.floor(Date.parse(`${day}T00:00:00Z`) / 1000) + (days + 2) * 86_400;

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/**
 * Every row of `tenant` from day `from` to day `to` (YYYY-MM-DD, both included, in the tenant's
 * ledger zone), read with one strongly consistent Query per partition (paged).
 */
export async function readLedger(
  client: DynamoDBClient,
  tableName: string,
  tenant: string,
  from: string,
  to: string,
  namespace = '',
  abortSignal?: AbortSignal,
): Promise<LedgerRow[]> {
  if (!DAY.test(from) || !DAY.test(to)) throw new Error(`days are YYYY-MM-DD: got ${from} and ${to}`);
  const doc = DynamoDBDocumentClient.from(client);
  const nowSeconds = Date.now() / 1000;
  const shards = await Promise.all(
    Array.from({ length: LEDGER_TABLE.shards }, async (_, shard) => {
      const rows: LedgerRow[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const page = await doc.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: '#pk = :pk AND #sk BETWEEN :from AND :to',
            ExpressionAttributeNames: { '#pk': LEDGER_TABLE.partitionKey, '#sk': LEDGER_TABLE.sortKey },
            ExpressionAttributeValues: {
              ':pk': `${namespace}${tenant}#${shard}`,
              ':from': from,
              ':to': `${to}#\uffff`,
            },
            ConsistentRead: true,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
          abortSignal ? { abortSignal } : {},
        );
        // Past their TTL, rows may linger for days before DynamoDB deletes them: they are gone.
        for (const item of page.Items ?? [])
          if (!(Number(item[LEDGER_TABLE.ttlAttribute]) <= nowSeconds)) rows.push(rowOf(item));
        start = page.LastEvaluatedKey;
      } while (start);
      return rows;
    }),
  );
  return shards.flat();
}

function rowOf(item: Record<string, unknown>): LedgerRow {
  const denied: Record<string, number> = {};
  for (const [name, value] of Object.entries(item))
    if (name.startsWith(DENIED_PREFIX)) denied[name.slice(DENIED_PREFIX.length)] = Number(value);
  const n = (name: string) => Number(item[name] ?? 0);
  return {
    tenant: String(item.tenant),
    user: String(item.user),
    model: String(item.model),
    day: String(item.day),
    timeZone: String(item.timeZone),
    requests: n('requests'),
    inputTokens: n('inputTokens'),
    outputTokens: n('outputTokens'),
    cachedTokens: n('cachedTokens'),
    reasoningTokens: n('reasoningTokens'),
    nanoUsd: n('nanoUsd'),
    denied,
  };
}

export type LedgerGrouping = 'user' | 'model' | 'day';

export interface LedgerLine extends LedgerCounts {
  /** The user, model or day of the line; absent for the total. */
  readonly group?: string;
}

/** Rows summed by `by` (sorted by it), or into one line. */
export function summarizeLedger(rows: readonly LedgerRow[], by?: LedgerGrouping): LedgerLine[] {
  const groups = new Map<string, MutableCounts>();
  for (const row of rows) {
    const group = by ? row[by] : '';
    groups.set(group, addCounts(groups.get(group) ?? emptyCounts(), row));
  }
  if (!by) return [groups.get('') ?? emptyCounts()];
  return [...groups.keys()].sort().map((group) => ({ group, ...groups.get(group)! }));
}

/** Creates the ledger table when it does not exist (npm start, tests, benchmarks; the construct makes the deployed one). */
export const ensureLedgerTable = (client: DynamoDBClient, tableName: string): Promise<void> =>
  ensureTableOf(client, tableName, LEDGER_TABLE);

/** A month's figures as people read them: dollars in dollars. */
export interface MonthFigures {
  readonly requests: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedTokens: number;
  readonly reasoningTokens: number;
  readonly usd: number;
  readonly denied: Readonly<Record<string, number>>;
}

/** What GET /v1/limits shows of the ledger: the tenant's month so far, and the caller's part of it. */
export interface MonthToDate {
  /** YYYY-MM in `timeZone`. */
  readonly month: string;
  readonly timeZone: string;
  readonly tenant: MonthFigures;
  readonly user: MonthFigures;
}

const figures = (c: LedgerCounts): MonthFigures => ({
  requests: c.requests,
  inputTokens: c.inputTokens,
  outputTokens: c.outputTokens,
  cachedTokens: c.cachedTokens,
  reasoningTokens: c.reasoningTokens,
  usd: c.nanoUsd / 1e9,
  denied: c.denied,
});

/**
 * The months so far of tenants as GET /v1/limits shows them: read once per tenant for `cacheMs`
 * (a tenant's month is one Query per partition, paged, and every user of it asks for the same
 * rows), within `deadlineMs` (past it the answer goes without: a tenant with very many rows reads
 * its month with the CLI).
 */
export class MonthToDateReader {
  private readonly cache = new Map<string, { at: number; month: string; timeZone: string; byUser: LedgerLine[] }>();

  constructor(
    private readonly ledger: Pick<Ledger, 'read'>,
    private readonly options: { cacheMs?: number; deadlineMs?: number; now?: () => number } = {},
  ) {}

  /** The month so far of `tenant` (and `user`'s part) in the tenant's ledger zone. */
  async read(plan: Plan, tenant: string, user: string): Promise<MonthToDate> {
    const now = (this.options.now ?? Date.now)();
    const timeZone = ledgerZone(plan);
    const month = ledgerDay(now, timeZone).slice(0, 7);
    let seen = this.cache.get(tenant);
    if (
      !seen ||
      now - seen.at >= (this.options.cacheMs ?? 30_000) ||
      seen.month !== month ||
      seen.timeZone !== timeZone
    ) {
      const rows = await this.ledger.read(
        tenant,
        `${month}-01`,
        ledgerDay(now, timeZone),
        AbortSignal.timeout(this.options.deadlineMs ?? 2_000),
      );
      seen = { at: now, month, timeZone, byUser: summarizeLedger(rows, 'user') };
      if (this.cache.size >= 1_000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(tenant, seen);
    }
    const mine = seen.byUser.find((l) => l.group === user);
    return {
      month,
      timeZone,
      tenant: figures(addAll(seen.byUser)),
      user: figures(mine ?? EMPTY_COUNTS),
    };
  }
}

const addAll = (lines: readonly LedgerCounts[]): LedgerCounts =>
  lines.reduce<MutableCounts>((a, l) => addCounts(a, l), emptyCounts());
