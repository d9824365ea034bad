/** The example files the docs point to are valid: the CLI and the construct would take them as they are. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../lambda/engine/plans';
import { main } from '../../lib/cli/main';

const example = join(process.cwd(), 'docs/examples/limiter-config.json');

describe('docs/examples/limiter-config.json', () => {
  it('parses as a limiter configuration with plans, endpoints and a global limit', () => {
    const config = parseConfig(JSON.parse(readFileSync(example, 'utf8')));
    expect(Object.keys(config.plans)).toEqual(['team', 'enterprise']);
    expect(Object.keys(config.endpoints)).toEqual(['/v1/chat/completions', '/v1/embeddings']);
    expect(config.global?.shards).toBe(8);
  });

  it('lets the CLI refuse a plan it does not have, before writing anything (exit 2)', async () => {
    const err: string[] = [];
    const code = await main(
      [
        'tenants',
        'create',
        'acme',
        '--plan',
        'platinum',
        '--config',
        example,
        '--table',
        'never-written',
        '--dynamodb-endpoint',
        'http://127.0.0.1:9',
      ],
      { out: () => {}, err: (t) => err.push(t) },
    );
    expect(code).toBe(2);
    expect(err.join('\n')).toMatch(/platinum/);
  });
});
