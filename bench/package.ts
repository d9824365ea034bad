/**
 * The package as a user meets it: tarball size, `npm install` of the tarball into an app made by
 * `cdk init` (warm npm cache), and that app's `cdk synth` (no bundler runs). dist/ must be built.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installTarball, newUserApp, packInto, synthApp } from '../test/support/user-app';
import { report } from './report';
import { SMOKE } from './smoke';

export async function benchPackage(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'llm-limiter-bench-package-'));
  try {
    const tarball = await packInto(work);
    report('package.tarball_bytes', statSync(tarball).size, 'bytes (target < 5 MB)');
    const dir = await newUserApp(work, 'benchapp', 'commonjs');
    // Fills the cache with the template's own packages (a smoke run measures this install instead).
    if (!SMOKE) await installTarball(dir, tarball);
    let started = performance.now();
    await installTarball(dir, tarball);
    report(
      'package.install_ms',
      performance.now() - started,
      'ms (npm install of the tarball into a cdk init app, warm cache)',
    );
    started = performance.now();
    await synthApp(dir);
    report('package.synth_ms', performance.now() - started, "ms (the user's cdk synth: tsc + the app, no bundling)");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
