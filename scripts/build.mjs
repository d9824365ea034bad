#!/usr/bin/env node
/**
 * Builds what the package ships (npm run build; prepack and pretest run it):
 *   dist/lambda/<function>/index.js   each Lambda handler, bundled once with the AWS SDK inside
 *   dist/index.js, dist/engine.js     the construct library and the engine subpath (CommonJS)
 *   dist/cli.js                       the admin CLI, self-contained
 *   dist/types/                       the .d.ts files (tsc)
 * `--lambda` builds the handlers only (what `cdk synth` of the example app needs).
 * A user's synth never bundles: the construct copies dist/lambda/<function> into its asset.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { trimSourceMap } from './trim-sourcemap.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const lambdaOnly = process.argv.includes('--lambda');
const FUNCTIONS = ['authorizer', 'proxy', 'limits', 'auto-brake', 'brake-mirror', 'config-publisher'];

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
  legalComments: 'none',
};
// import.meta.url has no CommonJS meaning: give it the file's own URL.
const importMetaUrl = {
  define: { 'import.meta.url': '__importMetaUrl' },
  banner: { js: "const __importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
};

rmSync(lambdaOnly ? join(dist, 'lambda') : dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
// Everything under dist/ is CommonJS, whatever the repository's own package.json says.
writeFileSync(join(dist, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);

await Promise.all(
  FUNCTIONS.map((name) =>
    build({
      ...common,
      entryPoints: [join(root, 'lambda', name, 'index.ts')],
      outfile: join(dist, 'lambda', name, 'index.js'),
      target: 'node22',
      minify: true,
      sourcemap: true,
      sourcesContent: false,
    }),
  ),
);
// The maps keep the project's own code only: the package stays under 5 MB (docs/benchmarks.md).
for (const name of FUNCTIONS) trimSourceMap(join(dist, 'lambda', name, 'index.js.map'));

if (!lambdaOnly) {
  const cdk = ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs'];
  await Promise.all([
    build({
      ...common,
      ...importMetaUrl,
      entryPoints: [join(root, 'lib', 'index.ts')],
      outfile: join(dist, 'index.js'),
      external: cdk,
    }),
    // The engine for use outside Lambda: the user brings the DynamoDB client (optional peer dependencies).
    build({
      ...common,
      entryPoints: [join(root, 'lib', 'engine.ts')],
      outfile: join(dist, 'engine.js'),
      external: ['@aws-sdk/*'],
    }),
    build({
      ...common,
      ...importMetaUrl,
      entryPoints: [join(root, 'lib', 'cli', 'bin.ts')],
      outfile: join(dist, 'cli.js'),
      banner: { js: `#!/usr/bin/env node\n${importMetaUrl.banner.js}` },
    }),
  ]);
  execFileSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')],
    { stdio: 'inherit' },
  );
}
