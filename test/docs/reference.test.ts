/**
 * docs/reference is what `npm run docs` makes of the TSDoc as it is now: a prop documented or changed
 * in the source without regenerating fails here, and so does a public name left without a meaning.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFERENCE_DIR, writeReference } from '../../scripts/reference-docs';

const read = (dir: string, file: string) => (existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8') : '');

describe('docs/reference', () => {
  let generated: string;
  let gaps: string[];
  beforeAll(() => {
    generated = mkdtempSync(join(tmpdir(), 'reference-'));
    gaps = writeReference(generated);
  }, 120_000);
  afterAll(() => rmSync(generated, { recursive: true, force: true }));

  it('is what npm run docs generates from the code', () => {
    const files = [...new Set([...readdirSync(REFERENCE_DIR), ...readdirSync(generated)])].sort();
    const stale = files.filter((f) => read(REFERENCE_DIR, f) !== read(generated, f));
    expect(
      stale,
      `docs/reference/ differs from the TSDoc in ${stale.join(', ')}: run \`npm run docs\` and commit it`,
    ).toEqual([]);
  });

  it('gives every exported name and member a meaning, every optional prop its @default, every non-trivial prop an @example', () => {
    expect(gaps, 'fill these in the TSDoc, then run `npm run docs`').toEqual([]);
  });
});
