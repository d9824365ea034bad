/**
 * One "Lambda container" for the concurrency tests: its own process, its own store and cache,
 * firing all its decisions at once. argv: endpoint table key limit-json costs-json [start-at-ms]:
 * with a start time, it waits for it, so that processes that took different times to start
 * still fire together; it reports when it was busy, for the test to check they overlapped.
 */
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';

const [endpoint, tableName, key, limitJson, costsJson, startAt] = process.argv.slice(2);
const store = new LimitStore({
  client: localClient(endpoint!, 3, `consume-worker/${process.pid}`),
  tableName: tableName!,
  maxAttempts: 8,
});
const costs = JSON.parse(costsJson!) as number[];
if (startAt) await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(startAt) - Date.now())));
const busyFrom = Date.now();
// A decision that fails (an injected outage) is one the client was not admitted on.
const decisions = await Promise.allSettled(costs.map((cost) => store.consume(key!, JSON.parse(limitJson!), cost)));
const busyUntil = Date.now();
const admitted = decisions
  .map((d, i) => (d.status === 'fulfilled' && d.value.allowed ? costs[i]! : 0))
  .filter((c) => c > 0);
const failed = decisions.filter((d) => d.status === 'rejected').length;
process.stdout.write(
  JSON.stringify({
    admitted: admitted.length,
    admittedCost: admitted.reduce((a, b) => a + b, 0),
    failed,
    calls: store.stats.calls,
    conflicts: store.stats.transactionConflicts,
    busyFrom,
    busyUntil,
  }),
);
