/**
 * One "Lambda container" with leases for the lease tests: its own process, store and leases,
 * deciding one request after another on one key until `untilMs`. argv: endpoint table key
 * limit-json start-at-ms until-ms. Reports when each admitted call began and ended, and how many it made.
 */
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';

const [endpoint, tableName, key, limitJson, startAt, until] = process.argv.slice(2);
const store = new LimitStore({ client: localClient(endpoint!), tableName: tableName!, leases: true, maxAttempts: 8 });
const limit = JSON.parse(limitJson!);
await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(startAt) - Date.now())));
const admitted: [number, number][] = [];
let decisions = 0;
while (Date.now() < Number(until)) {
  const from = Date.now();
  const d = await store.consume(key!, limit, 1);
  decisions++;
  if (d.allowed) admitted.push([from, Date.now()]);
}
process.stdout.write(JSON.stringify({ admitted, decisions }));
