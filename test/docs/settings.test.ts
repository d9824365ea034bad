/** docs/design.md's table of runtime settings says what lambda/runtime/settings.ts defines: names, variables, defaults, bounds. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHOICE_SETTINGS, FLAG_SETTINGS, NUMBER_SETTINGS } from '../../lambda/runtime/settings';

describe('the runtime settings table in docs/design.md', () => {
  it('has one row per setting, with its variable, default and bound', () => {
    const design = readFileSync(join(process.cwd(), 'docs', 'design.md'), 'utf8');
    const section = design.slice(design.indexOf('## Runtime settings'), design.indexOf('## Permissions'));
    const rows = [...section.matchAll(/^\| `(\w+)` \| `(\w+)` \| ([^|]+) \| ([^|]+) \|$/gm)].map((m) => [
      m[1],
      m[2],
      m[3]!.trim(),
      m[4]!.trim(),
    ]);
    const expected = [
      ...Object.entries(NUMBER_SETTINGS).map(([name, s]) => [name, s.env, String(s.default), String(s.max)]),
      ...Object.entries(CHOICE_SETTINGS).map(([name, s]) => [name, s.env, s.default, s.values.join(' or ')]),
      ...Object.entries(FLAG_SETTINGS).map(([name, s]) => [name, s.env, String(s.default), 'true or false']),
    ];
    expect(rows).toEqual(expected);
  });
});
