/**
 * The bench cannot silently break: `npm run bench -- --smoke` runs every scenario at a tiny size and
 * must exit 0 with every figure of bench/figures.ts on stdout, one valid line each with a finite
 * value. Only that: a smoke run's values are not measurements, so none is compared with a target.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { FIGURES } from '../../bench/figures';

const run = promisify(execFile);

it('runs every bench scenario and prints each figure with a finite value', async () => {
  const { stdout } = await run(join('node_modules', '.bin', 'tsx'), ['bench/run.ts', '--smoke'], {
    maxBuffer: 64 * 1024 * 1024,
    timeout: 540_000,
  });
  const figures = stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { name: string; value: unknown });
  expect(figures.map((f) => f.name).sort()).toEqual(Object.values(FIGURES).flat().sort());
  for (const f of figures) expect(Number.isFinite(f.value), `${f.name}: ${f.value}`).toBe(true);
}, 600_000);
