/**
 * docs/benchmarks.md and the bench name the same figures: its whole-run table has one row for each
 * figure of bench/figures.ts (the list `npm run bench` checks its output against), and every
 * figure name it mentions anywhere is one the bench prints.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { FIGURES } from '../../bench/figures';

const docs = readFileSync(join(process.cwd(), 'docs', 'benchmarks.md'), 'utf8');
const names = Object.values(FIGURES).flat();
const prefixes = [...new Set(names.map((n) => n.split('.')[0]!))];

it('has one row in the whole-run table for each figure the bench prints', () => {
  const section = docs.slice(docs.indexOf('## Every figure'));
  const rows = [...section.matchAll(/^\| `([a-z0-9_.]+)` \|/gm)].map((m) => m[1]);
  expect(rows.sort()).toEqual([...names].sort());
});

it('names no figure the bench does not print', () => {
  const mentioned = [...docs.matchAll(/`([a-z0-9_]+(?:\.[a-z0-9_*]+)+)`/g)]
    .map((m) => m[1]!)
    .filter((n) => prefixes.includes(n.split('.')[0]!) && !/\.(ts|md|json)$/.test(n));
  const printed = (n: string) =>
    n.endsWith('.*') ? names.some((name) => name.startsWith(n.slice(0, -1))) : names.includes(n);
  expect(mentioned.filter((n) => !printed(n))).toEqual([]);
});
