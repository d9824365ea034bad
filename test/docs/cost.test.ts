/**
 * docs/cost.md's tables (and the README's totals) are what bench/cost-tables.ts computes from the README's own sample,
 * synthesized: a change to what the construct creates (an alarm, a key, a function's memory)
 * changes the table, or this fails. `npx tsx bench/cost-tables.ts --write` rewrites them.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { between, costTables, MARKERS } from '../../bench/cost-tables';

it("shows what the README's sample costs idle and per streamed request, as computed from its template", async () => {
  const tables = await costTables();
  const cost = readFileSync('docs/cost.md', 'utf8');
  expect(between(cost, MARKERS.idle)).toBe(tables.idle);
  expect(between(cost, MARKERS.request)).toBe(tables.request);
  // The README states the totals of both tables.
  const readme = readFileSync('README.md', 'utf8');
  const totals = [tables.idle, tables.request].flatMap((t) =>
    [...t.matchAll(/\*\*(\$[\d,.]+)\*\*/g)].map((m) => m[1]!),
  );
  expect(totals).toHaveLength(3);
  for (const total of totals) expect(readme).toContain(`**${total}`);
}, 120_000);
