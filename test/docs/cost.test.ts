/**
 * The README's cost tables are what bench/cost-tables.ts computes from the README's own sample,
 * synthesized: a change to what the construct creates (an alarm, a key, a function's memory)
 * changes the table, or this fails. `npx tsx bench/cost-tables.ts --write` rewrites them.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { between, costTables, MARKERS } from '../../bench/cost-tables';

it("shows what the README's sample costs idle and per streamed request, as computed from its template", async () => {
  const readme = readFileSync('README.md', 'utf8');
  const tables = await costTables();
  expect(between(readme, MARKERS.idle)).toBe(tables.idle);
  expect(between(readme, MARKERS.request)).toBe(tables.request);
}, 120_000);
