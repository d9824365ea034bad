/** Source reads on a laptop and in a review: no line past 150 characters (issue 25). */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const DIRS = ['lib', 'lambda', 'bin', 'local', 'bench', 'scripts', 'test'];

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : files(path);
    return /\.(ts|mjs)$/.test(e.name) ? [path] : [];
  });
}

describe('the sources', () => {
  it('hold no line over 150 characters', () => {
    const long = DIRS.flatMap((d) => files(join(ROOT, d))).flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) => (line.length > 150 ? [`${relative(ROOT, f)}:${i + 1} (${line.length})`] : [])),
    );
    expect(long).toEqual([]);
  });
});
