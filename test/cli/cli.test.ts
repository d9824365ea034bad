import { execFile, spawnSync } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Directory, hashKey } from '../../lambda/runtime/directory';
import { parseBrake } from '../../lambda/runtime/brake';
import { Limiter } from '../../lambda/engine/limiter';
import { requestsPerMinute, tokensPerDay, usdPerDay, usdPerMonth } from '../../lambda/engine/plans';
import { publishConfig } from '../../lambda/engine/published-config';
import { ensureTable, LimitStore } from '../../lambda/engine/store';
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { main } from '../../lib/cli/main';
import { dynamoEndpoint, ledgerTableName, tableName, testStore, uniqueKey } from '../support/dynamo';
import { Ledger } from '../../lambda/engine/ledger';
import { localClient } from '../../local/dynamodb-local';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { parseConfig } from '../../lambda/engine/plans';

const dir = mkdtempSync(join(tmpdir(), 'llm-limiter-cli-'));
const rawConfig = {
  plans: {
    team: { tenant: [tokensPerDay(1000)], user: [requestsPerMinute(5)] },
    gold: { tenant: [tokensPerDay(5000)] },
  },
  endpoints: {
    '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
  },
};
const configFile = join(dir, 'config.json');
writeFileSync(configFile, JSON.stringify(rawConfig));

let ssm: SsmLocal;
beforeAll(async () => {
  ssm = await startSsmLocal();
});
afterAll(() => ssm.stop());

/** The CLI against the test table, with the configuration file. */
const cli = (...args: string[]) => cliWithout(args, ['--table', tableName(), '--config', configFile]);

/** The CLI with only the endpoints added: the test gives the table and the configuration (or not). */
async function cliWithout(args: string[], targets: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    [
      ...args,
      ...targets,
      '--brake-parameter',
      '/cli/brake',
      '--dynamodb-endpoint',
      dynamoEndpoint(),
      '--ssm-endpoint',
      ssm.endpoint,
      '--region',
      'us-east-1',
    ],
    { out: (t) => out.push(t), err: (t) => err.push(t) },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

process.env.AWS_ACCESS_KEY_ID ??= 'local';
process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
const directory = () => new Directory({ client: localClient(dynamoEndpoint()), tableName: tableName(), cacheMs: 0 });

describe('tenants', () => {
  it('creates, shows, re-plans and overrides a tenant; refuses duplicates and unknown plans', async () => {
    const t = uniqueKey('tenant');
    expect(await cli('tenants', 'create', t, '--plan', 'team')).toMatchObject({
      code: 0,
      out: `tenant ${t} created on plan team`,
    });
    expect(await cli('tenants', 'create', t, '--plan', 'team')).toMatchObject({
      code: 2,
      err: expect.stringContaining('already exists'),
    });
    expect(JSON.parse((await cli('tenants', 'show', t, '--json')).out)).toMatchObject({
      tenant: t,
      plan: 'team',
      overrides: null,
    });
    expect(await cli('tenants', 'set-plan', t, 'platinum')).toMatchObject({
      code: 2,
      err: expect.stringContaining("plan 'platinum' is not configured"),
    });
    expect((await cli('tenants', 'set-plan', t, 'gold')).code).toBe(0);
    expect((await directory().tenant(t))?.plan).toBe('gold');

    const bad = join(dir, 'bad.json');
    writeFileSync(
      bad,
      JSON.stringify({
        user: [{ counts: 'requests', limit: { shape: 'token_bucket', capacity: -1, refillPerSecond: 1 } }],
      }),
    );
    expect(await cli('tenants', 'set-overrides', t, '--file', bad)).toMatchObject({
      code: 2,
      err: expect.stringContaining('capacity must be a positive finite number'),
    });
    expect(JSON.parse((await cli('tenants', 'show', t, '--json')).out).overrides).toBeNull();
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ user: [requestsPerMinute(50)] }));
    expect((await cli('tenants', 'set-overrides', t, '--file', good)).code).toBe(0);
    expect((await directory().tenant(t))?.overrides?.user?.[0]?.limit).toMatchObject({
      shape: 'sliding_window',
      limit: 50,
    });
    expect((await cli('tenants', 'set-overrides', t, '--clear')).code).toBe(0);
    expect((await directory().tenant(t))?.overrides).toBeUndefined();
  });

  it('writes nothing for a tenant with a bad id or an unknown plan', async () => {
    expect(await cli('tenants', 'create', 'a:b', '--plan', 'team')).toMatchObject({
      code: 2,
      err: expect.stringContaining("tenant 'a:b' is not valid"),
    });
    const t = uniqueKey('tenant');
    expect((await cli('tenants', 'create', t, '--plan', 'nope')).code).toBe(2);
    expect((await cli('tenants', 'show', t)).code).toBe(2);
  });
});

describe('overrides', () => {
  it('refuses a field a plan does not have, naming it, and writes nothing (exit 2)', async () => {
    const t = uniqueKey('tenant');
    await cli('tenants', 'create', t, '--plan', 'team');
    const file = join(dir, 'bad-overrides.json');
    writeFileSync(file, JSON.stringify({ users: [] }));
    expect(await cli('tenants', 'set-overrides', t, '--file', file)).toMatchObject({
      code: 2,
      err: expect.stringContaining('overrides.users: unknown field: use tenant, user, endpoints, outputReservation'),
    });
    expect(JSON.parse((await cli('tenants', 'show', t, '--json')).out)).toMatchObject({ overrides: null });
  });
});

describe('keys', () => {
  it('creates a key that works, shows it once, lists it by id, and revokes it', async () => {
    const t = uniqueKey('tenant');
    await cli('tenants', 'create', t, '--plan', 'team');
    const created = await cli('keys', 'create', '--tenant', t, '--user', 'ann');
    expect(created.code).toBe(0);
    const key = created.out.split('\n').at(-1)!;
    expect(key).toMatch(/^sk-lrl-[A-Za-z0-9_-]{43}$/);
    expect(await directory().key(hashKey(key))).toMatchObject({ tenant: t, user: 'ann', status: 'active' });
    const listed = JSON.parse((await cli('keys', 'list', '--tenant', t)).out) as {
      id: string;
      user: string;
      status: string;
    }[];
    expect(listed).toEqual([expect.objectContaining({ id: hashKey(key).slice(0, 12), user: 'ann', status: 'active' })]);
    expect(JSON.stringify(listed)).not.toContain(key);
    expect((await cli('keys', 'revoke', listed[0]!.id)).code).toBe(0);
    expect((await directory().key(hashKey(key)))?.status).toBe('revoked');
  });

  it('refuses a key for a tenant that does not exist, writing nothing', async () => {
    const t = uniqueKey('tenant');
    expect(await cli('keys', 'create', '--tenant', t, '--user', 'ann')).toMatchObject({
      code: 2,
      err: expect.stringContaining('does not exist'),
    });
    expect(JSON.parse((await cli('keys', 'list', '--tenant', t)).out)).toEqual([]);
  });

  it('says what is wrong with a revoke it cannot do', async () => {
    expect(await cli('keys', 'revoke', 'not-an-id!')).toMatchObject({ code: 2 });
    expect(await cli('keys', 'revoke', 'ffffffffffffffff')).toMatchObject({
      code: 2,
      err: expect.stringContaining('no key matches'),
    });
  });
});

describe('brake', () => {
  it('turns the brake on with a reason and an end, reports it, and releases it', async () => {
    expect((await cli('brake', 'on', '--for', '30 m', '--reason', 'provider outage')).code).toBe(0);
    const state = parseBrake(ssm.parameters.get('/cli/brake')!.value)!;
    expect(state).toMatchObject({ enabled: true, reason: 'provider outage' });
    expect(state.until! - Date.now()).toBeGreaterThan(29 * 60_000);
    expect(JSON.parse((await cli('brake', 'status')).out.split('\nbraked')[0]!)).toMatchObject({
      braked: true,
      reason: 'provider outage',
    });
    expect((await cli('brake', 'off')).code).toBe(0);
    expect(JSON.parse((await cli('brake', 'status')).out)).toMatchObject({ braked: false, value: 'off' });
    expect(await cli('brake', 'on', '--for', 'banana')).toMatchObject({
      code: 2,
      err: expect.stringContaining("--for 'banana' is not a duration"),
    });
  });

  it('takes compound durations: --for 2h30m', async () => {
    expect((await cli('brake', 'on', '--for', '2h30m')).code).toBe(0);
    const until = parseBrake(ssm.parameters.get('/cli/brake')!.value)!.until!;
    expect(Math.round((until - Date.now()) / 60_000)).toBe(150);
    expect((await cli('brake', 'off')).code).toBe(0);
  });
});

describe('usage', () => {
  it("shows a tenant's and a user's remaining per limit", async () => {
    const t = uniqueKey('tenant');
    await cli('tenants', 'create', t, '--plan', 'team');
    const limiter = new Limiter({
      store: testStore(),
      config: parseConfig(JSON.parse(JSON.stringify(rawConfig))),
      log: () => {},
    });
    await limiter.admit({ tenant: t, user: 'ann' }, { id: t, plan: 'team' }, '/v1/chat/completions');
    const usage = JSON.parse((await cli('usage', '--tenant', t, '--user', 'ann', '--json')).out);
    expect(usage).toMatchObject({ tenant: t, user: 'ann', plan: 'team' });
    expect(usage.limits).toEqual([
      expect.objectContaining({ code: 'tenant_tokens_per_day', limit: 1000, remaining: 1000 }),
      expect.objectContaining({ code: 'user_requests_per_minute', limit: 5, remaining: 4, windowSeconds: 60 }),
    ]);
  });
});

describe('usage --from --to: the usage ledger', () => {
  const ledgerCli = (...args: string[]) =>
    cliWithout(args, ['--table', tableName(), '--ledger-table', ledgerTableName()]);
  let t: string;
  beforeAll(async () => {
    t = uniqueKey('tenant');
    const ledger = new Ledger({ client: localClient(dynamoEndpoint()), tableName: ledgerTableName() });
    const at = (day: string) => Date.parse(`${day}T10:00:00Z`);
    const who = (user: string, model: string) => ({ tenant: t, user, model, timeZone: 'UTC' });
    ledger.recordUse(who('ann', 'gpt-4o-mini'), at('2026-11-30'), { inputTokens: 1_000, outputTokens: 1, microUsd: 1 });
    ledger.recordUse(who('ann', 'gpt-4o-mini'), at('2026-12-01'), { inputTokens: 100, outputTokens: 50, microUsd: 45 });
    ledger.recordUse(who('bob', 'gpt-4o'), at('2026-12-02'), { inputTokens: 10, outputTokens: 5, microUsd: 75.5 });
    ledger.recordDenial(who('bob', '-'), at('2026-12-02'), 'user_requests_per_minute');
    await ledger.flush();
  });

  it('prints a table by user, with the total, over the days asked for only', async () => {
    const shown = await ledgerCli('usage', '--tenant', t, '--from', '2026-12-01', '--to', '2026-12-31', '--by', 'user');
    expect(shown.err).toBe('');
    expect(shown.code).toBe(0);
    const rows = shown.out
      .split('\n')
      .slice(2)
      .map((line) => line.split(/\s{2,}/));
    expect(rows).toEqual([
      [
        'user',
        'requests',
        'input_tokens',
        'output_tokens',
        'cached_tokens',
        'reasoning_tokens',
        'usd',
        'denied_user_requests_per_minute',
      ],
      ['ann', '1', '100', '50', '0', '0', '0.000045000', '0'],
      ['bob', '1', '10', '5', '0', '0', '0.000075500', '1'],
      ['(all of them)', '2', '110', '55', '0', '0', '0.000120500', '1'],
    ]);
    expect(shown.out.split('\n')[0]).toBe(`tenant ${t}, 2026-12-01 to 2026-12-31 (UTC)`);
  });

  it('gives JSON with exact dollars, by model or day', async () => {
    const json = JSON.parse(
      (await ledgerCli('usage', '--tenant', t, '--from', '2026-11-01', '--to', '2026-12-31', '--by', 'model', '--json'))
        .out,
    );
    expect(
      json.lines.map((l: { group: string; requests: number; usd: string }) => [l.group, l.requests, l.usd]),
    ).toEqual([
      ['-', 0, '0.000000000'],
      ['gpt-4o', 1, '0.000075500'],
      ['gpt-4o-mini', 2, '0.000046000'],
    ]);
    expect(json.total).toMatchObject({ requests: 3, inputTokens: 1_110, usd: '0.000121500' });
    const csv = (
      await ledgerCli(
        'usage',
        '--tenant',
        t,
        '--from',
        '2026-11-01',
        '--to',
        '2026-12-31',
        '--by',
        'day',
        '--format',
        'csv',
      )
    ).out;
    expect(csv.split('\n').map((l) => l.split(',').slice(0, 2))).toEqual([
      ['day', 'requests'],
      ['2026-11-30', '1'],
      ['2026-12-01', '1'],
      ['2026-12-02', '1'],
    ]);
  });

  it.each([
    [['--from', '2026-12-01'], /missing --to/],
    [['--from', '2026-13-01', '--to', '2026-12-31'], /--from 2026-13-01: give a day as YYYY-MM-DD/],
    [['--from', '2026-12-31', '--to', '2026-12-01'], /--to 2026-12-01 is before --from 2026-12-31/],
    [['--from', '2026-12-01', '--to', '2026-12-31', '--by', 'week'], /--by week: give user, model or day/],
    [['--from', '2026-12-01', '--to', '2026-12-31', '--format', 'xml'], /--format xml: give table, csv or json/],
  ])('refuses %j with one line naming the fix (exit 2)', async (args, message) => {
    const shown = await ledgerCli('usage', '--tenant', 't', ...args);
    expect(shown.code).toBe(2);
    expect(shown.err).toMatch(message);
  });

  it("gives one user's usage with --user, and needs no limits table", async () => {
    const shown = await cliWithout(
      ['usage', '--tenant', t, '--user', 'bob', '--from', '2026-11-01', '--to', '2026-12-31', '--json'],
      ['--ledger-table', ledgerTableName()],
    );
    expect(shown.err).toBe('');
    expect(JSON.parse(shown.out)).toMatchObject({
      user: 'bob',
      total: { requests: 1, inputTokens: 10, usd: '0.000075500', denied: { user_requests_per_minute: 1 } },
    });
  });

  it('asks for the ledger table when it cannot find one (exit 2)', async () => {
    const shown = await cliWithout(
      ['usage', '--tenant', 't', '--from', '2026-12-01', '--to', '2026-12-02'],
      ['--table', tableName()],
    );
    expect(shown.code).toBe(2);
    expect(shown.err).toMatch(/which ledger table\? give --ledger-table <name> or --stack <name>/);
  });
});

describe('the installed command', () => {
  it('exits 0 with output, and 2 with a message for an unknown command', async () => {
    // package.json's "bin": the compiled, self-contained CLI (dist/cli.js, built by pretest).
    const bin = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    const run = promisify(execFile);
    const env = { ...process.env, AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: 'us-east-1' };
    ssm.parameters.set('/bin/brake', { value: 'off', version: 1, modified: Date.now() });
    const ok = await run(
      process.execPath,
      [bin, 'brake', 'status', '--brake-parameter', '/bin/brake', '--ssm-endpoint', ssm.endpoint],
      { env },
    );
    expect(JSON.parse(ok.stdout)).toMatchObject({ braked: false });
    const bad = await run(process.execPath, [bin, 'frobnicate', '--table', 'x'], { env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown command 'frobnicate'") });
  });
});

/** A Node 20 binary on PATH (the oldest Node the package supports), outside node_modules; undefined when there is none. */
const node20 = process.env.PATH?.split(':')
  .filter((d) => d !== '' && !d.includes('node_modules'))
  .map((d) => join(d, 'node'))
  .find((bin) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout?.startsWith('v20.'));

describe('on Node 20', () => {
  it.skipIf(!node20)('prints no AWS SDK "upgrade Node" warning, only the answer', async () => {
    const bin = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
    const env = { ...process.env, AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: 'us-east-1' };
    ssm.parameters.set('/node20/brake', { value: 'off', version: 1, modified: Date.now() });
    const out = await promisify(execFile)(
      node20!,
      [bin, 'brake', 'status', '--brake-parameter', '/node20/brake', '--ssm-endpoint', ssm.endpoint],
      { env },
    );
    expect(JSON.parse(out.stdout)).toMatchObject({ braked: false });
    expect(out.stderr).toBe('');
  });
});

describe('credentials', () => {
  const bin = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
  const run = promisify(execFile);
  // No AWS_* variables at all, as on a laptop without an AWS setup.
  const bare = {
    PATH: process.env.PATH ?? '',
    HOME: mkdtempSync(join(tmpdir(), 'llm-limiter-home-')),
    AWS_EC2_METADATA_DISABLED: 'true',
  };

  it('needs none against npm start’s local endpoints', async () => {
    ssm.parameters.set('/bare/brake', { value: 'off', version: 1, modified: Date.now() });
    const ok = await run(
      process.execPath,
      [
        bin,
        'brake',
        'status',
        '--brake-parameter',
        '/bare/brake',
        '--ssm-endpoint',
        ssm.endpoint,
        '--region',
        'us-east-1',
      ],
      { env: bare },
    );
    expect(JSON.parse(ok.stdout)).toMatchObject({ braked: false });
  });

  it('asks for the region when --stack is given without one (exit code 2, one line)', async () => {
    const out = await run(process.execPath, [bin, 'tenants', 'show', 'acme', '--stack', 'LlmRateLimiter-prod'], {
      env: bare,
      timeout: 30_000,
    }).catch((e: { code: number; stderr: string }) => e);
    expect(out).toMatchObject({ code: 2 });
    expect((out as { stderr: string }).stderr.trim()).toBe(
      'error: which region? pass --region <region> (the one the stack is in), or set AWS_REGION',
    );
  });

  it('says what to set when there are none against AWS (exit code 2, one line)', async () => {
    const out = await run(
      process.execPath,
      [bin, 'brake', 'status', '--brake-parameter', '/x', '--region', 'us-east-1'],
      { env: bare, timeout: 30_000 },
    ).catch((e: { code: number; stderr: string }) => e);
    expect(out).toMatchObject({ code: 2 });
    expect((out as { stderr: string }).stderr.trim()).toMatch(
      /^error: no AWS credentials: set AWS_PROFILE .*; against npm start, pass --local \(or the CLI flags its banner prints\)$/,
    );
  });
});

describe('buckets reset', () => {
  it('forgives a user locked out by debt: the next request is admitted, and the reset is logged', async () => {
    const t = uniqueKey('tenant');
    await cli('tenants', 'create', t, '--plan', 'team');
    const config = parseConfig(rawConfig);
    const limiter = new Limiter({ store: testStore(), config, log: () => {} });
    const identity = { tenant: t, user: 'bob' };
    const tenant = { id: t, plan: 'team' };
    // Five requests a minute: spend them all, and the sixth is denied.
    for (let i = 0; i < 5; i++)
      expect((await limiter.admit(identity, tenant, '/v1/chat/completions')).allowed).toBe(true);
    expect((await limiter.admit(identity, tenant, '/v1/chat/completions')).allowed).toBe(false);

    const reset = await cli('buckets', 'reset', '--tenant', t, '--user', 'bob');
    expect(reset).toMatchObject({ code: 0, out: `reset 1 bucket item(s) of ${t}/bob: full again` });
    expect(JSON.parse(reset.err)).toMatchObject({
      audit: 'buckets reset',
      tenant: t,
      user: 'bob',
      items: [`u:${t}:bob`],
    });
    // A fresh container (no cached state) sees a full bucket.
    const fresh = new Limiter({ store: testStore(), config, log: () => {} });
    expect((await fresh.admit(identity, tenant, '/v1/chat/completions')).allowed).toBe(true);
    expect(await cli('buckets', 'reset', '--tenant', t, '--user', 'nobody')).toMatchObject({
      code: 0,
      out: expect.stringContaining('nothing to reset'),
    });
    expect(await cli('buckets', 'reset', '--tenant', 'bad tenant!')).toMatchObject({ code: 2 });
  });
});

describe('what a tenant gets and has used, as tables', () => {
  const withGlobal = { ...rawConfig, global: { limits: [usdPerDay(100)] } };
  const globalFile = join(dir, 'config-global.json');
  writeFileSync(globalFile, JSON.stringify(withGlobal));
  // A table of its own: the global limit's shards are shared by every tenant, and so by other test files.
  const table = uniqueKey('cli-usage');
  beforeAll(() => ensureTable(localClient(dynamoEndpoint()), table));
  afterAll(() => localClient(dynamoEndpoint()).send(new DeleteTableCommand({ TableName: table })));
  const run = (...args: string[]) => cliWithout(args, ['--table', table, '--config', globalFile]);
  /** A table's rows as cells (columns are two or more spaces apart). */
  const rows = (out: string) =>
    out
      .split('\n')
      .slice(2)
      .map((line) => line.split(/\s{2,}/));

  it('tenants show: the plan with its overrides applied, overrides marked, then the global limits', async () => {
    const t = uniqueKey('tenant');
    await run('tenants', 'create', t, '--plan', 'team');
    const file = join(dir, 'override-50.json');
    writeFileSync(
      file,
      JSON.stringify({ tenant: [usdPerMonth(50, { timeZone: 'Europe/Paris' })], user: [requestsPerMinute(50)] }),
    );
    expect((await run('tenants', 'set-overrides', t, '--file', file)).code).toBe(0);
    const shown = await run('tenants', 'show', t);
    expect(shown.code).toBe(0);
    expect(shown.out.split('\n')[0]).toBe(`tenant ${t}, plan team, with overrides`);
    expect(rows(shown.out)).toEqual([
      ['layer', 'limit', 'route', 'counts', 'size', 'refills in', 'shape', 'from'],
      ['tenant', 'tenant_tokens_per_day', 'tokens', '1,000', '1 d', 'token bucket', 'plan'],
      [
        'tenant',
        'tenant_usd_per_calendar_month',
        'usd',
        '$50.00',
        "the month's end (Europe/Paris)",
        'calendar month',
        'override',
      ],
      ['user', 'user_requests_per_minute', 'requests', '50', '1 min', 'sliding window', 'override'],
      ['global', 'global_usd_per_day', 'usd', '$100.00', '1 d', 'token bucket', 'global'],
    ]);
  });

  it('usage: what each limit has used and has left, tokens and dollars included', async () => {
    const t = uniqueKey('tenant');
    await run('tenants', 'create', t, '--plan', 'team');
    const limiter = new Limiter({
      store: new LimitStore({ client: localClient(dynamoEndpoint()), tableName: table }),
      config: parseConfig(JSON.parse(JSON.stringify(withGlobal))),
      log: () => {},
    });
    const identity = { tenant: t, user: 'ann' };
    const verdict = await limiter.admit(identity, { id: t, plan: 'team' }, '/v1/chat/completions');
    // The answer's 250 tokens and $1.50, as the proxy settles them.
    await limiter.settle(
      uniqueKey('r'),
      {
        identity,
        tenant: { id: t, plan: 'team' },
        route: '/v1/chat/completions',
        shard: verdict.shard ?? 0,
        reserved: { tokens: 0, microUsd: 0 },
        failedOpen: [],
        admittedAt: Date.now(),
      },
      { tokens: 250, microUsd: 1_500_000 },
    );
    const shown = await run('usage', '--tenant', t, '--user', 'ann');
    expect(shown.code).toBe(0);
    expect(shown.out.split('\n')[0]).toBe(`tenant ${t}, user ann, plan team`);
    const cells = rows(shown.out).map((r) => r.slice(0, 5));
    expect(cells).toEqual([
      ['layer', 'limit', 'route', 'used', 'of'],
      ['tenant', 'tenant_tokens_per_day', '250', '1,000', '750'],
      ['user', 'user_requests_per_minute', '1', '5', '4'],
      ['global', 'global_usd_per_day', '$1.50', '$100.00', '$98.50'],
    ]);
  });
});

describe('the configuration the deploy published', () => {
  it('is what the CLI checks plans against without --config; a table without one is refused, naming the fix', async () => {
    const client = localClient(dynamoEndpoint());
    const table = uniqueKey('cli-published');
    await ensureTable(client, table);
    try {
      const run = (...args: string[]) => cliWithout(args, ['--table', table]);
      const noConfig = await run('tenants', 'create', 'acme', '--plan', 'team');
      expect(noConfig.code).toBe(2);
      expect(noConfig.err).toBe(
        `error: no limiter configuration: table ${table} has none published (the construct publishes it at ` +
          `every deploy, npm start at start-up); deploy, or pass --config <file.json>`,
      );

      await publishConfig(client, table, parseConfig(JSON.parse(JSON.stringify(rawConfig))));
      expect(await run('tenants', 'create', 'acme', '--plan', 'platinum')).toMatchObject({
        code: 2,
        err: "error: plan 'platinum' is not configured: known plans are team, gold",
      });
      expect(await run('tenants', 'create', 'acme', '--plan', 'gold')).toMatchObject({
        code: 0,
        out: 'tenant acme created on plan gold',
      });
      expect((await run('tenants', 'show', 'acme')).out).toContain('tenant_tokens_per_day');
    } finally {
      await client.send(new DeleteTableCommand({ TableName: table }));
    }
  });
});

describe('--local', () => {
  /** The CLI in-process with LLM_LIMITER_DATA_DIR pointing at `dataDir` (where npm start writes its state). */
  async function local(dataDir: string, ...args: string[]) {
    const saved = process.env.LLM_LIMITER_DATA_DIR;
    process.env.LLM_LIMITER_DATA_DIR = dataDir;
    const out: string[] = [];
    const err: string[] = [];
    try {
      const code = await main([...args, '--local'], { out: (t) => out.push(t), err: (t) => err.push(t) });
      return { code, out: out.join('\n'), err: err.join('\n') };
    } finally {
      if (saved === undefined) delete process.env.LLM_LIMITER_DATA_DIR;
      else process.env.LLM_LIMITER_DATA_DIR = saved;
    }
  }

  it('without npm start running: exit 2, one line saying to start it', async () => {
    const empty = mkdtempSync(join(dir, 'data-'));
    const r = await local(empty, 'tenants', 'show', 'acme');
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      `error: --local: npm start is not running here (${join(empty, 'npm-start.json')} is missing): run npm start in another terminal first`,
    );
  });

  it('with the state of an npm start that has ended: exit 2, one line saying to start it again', async () => {
    const stale = mkdtempSync(join(dir, 'data-'));
    // Ports nothing listens on any more: taken, then let go.
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const endpoint = `http://127.0.0.1:${closedPort}`;
    writeFileSync(
      join(stale, 'npm-start.json'),
      JSON.stringify({
        baseUrl: `${endpoint}/v1`,
        tableName: 'gone',
        brakeParameterName: '/gone/brake',
        dynamoEndpoint: endpoint,
        ssmEndpoint: endpoint,
      }),
    );
    for (const args of [
      ['tenants', 'show', 'acme'],
      ['brake', 'status'],
    ]) {
      const r = await local(stale, ...args);
      expect(r.code).toBe(2);
      expect(r.err).toBe(
        `error: --local: nothing answers at npm start's endpoints (${join(stale, 'npm-start.json')} is left ` +
          `from a run that ended): run npm start again`,
      );
    }
  });
});
