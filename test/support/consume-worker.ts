/**
 * One "Lambda container" for the concurrency tests: its own process, its own store and cache,
 * firing all its decisions at once. argv: endpoint table key limit-json costs-json.
 */
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../lambda/local/dynamodb-local';

const [endpoint, tableName, key, limitJson, costsJson] = process.argv.slice(2);
const store = new LimitStore({ client: localClient(endpoint!), tableName: tableName!, maxAttempts: 8 });
const costs = JSON.parse(costsJson!) as number[];
// A decision that fails (an injected outage) is one the client was not admitted on.
const decisions = await Promise.allSettled(costs.map((cost) => store.consume(key!, JSON.parse(limitJson!), cost)));
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
  }),
);
