/**
 * The README's "Common tasks", run as a person runs them: npm start in one process, then each
 * shell block in bash, in order, from the repository's root, with API and KEY set to what npm start
 * printed. Every block must succeed, and do what the README says it does.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NUMBER_SETTINGS } from '../../lambda/runtime/settings';

const root = process.cwd();
const run = promisify(execFile);

/** The sh blocks of the README's "Common tasks" section, but the ones a person types in the first terminal or fills in. */
function commonTasks(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Common tasks\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```/gm)]
    .map((m) => m[1]!)
    .filter((block) => !block.startsWith('# terminal 1') && !block.includes('sk-lrl-local-...'));
}

let npmStart: ChildProcess;
let env: Record<string, string>;
const dataDir = mkdtempSync(join(tmpdir(), 'llm-limiter-common-tasks-'));

beforeAll(async () => {
  // npm start, as the README's first terminal runs it (on a free port; the second terminal is told which).
  npmStart = spawn(process.execPath, ['--import', 'tsx', 'bin/local.ts', '--port', '0'], {
    cwd: root,
    env: { ...process.env, LLM_LIMITER_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let printed = '';
  await new Promise<void>((resolve, reject) => {
    npmStart.stdout!.on('data', (chunk: Buffer) => {
      printed += chunk.toString('utf8');
      if (printed.includes('Ctrl-C stops everything.')) resolve();
    });
    npmStart.on('exit', (code) => reject(new Error(`npm start exited ${code}: ${printed}`)));
  });
  const api = /API\s+(http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(printed)![1]!;
  const key = /key\s+(sk-lrl-local-\S+)/.exec(printed)![1]!;
  env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    API: api,
    KEY: key,
    LLM_LIMITER_DATA_DIR: dataDir,
  };
}, 60_000);

afterAll(async () => {
  const exited = new Promise((resolve) => npmStart.once('exit', resolve));
  npmStart.kill('SIGINT');
  await exited;
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(join(root, 'trial.json'), { force: true });
});

const bash = (script: string) =>
  run('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: root, env, timeout: 120_000 });
/** A chat completion as the README's blocks send it. */
const chat = (key: string) =>
  fetch(`${env.API}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
const cli = async (...args: string[]) =>
  (await run(process.execPath, ['--import', 'tsx', 'lib/cli/bin.ts', '--local', ...args], { cwd: root, env })).stdout;

describe("the README's common tasks, against npm start", () => {
  it('has the blocks this test expects', () => {
    expect(commonTasks()).toHaveLength(6);
  });

  it('adds a tenant and a key that works', async () => {
    const { stdout } = await bash(commonTasks()[0]!);
    const key = /\n(sk-lrl-\S+)\n/.exec(stdout)?.[1];
    expect(key, stdout).toBeDefined();
    expect(stdout).toContain('tenant acme created on plan demo');
    expect(stdout).toMatch(/user\s+user_requests_per_minute\s+requests\s+60\s+1 min\s+sliding window\s+plan/);
    const res = await chat(key!);
    expect(res.status).toBe(200);
  });

  it('changes the plan', async () => {
    expect((await bash(commonTasks()[1]!)).stdout).toContain('tenant acme is now on plan pro');
    expect(JSON.parse(await cli('tenants', 'show', 'acme', '--json'))).toMatchObject({ plan: 'pro' });
  });

  it('rolls a limit out in shadow mode, then enforces it', async () => {
    const block = commonTasks()[2]!;
    // The first half: in shadow.
    const lines = block.trimEnd().split('\n');
    await bash(lines.slice(0, 2).join('\n'));
    expect(await cli('tenants', 'show', 'acme')).toMatch(
      /user\s+user_requests_trial\s+requests\s+5\s+1 min\s+sliding window\s+override\s+shadow/,
    );
    await bash(block);
    const enforced = JSON.parse(await cli('tenants', 'show', 'acme', '--json')) as {
      limits: { code: string; shadow: boolean }[];
    };
    expect(enforced.limits.find((l) => l.code === 'user_requests_trial')).toMatchObject({ shadow: false });
  });

  it('shows a 429 and a Retry-After that grows while the client keeps going', async () => {
    const { stdout } = await bash(commonTasks()[3]!);
    const rows = stdout
      .trim()
      .split('\n')
      .map((l) => /^\s*(\d+) (\d{3}) retry-after=(\d*)$/.exec(l)!.slice(1));
    expect(rows[0]).toEqual(['60', '200', '']);
    const denied = rows.slice(1);
    expect(denied.length).toBeGreaterThanOrEqual(2);
    expect(denied.every(([, status]) => status === '429')).toBe(true);
    expect(Number(denied.at(-1)![2])).toBeGreaterThan(Number(denied[0]![2]));
  });

  it('shows usage: the CLI table and the JSON the page reads', async () => {
    const { stdout } = await bash(commonTasks()[4]!);
    expect(stdout).toMatch(/user\s+user_requests_per_minute\s+60\s+60\s+0\s/);
    expect(stdout).toContain('"code":"user_requests_per_minute"');
  });

  it('stops all traffic with the brake, and releases it', async () => {
    // A user of its own: the demo key is still limited by the 429 task.
    const key = /^(sk-lrl-\S+)$/m.exec(await cli('keys', 'create', '--tenant', 'demo', '--user', 'drill'))![1]!;
    const { stdout } = await bash(commonTasks()[5]!);
    expect(stdout).toContain('"code":"brake"');
    expect(stdout).toContain('released: traffic flows again');
    // Released, traffic flows again: once the functions' brake cache has expired (as 'on', within 5 s),
    // a request succeeds.
    await sleep(NUMBER_SETTINGS.brakeCacheTtlSeconds.default * 1000);
    const after = await chat(key);
    const body = await after.text();
    expect(after.status, body).toBe(200);
    expect(JSON.parse(body).choices[0].message.content).toBeTruthy();
  }, 30_000);

  it('serves the usage page it points at', async () => {
    const page = await fetch(`${env.API}/usage`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Usage and limits</title>');
  });
});
