/**
 * The JSON examples in the reference (a tenant's overrides, a bucket written out) are what the
 * admin CLI and a cold start accept: each is run through the parser that reads that shape.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseLimit, parsePlan, parseSpecs } from '../../lib';

const PARSERS: Record<string, (json: unknown) => unknown> = {
  Overrides: (json) => parsePlan(json, 'overrides'),
  Plan: (json) => parsePlan(json, 'plan'),
  LimitSpec: (json) => parseSpecs([json], 'limits'),
  TokenBucketLimit: (json) => parseLimit(json, 'limit'),
  LeakyBucketLimit: (json) => parseLimit(json, 'limit'),
  SlidingWindowLimit: (json) => parseLimit(json, 'limit'),
};

const dir = join(process.cwd(), 'docs', 'reference');
const examples = readdirSync(dir, { recursive: true, encoding: 'utf8' })
  .filter((file) => file.endsWith('.md'))
  .sort()
  .flatMap((file) => {
    const text = readFileSync(join(dir, file), 'utf8');
    // typedoc gives each type its page, titled `# Interface: Plan`, `# Type Alias: Overrides`, ...
    const type = /^# [\w ]+: (\w+)/m.exec(text)?.[1] ?? '(none)';
    return [...text.matchAll(/```json\n([\s\S]*?)\n```/g)].map((m) => ({
      where: `${file}: ${type}`,
      type,
      json: m[1]!,
    }));
  });

describe('JSON examples in docs/reference', () => {
  it('there are some', () => expect(examples.length).toBeGreaterThan(0));
  it.each(examples)('$where is accepted by its parser', ({ type, json }) => {
    const parse = PARSERS[type];
    expect(parse, `no parser known for a JSON example of ${type}: add one to PARSERS`).toBeDefined();
    expect(() => parse!(JSON.parse(json))).not.toThrow();
  });
});
