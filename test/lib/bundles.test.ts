import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { describe, expect, it } from 'vitest';
import { loadBundle, synthBundles } from '../support/bundles';

describe('the bundles the construct deploys', () => {
  it('start as Lambda would start them, with the configuration in config.json beside the handler ' +
    '(no LIMITER_CONFIG in the environment) and no AWS SDK but their own', async () => {
    const bundles = synthBundles();
    for (const name of ['authorizer', 'proxy', 'limits'] as const) {
      expect((await loadBundle(bundles[name])).handlerType).toBe('function');
    }
  }, 60_000);

  it("carry source maps of the project's own code only, which still map the handler's frames", () => {
    const bundles = synthBundles();
    for (const name of ['authorizer', 'proxy'] as const) {
      const payload = JSON.parse(readFileSync(`${bundles[name]}.map`, 'utf8')) as { sources: string[] };
      expect(payload.sources.filter((s) => s.includes('node_modules'))).toEqual([]);
      expect(payload.sources.some((s) => s.endsWith(`lambda/${name}/handler.ts`))).toBe(true);
      // A frame of the handler's own file resolves to it, line and all.
      const map = new SourceMap(payload as never);
      const code = readFileSync(bundles[name], 'utf8').split('\n');
      const own = code.flatMap((text, line) =>
        Array.from({ length: Math.ceil(text.length / 50) }, (_, i) => map.findEntry(line, i * 50)),
      );
      const sourceOf = (e: object) => (e as { originalSource?: string }).originalSource;
      expect(own.some((e) => sourceOf(e)?.endsWith(`lambda/${name}/handler.ts`))).toBe(true);
    }
  });
});
