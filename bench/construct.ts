/**
 * Each Lambda bundle as the package ships it (built once by npm run build, minified, the AWS SDK
 * inside; the construct stages config.json beside it): its size,
 * and its init time measured by loading it in a fresh Node 22 process.
 */
import { statSync } from 'node:fs';
import { loadBundle, synthBundles } from '../test/support/bundles';
import { percentile, report } from './report';
import { size } from './smoke';

export async function benchConstruct(): Promise<void> {
  const bundles = synthBundles();
  for (const name of ['authorizer', 'proxy'] as const) {
    const times: number[] = [];
    for (let i = 0; i < size(7, 1); i++) times.push((await loadBundle(bundles[name])).ms);
    report(`construct.${name}.bundle_bytes`, statSync(bundles[name]).size, 'bytes');
    report(
      `construct.${name}.init_ms`,
      percentile(
        times.sort((a, b) => a - b),
        50,
      ),
      'ms (fresh Node 22 process, load + init, p50 of 7)',
    );
  }
}
