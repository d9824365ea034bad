/**
 * One "Lambda container" with leases for the lease tests: its own process, store and leases,
 * deciding one request after another on one key until `untilMs`, and on until it has been denied
 * `min-denials` times (a busy machine makes fewer decisions in the time: the limit, not the clock,
 * must be what stops it; at most a minute more). argv: endpoint table key limit-json start-at-ms
 * until-ms min-denials. Reports when each admitted call began and ended, and how many it made.
 */
import { LimitStore } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';

const [endpoint, tableName, key, limitJson, startAt, until, minDenials = '0'] = process.argv.slice(2);
const store = new LimitStore({ client: localClient(endpoint!), tableName: tableName!, leases: true, maxAttempts: 8 });
const limit = JSON.parse(limitJson!);
await new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(startAt) - Date.now())));
const admitted: [number, number][] = [];
let decisions = 0;
const enough = () => decisions - admitted.length >= Number(minDenials) || Date.now() > Number(until) + 60_000;
while (Date.now() < Number(until) || !enough()) {
  const from = Date.now();
  const d = await store.consume(key!, limit, 1);
  decisions++;
  if (d.allowed) admitted.push([from, Date.now()]);
}
process.stdout.write(JSON.stringify({ admitted, decisions }));
