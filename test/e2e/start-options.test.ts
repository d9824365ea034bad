/**
 * npm start as a person runs it: bad options and environment end in one line with the fix and
 * exit code 2, before anything starts (no DynamoDB Local, no stack trace); --help lists the
 * options and environment variables.
 */
import { execFile } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type LocalOptions, startLocal } from '../../local/start';
import { parseStartOptions } from '../../local/start-options';
import { startUpstreamStandIn } from '../../local/upstream-standin';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const start = (args: string[], env: Record<string, string> = {}) =>
  run(process.execPath, ['--import', 'tsx', 'bin/local.ts', ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    timeout: 30_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({
      code: err.code,
      stdout: err.stdout,
      stderr: err.stderr,
    }),
  );

describe('npm start options', () => {
  it.each<[string, string[], Record<string, string>, RegExp]>([
    [
      'a port that is not a number',
      ['--port', 'abc'],
      {},
      /^npm start: --port is "abc"; give a port number from 0 to 65535/,
    ],
    ['a PORT out of range', [], { PORT: '70000' }, /^npm start: PORT is "70000"; give a port number/],
    ['an unknown option', ['--prot', '1'], {}, /^npm start: Unknown option '--prot'.*Run npm start -- --help/],
    [
      'a short LOCAL_API_KEY',
      [],
      { LOCAL_API_KEY: 'short' },
      /^npm start: LOCAL_API_KEY must be 20-200 printable ASCII characters without spaces \(it has 5\)/,
    ],
    [
      'an upstream that is not a URL',
      [],
      { UPSTREAM_BASE_URL: 'localhost:11434' },
      /^npm start: UPSTREAM_BASE_URL is "localhost:11434"; give an absolute http\(s\) URL/,
    ],
    [
      'an upstream kind it does not know',
      ['--upstream', 'vertex'],
      {},
      /^npm start: --upstream is "vertex"; use openai, anthropic, bedrock$/,
    ],
    [
      'a URL with the Bedrock stand-in',
      ['--upstream', 'bedrock'],
      { UPSTREAM_BASE_URL: 'http://localhost:11434/v1' },
      /^npm start: UPSTREAM_BASE_URL names an HTTP upstream, but --upstream bedrock runs the Bedrock stand-in/,
    ],
  ])('refuses %s with one line and exit code 2', async (_name, args, env, message) => {
    const out = await start(args, env);
    expect(out.code).toBe(2);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
    expect(out.stderr.trim()).toMatch(message);
    expect(out.stderr).not.toMatch(/\n\s+at /);
    expect(out.stdout).not.toContain('Starting DynamoDB Local');
  });

  it('refuses a port in use on 127.0.0.1 with one line naming the fix, exit code 2, leaving nothing running', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const out = await start(['--port', String(port)]);
      expect(out.code).toBe(2);
      expect(out.stderr.trim()).toBe(
        `npm start: port ${port} is in use; stop what uses it or pick another with --port (0 picks a free one).`,
      );
      expect(out.stderr).not.toMatch(/\n\s+at /);
    } finally {
      taken.close();
    }
  });

  it('--help lists the options and environment variables, exit code 0', async () => {
    const out = await start(['--help']);
    expect(out.code).toBe(0);
    for (const word of [
      '--port',
      '--persist',
      '--upstream',
      'UPSTREAM_KIND',
      'LOCAL_API_KEY',
      'UPSTREAM_BASE_URL',
      'UPSTREAM_API_KEY',
      'Java 17',
    ])
      expect(out.stdout).toContain(word);
  });

  it('works with an upstream without keys (vLLM, Ollama): no Authorization header is sent to it', async () => {
    const parsed = parseStartOptions(['--port', '0'], { UPSTREAM_BASE_URL: 'http://127.0.0.1:1/v1' });
    expect(parsed).toEqual({ options: { port: 0, upstreamBaseUrl: 'http://127.0.0.1:1/v1', upstreamApiKey: '' } });
    const upstream = await startUpstreamStandIn({ words: ['ok'], usage: { prompt_tokens: 3, completion_tokens: 1 } });
    const local = await startLocal({
      ...(parsed as { options: LocalOptions }).options,
      upstreamBaseUrl: upstream.baseUrl,
      summary: () => {},
    });
    try {
      const res = await fetch(`${local.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${local.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status).toBe(200);
      expect(upstream.requests).toHaveLength(1);
      expect(upstream.requests[0]!.authorization).toBeUndefined();
    } finally {
      await local.stop();
      await upstream.stop();
    }
  }, 60_000);

  it("prints the endpoints the CLI's no-credentials hint names, and the CLI works with them as printed, without credentials", async () => {
    const home = mkdtempSync(join(tmpdir(), 'llm-limiter-start-'));
    const bare = { PATH: process.env.PATH ?? '', HOME: home, AWS_EC2_METADATA_DISABLED: 'true' };
    const child = spawn(process.execPath, ['--import', 'tsx', 'bin/local.ts', '--port', '0'], {
      cwd: root,
      env: { ...bare, LLM_LIMITER_DATA_DIR: home },
    });
    try {
      let banner = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          banner += chunk.toString('utf8');
          if (banner.includes('Ctrl-C stops everything.')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`npm start exited ${code}`)));
      });
      const line = /^ {2}CLI flags +(.*)$/m.exec(banner)?.[1];
      expect(line).toMatch(/--dynamodb-endpoint http:\/\/\S+ --ssm-endpoint http:\/\/\S+/);
      const cliBin = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
      const out = await run(process.execPath, [cliBin, 'brake', 'status', ...line!.trim().split(/\s+/)], {
        env: bare,
        timeout: 30_000,
      });
      expect(JSON.parse(out.stdout)).toMatchObject({ braked: false });
    } finally {
      child.kill('SIGINT');
    }
  }, 60_000);
});
