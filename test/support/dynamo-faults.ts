import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP proxy in front of DynamoDB Local that does what real DynamoDB does and Local does not
 * (docs/aws-fidelity.md): it speaks DynamoDB's JSON wire protocol, so the real SDK parses what it
 * injects into the real exception classes.
 *
 * - `conflict`: share of UpdateItem calls answered TransactionConflictException, and of
 *   TransactWriteItems calls answered TransactionCanceledException with a TransactionConflict
 *   reason (an item under another transaction). Nothing is written.
 * - `itemWritesPerSecond`: writes one item takes per second before the rest are throttled
 *   (ProvisionedThroughputExceededException; real DynamoDB allows 1,000 WCU per item per second);
 *   a throttled TransactWriteItems is cancelled instead, TransactionCanceledException with the
 *   reason ThrottlingError on the hot item, as on an on-demand table.
 * - `throttleTransactions`: share of TransactWriteItems calls cancelled that way regardless of rate.
 * - `dropAfterWrite`: share of writes forwarded (so they land) whose answer is then lost: the
 *   connection is cut, as when a network path fails after DynamoDB commits.
 * - `latencyMs`: added before every answer.
 *
 * Every call is recorded (operation, table, keys) for the IAM check.
 */
export interface DynamoFaults {
  conflict: number;
  /** Share of TransactWriteItems calls cancelled for throttling (reason ThrottlingError on the last item). */
  throttleTransactions: number;
  /** Share of BatchGetItem calls answered for their first key only, the rest as UnprocessedKeys. */
  unprocessedReads: number;
  itemWritesPerSecond: number;
  dropAfterWrite: number;
  latencyMs: number;
}

export interface RecordedCall {
  readonly service: 'dynamodb';
  readonly action: string;
  /** The IAM actions the call needs: itself, or for TransactWriteItems the action of each item. */
  readonly iamActions: readonly string[];
  readonly table: string;
  readonly userAgent: string;
  /** The items the call names (their keys, as JSON). */
  readonly keys: readonly string[];
  /** Capacity as DynamoDB prices it, filled in when the answer arrives (see `consumed`). */
  writeUnits: number;
  readUnits: number;
}

export interface DynamoFaultProxy {
  readonly endpoint: string;
  readonly faults: DynamoFaults;
  /**
   * The next calls are answered these errors, one each, in order (e.g. AccessDeniedException, as
   * DynamoDB answers a role whose new policy IAM has not propagated yet): nothing is written.
   */
  readonly refuse: string[];
  /** How many of each fault were injected. */
  readonly injected: { conflicts: number; throttles: number; drops: number; unprocessed: number };
  /** Calls received and not yet answered (or cut), now and at most since the last reset: how much overlapped. */
  /**
   * Calls in flight at once: `max` of all, `sources` of distinct callers (by user-agent, which a
   * test's processes make unique), so a test can prove that separate processes' calls met here.
   */
  readonly inFlight: { now: number; max: number; sources: number };
  readonly calls: RecordedCall[];
  reset(): void;
  stop(): Promise<void>;
}

const WRITES = new Set(['UpdateItem', 'PutItem', 'DeleteItem', 'TransactWriteItems']);
const DATA_PLANE = new Set([...WRITES, 'GetItem', 'BatchGetItem']);

/**
 * Capacity as DynamoDB bills it (DynamoDB Developer Guide, "Read/write capacity mode"): a write
 * takes one unit per KB of the item (the larger of before and after), a refused conditional write
 * too; a transaction takes two units per KB of each item; a strongly consistent read one unit per
 * 4 KB, an eventually consistent one half that. DynamoDB Local reports the size-based units of
 * plain calls, and one unit per item for a transaction, which is doubled here.
 */
function consumed(
  action: string,
  body: Record<string, unknown>,
  _status: number,
  payload: Buffer,
): { writeUnits: number; readUnits: number } {
  if (!DATA_PLANE.has(action)) return { writeUnits: 0, readUnits: 0 };
  let units = 0;
  try {
    const answer = JSON.parse(payload.toString('utf8')) as {
      ConsumedCapacity?: { CapacityUnits?: number } | { CapacityUnits?: number }[];
    };
    const reported = Array.isArray(answer.ConsumedCapacity)
      ? answer.ConsumedCapacity
      : answer.ConsumedCapacity
        ? [answer.ConsumedCapacity]
        : [];
    units = reported.reduce((a, c) => a + (c.CapacityUnits ?? 0), 0);
  } catch {
    units = 0;
  }
  if (action === 'TransactWriteItems') {
    // Local reports one unit for the whole transaction; AWS bills each item (under 1 KB here: one unit), doubled.
    const items = ((body.TransactItems as unknown[]) ?? []).length;
    return { writeUnits: 2 * Math.max(units, items), readUnits: 0 };
  }
  if (WRITES.has(action)) return { writeUnits: Math.max(units, 1), readUnits: 0 };
  if (action === 'BatchGetItem') {
    // Billed per item read (under 4 KB here: one unit strongly consistent, half otherwise).
    const tables = Object.values(
      (body.RequestItems as Record<string, { Keys: unknown[]; ConsistentRead?: boolean }>) ?? {},
    );
    const least = tables.reduce((a, t) => a + t.Keys.length * (t.ConsistentRead ? 1 : 0.5), 0);
    return { writeUnits: 0, readUnits: Math.max(units, least) };
  }
  return { writeUnits: 0, readUnits: body.ConsistentRead ? Math.max(units, 1) : Math.max(units, 0.5) };
}
const NONE: DynamoFaults = {
  conflict: 0,
  throttleTransactions: 0,
  unprocessedReads: 0,
  itemWritesPerSecond: Number.POSITIVE_INFINITY,
  dropAfterWrite: 0,
  latencyMs: 0,
};

/** A seeded generator, so a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function keysOf(action: string, body: Record<string, unknown>): { table: string; keys: string[] } {
  if (action === 'TransactWriteItems') {
    const items = (body.TransactItems as Record<string, { TableName: string; Key?: unknown; Item?: unknown }>[]) ?? [];
    const parts = items.map((it) => Object.values(it)[0]!);
    return { table: parts[0]?.TableName ?? '', keys: parts.map((p) => JSON.stringify(p.Key ?? p.Item)) };
  }
  if (action === 'BatchGetItem') {
    const [table, request] = Object.entries((body.RequestItems as Record<string, { Keys: unknown[] }>) ?? {})[0] ?? [];
    return { table: table ?? '', keys: (request?.Keys ?? []).map((k) => JSON.stringify(k)) };
  }
  return { table: String(body.TableName ?? ''), keys: [JSON.stringify(body.Key ?? body.Item ?? '')] };
}

export async function startDynamoFaultProxy(target: string, seed = 1): Promise<DynamoFaultProxy> {
  const next = random(seed);
  const { hostname, port } = new URL(target);
  const faults: DynamoFaults = { ...NONE };
  const injected = { conflicts: 0, throttles: 0, drops: 0, unprocessed: 0 };
  const calls: RecordedCall[] = [];
  const refuse: string[] = [];
  const writes = new Map<string, number[]>();
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const error = async (res: ServerResponse, type: string, message: string, extra: Record<string, unknown> = {}) => {
    await sleep(faults.latencyMs);
    const body = JSON.stringify({ __type: `com.amazonaws.dynamodb.v20120810#${type}`, message, ...extra });
    res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': `fault-${calls.length}` });
    res.end(body);
  };

  /** A TransactWriteItems cancelled for `code` on its last item, the others 'None', as DynamoDB answers it. */
  const cancel = (res: ServerResponse, keys: readonly string[], code: string, message: string) => {
    const reasons = keys.map((_k, i) => (i === keys.length - 1 ? { Code: code, Message: message } : { Code: 'None' }));
    const codes = reasons.map((r) => r.Code).join(', ');
    return error(
      res,
      'TransactionCanceledException',
      `Transaction cancelled, please refer cancellation reasons for specific reasons [${codes}]`,
      {
        CancellationReasons: reasons,
      },
    );
  };

  const throttled = (keys: string[]): boolean => {
    if (!Number.isFinite(faults.itemWritesPerSecond)) return false;
    const now = Date.now();
    let over = false;
    for (const key of keys) {
      const recent = (writes.get(key) ?? []).filter((t) => now - t < 1000);
      if (recent.length >= faults.itemWritesPerSecond) over = true;
      writes.set(key, recent);
    }
    if (!over) for (const key of keys) writes.get(key)!.push(now);
    return over;
  };

  const inFlight = { now: 0, max: 0, sources: 0 };
  const bySource = new Map<string, number>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const source = String(req.headers['user-agent'] ?? '');
    inFlight.now++;
    inFlight.max = Math.max(inFlight.max, inFlight.now);
    bySource.set(source, (bySource.get(source) ?? 0) + 1);
    inFlight.sources = Math.max(inFlight.sources, bySource.size);
    res.on('close', () => {
      inFlight.now--;
      const left = (bySource.get(source) ?? 1) - 1;
      if (left > 0) bySource.set(source, left);
      else bySource.delete(source);
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks);
      const action = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
      const body = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
      const { table, keys } = keysOf(action, body);
      // IAM authorizes a transaction item by item (PutItem, UpdateItem, ...): there is no action of its own.
      const TRANSACT: Record<string, string> = {
        Put: 'PutItem',
        Update: 'UpdateItem',
        Delete: 'DeleteItem',
        ConditionCheck: 'ConditionCheckItem',
      };
      const iamActions =
        action === 'TransactWriteItems'
          ? ((body.TransactItems as Record<string, unknown>[]) ?? []).map((it) => TRANSACT[Object.keys(it)[0]!]!)
          : [action];
      const call: RecordedCall = {
        service: 'dynamodb',
        action,
        iamActions: [...new Set(iamActions)].map((a) => `dynamodb:${a}`),
        table,
        userAgent: String(req.headers['user-agent'] ?? ''),
        keys,
        writeUnits: 0,
        readUnits: 0,
      };
      calls.push(call);
      const refusal = refuse.shift();
      if (refusal) return error(res, refusal, `refused by the fault proxy: ${action} (${refusal})`);
      if (WRITES.has(action)) {
        if (faults.conflict > 0 && next() < faults.conflict) {
          injected.conflicts++;
          if (action === 'TransactWriteItems')
            return cancel(res, keys, 'TransactionConflict', 'Transaction is ongoing for the item');
          return error(res, 'TransactionConflictException', 'Transaction is ongoing for the item');
        }
        const throttledNow = throttled(keys);
        if (
          action === 'TransactWriteItems' &&
          (throttledNow || (faults.throttleTransactions > 0 && next() < faults.throttleTransactions))
        ) {
          injected.throttles++;
          return cancel(
            res,
            keys,
            'ThrottlingError',
            'Throughput exceeds the current capacity of your table or index.',
          );
        }
        if (throttledNow) {
          injected.throttles++;
          return error(
            res,
            'ProvisionedThroughputExceededException',
            'The level of configured provisioned throughput for the table was exceeded.',
          );
        }
      }
      const drop = WRITES.has(action) && faults.dropAfterWrite > 0 && next() < faults.dropAfterWrite;
      // DynamoDB answers part of a BatchGetItem and returns the rest as UnprocessedKeys (throughput).
      let sent = body;
      let unprocessed: { table: string; request: Record<string, unknown>; keys: unknown[] } | undefined;
      if (action === 'BatchGetItem' && faults.unprocessedReads > 0 && next() < faults.unprocessedReads) {
        const [table, request] = Object.entries(body.RequestItems as Record<string, { Keys: unknown[] }>)[0]!;
        if (request.Keys.length > 1) {
          injected.unprocessed++;
          unprocessed = { table, request, keys: request.Keys.slice(1) };
          sent = { ...body, RequestItems: { [table]: { ...request, Keys: request.Keys.slice(0, 1) } } };
        }
      }
      // Ask DynamoDB Local what each call consumed (Local does not check the request's signature).
      const forward = DATA_PLANE.has(action)
        ? Buffer.from(JSON.stringify({ ...sent, ReturnConsumedCapacity: 'TOTAL' }))
        : raw;
      const upstream = request(
        {
          hostname,
          port: Number(port),
          method: req.method,
          path: req.url,
          headers: { ...req.headers, 'content-length': String(forward.length) },
        },
        async (answer) => {
          const parts: Buffer[] = [];
          answer.on('data', (c: Buffer) => parts.push(c));
          answer.on('end', async () => {
            await sleep(faults.latencyMs);
            if (drop) {
              injected.drops++;
              req.socket.destroy(); // the write landed; its answer never arrives
              return;
            }
            let payload = Buffer.concat(parts);
            Object.assign(call, consumed(action, sent, answer.statusCode ?? 500, payload));
            if (unprocessed && answer.statusCode === 200) {
              const answered = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
              answered.UnprocessedKeys = { [unprocessed.table]: { ...unprocessed.request, Keys: unprocessed.keys } };
              payload = Buffer.from(JSON.stringify(answered));
              // The checksum Local computed is of its own answer: drop it with the length it no longer has.
              delete answer.headers['x-amz-crc32'];
              answer.headers['content-length'] = String(payload.length);
            }
            res.writeHead(answer.statusCode ?? 500, answer.headers);
            res.end(payload);
          });
        },
      );
      upstream.on('error', () => res.destroy());
      upstream.end(forward);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${own}`,
    faults,
    refuse,
    injected,
    inFlight,
    calls,
    reset() {
      inFlight.max = inFlight.now;
      inFlight.sources = bySource.size;
      Object.assign(faults, NONE);
      refuse.length = 0;
      Object.assign(injected, { conflicts: 0, throttles: 0, drops: 0, unprocessed: 0 });
      writes.clear();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
