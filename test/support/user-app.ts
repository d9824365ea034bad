/**
 * A user's CDK app, made as a user makes one: `cdk init app --language typescript` with the aws-cdk
 * CLI this project pins, trimmed of its test runner (not needed to synthesise), the README's first
 * sample as its entry, this package's tarball installed. For the packaging test and the bench.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { readmeSample } from './readme';

const run = promisify(execFile);
const root = process.cwd();

/** The environment a user's shell has here: no AWS credentials, no npm script settings. */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' };
  for (const name of Object.keys(env))
    if (name.startsWith('AWS_') || name.startsWith('npm_') || name === 'LIMITER_CONFIG') delete env[name];
  return env;
}

export const inApp = (cwd: string, command: string, args: string[]) =>
  run(command, args, { cwd, env: userEnv(), maxBuffer: 64 * 1024 * 1024, timeout: 240_000 });

/** Packs this repository as npm publishes it (dist/ must be built) into `dir`; the tarball's path. */
export async function packInto(dir: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: root,
    maxBuffer: 16 * 1024 * 1024,
  });
  return join(dir, (JSON.parse(stdout) as { filename: string }[])[0]!.filename);
}

/**
 * `cdk init app` in `parent/name`, as CommonJS (the template's) or as an ES module app, with `sample`
 * (the README's first) as its entry; `dependencies` pins versions.
 */
export async function newUserApp(
  parent: string,
  name: string,
  type: 'commonjs' | 'module',
  dependencies: Record<string, string> = {},
  sample = readmeSample('ts', 0),
): Promise<string> {
  const dir = join(parent, name);
  mkdirSync(dir);
  await inApp(dir, join(root, 'node_modules', '.bin', 'cdk'), [
    'init',
    'app',
    '--language',
    'typescript',
    '--generate-only',
  ]);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    type?: string;
    scripts: Record<string, string>;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  Object.assign(pkg.dependencies, dependencies);
  for (const dev of Object.keys(pkg.devDependencies)) if (/jest|swc/.test(dev)) delete pkg.devDependencies[dev];
  delete pkg.scripts.test;
  pkg.type = type;
  writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  const tsconfig = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')) as {
    compilerOptions: { types?: string[] };
  };
  tsconfig.compilerOptions.types = ['node'];
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  rmSync(join(dir, 'test'), { recursive: true, force: true });
  rmSync(join(dir, 'jest.config.js'), { force: true });
  writeFileSync(join(dir, 'bin', `${name}.ts`), sample);
  return dir;
}

/** `npm install ../llm-rate-limiter-0.1.0.tgz`, the README's command, from the app's folder (`packages` first, if any). */
export const installTarball = (dir: string, tarball: string, ...packages: string[]) =>
  inApp(dir, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...packages, relative(dir, tarball)]);
export const synthApp = (dir: string) => inApp(dir, 'npx', ['cdk', 'synth', '--no-notices', '-q']);
