import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { InvalidLimitError } from '../../lambda/engine/errors';
import { type LimiterConfig, parseConfig } from '../../lambda/engine/plans';
import { readPublishedConfig } from '../../lambda/engine/published-config';
import { npmStartStateFile, readNpmStartState } from '../../local/npm-start-state';
import type { Usage } from '../../lambda/limits/usage';
import { Admin, type TenantView, UsageError } from './admin';
import { amount, deniedCodes, nanoDollars, SHAPE_NAMES, span, table } from './format';
import type { LedgerGrouping, LedgerLine } from '../../lambda/engine/ledger';

export const HELP = `llm-limiter: operate an LLM rate limiter (tenants, keys, the brake, usage)

  tenants create <tenant> --plan <plan>
  tenants set-plan <tenant> <plan>
  tenants set-overrides <tenant> --file <overrides.json> | --clear
  tenants show <tenant>                           the limits that apply: plan + overrides, and the global ones
  keys create --tenant <tenant> --user <user>     prints the key once; only its hash is stored
  keys list --tenant <tenant>
  keys revoke <key-id | key>                      takes effect within the key cache TTL (30 s by default)
  brake on [--for 2h30m] [--reason "..."]           every AI route answers 429 'brake' within 5 s
  brake off
  brake status
  usage --tenant <tenant> [--user <user>]         used, left and reset of each limit: requests, tokens, dollars
  usage --tenant <tenant> [--user <user>] --from <day> --to <day> [--by user|model|day] [--format table|csv|json]
                                                  the usage ledger (for invoicing): requests, tokens, dollars and
                                                  429s, days as YYYY-MM-DD in the tenant's ledger zone, both included
  buckets reset --tenant <tenant> [--user <user>] refills the user's buckets (and lifts its penalty box), or the
                                                  tenant's own and endpoint buckets (with --config); logged

Where:  --stack <name> [--region <r>]             names from the stack's outputs
        --local                                   the stack npm start runs in this repository
        --table <name> --brake-parameter <name>   or give them directly
        --ledger-table <name>                     the usage ledger's table (usage --from --to)
        --config <file.json>                      the limiter configuration, instead of the one the deploy
                                                  (or npm start) published in the table
        --dynamodb-endpoint <url> --ssm-endpoint <url>   e.g. the local gateway's DynamoDB Local and SSM
        --json                                    tenants show and usage as JSON
`;

/** Plans, overrides and the global limits a tenant gets, one row each. */
export function tenantTable(view: TenantView): string {
  const rows = view.limits.map((l) => [
    l.layer,
    l.code,
    l.route ?? '',
    l.counts,
    amount(l.size, l.counts, false),
    l.calendar ? `the ${l.calendar.period}'s end (${l.calendar.timeZone})` : span(l.periodSeconds),
    l.calendar ? `calendar ${l.calendar.period}` : SHAPE_NAMES[l.shape],
    l.from,
    l.shadow ? 'shadow' : '',
  ]);
  const head = `tenant ${view.tenant}, plan ${view.plan}${view.overrides === null ? '' : ', with overrides'}`;
  if (!rows.length) return `${head}: no limits apply`;
  return `${head}\n\n${table([['layer', 'limit', 'route', 'counts', 'size', 'refills in', 'shape', 'from', ''], ...rows])}`;
}

/** What each limit has used and has left; tokens and dollars spent in its window. */
export function usageTable(usage: Usage): string {
  const rows = usage.limits.map((l) => {
    const counts = l.unit;
    return [
      l.layer,
      l.code,
      l.route ?? '',
      amount(Math.max(0, l.limit - l.remaining), counts, false),
      amount(l.limit, counts, false),
      amount(l.remaining, counts, false),
      l.resetSeconds > 0 ? span(l.resetSeconds) : 'full',
      `${l.shadow ? 'shadow' : ''}${usage.closest === l.code ? 'closest' : ''}`,
    ];
  });
  const head = `tenant ${usage.tenant}${usage.user ? `, user ${usage.user}` : ''}, plan ${usage.plan}`;
  if (!rows.length) return `${head}: no limits apply`;
  return `${head}\n\n${table([['layer', 'limit', 'route', 'used', 'of', 'left', 'full again in', ''], ...rows])}`;
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

const consoleIo: Io = { out: (t) => process.stdout.write(`${t}\n`), err: (t) => process.stderr.write(`${t}\n`) };

async function fromStack(
  name: string,
  region: string | undefined,
): Promise<{ table?: string; brake?: string; ledger?: string }> {
  const cfn = new CloudFormationClient(region ? { region } : {});
  const out = await cfn.send(new DescribeStacksCommand({ StackName: name }));
  return namesFromOutputs(name, out.Stacks?.[0]?.Outputs ?? []);
}

/**
 * The table and the brake a stack's outputs name (`<id>TableName`, `<id>BrakeParameterName`, one
 * pair per limiter). A stack with several limiters does not say which: the flags do.
 */
export function namesFromOutputs(
  stack: string,
  outputs: readonly { OutputKey?: string; OutputValue?: string }[],
): { table?: string; brake?: string; ledger?: string } {
  // One ApiUrl per limiter (no other output ends so): its id names the others.
  const ids = outputs.flatMap((o) => (o.OutputKey?.endsWith('ApiUrl') ? [o.OutputKey.slice(0, -'ApiUrl'.length)] : []));
  if (ids.length > 1)
    throw new UsageError(
      `stack ${stack} has ${ids.length} limiters (${ids.join(', ')}): give --table and --brake-parameter from its outputs ` +
        '(<id>TableName, <id>BrakeParameterName)',
    );
  const value = (name: string) => outputs.find((o) => o.OutputKey === `${ids[0] ?? ''}${name}`)?.OutputValue;
  const ledger = value('LedgerTableName');
  return { table: value('TableName'), brake: value('BrakeParameterName'), ...(ledger ? { ledger } : {}) };
}

/** The command line, as node:util's parseArgs reads it (its options are the CLI's flags). */
function parseCliArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      plan: { type: 'string' },
      file: { type: 'string' },
      clear: { type: 'boolean' },
      tenant: { type: 'string' },
      user: { type: 'string' },
      for: { type: 'string' },
      reason: { type: 'string' },
      stack: { type: 'string' },
      local: { type: 'boolean' },
      region: { type: 'string' },
      table: { type: 'string' },
      'brake-parameter': { type: 'string' },
      'ledger-table': { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      by: { type: 'string' },
      format: { type: 'string' },
      config: { type: 'string' },
      'dynamodb-endpoint': { type: 'string' },
      'ssm-endpoint': { type: 'string' },
      namespace: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type Options = ReturnType<typeof parseCliArgs>['values'];

/** Runs one command; returns the exit code (0 ok, 2 bad input, 1 failure). */
export async function main(argv: readonly string[], io: Io = consoleIo): Promise<number> {
  let parsed: ReturnType<typeof parseCliArgs>;
  try {
    parsed = parseCliArgs(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  const {
    values: o,
    positionals: [group, verb, ...rest],
  } = parsed;
  if (o.help || !group) {
    io.out(HELP);
    return o.help ? 0 : 2;
  }
  try {
    const command = COMMANDS[`${group} ${verb ?? ''}`.trim()];
    if (!command) throw new UsageError(`unknown command '${[group, verb].filter(Boolean).join(' ')}'\n\n${HELP}`);
    const target = await targetOf(o, group);
    const admin = await adminFor(target, o, group);
    await command({ admin, o, rest, io });
    return 0;
  } catch (err) {
    return failure(err, o, io);
  }
}

/** Where the command acts: the table, the brake parameter, their endpoints and the region. */
interface Target {
  readonly tableName?: string;
  readonly ledgerTableName?: string | undefined;
  readonly brakeParameterName?: string;
  readonly dynamoEndpoint?: string;
  readonly ssmEndpoint?: string;
  readonly region: string;
}

/** Step 1: the target, from --stack's outputs, --local's npm start, or the flags themselves. */
async function targetOf(o: Options, group: string): Promise<Target> {
  const started = o.local ? readNpmStartState() : undefined;
  if (o.local && !started)
    throw new UsageError(
      `--local: npm start is not running here (${npmStartStateFile()} is missing): run npm start in another terminal first`,
    );
  const named: { table?: string; brake?: string; ledger?: string } = o.stack
    ? await fromStack(o.stack, o.region)
    : started
      ? { table: started.tableName, brake: started.brakeParameterName, ledger: started.ledgerTableName }
      : {};
  const target: Target = {
    tableName: o.table ?? named.table,
    brakeParameterName: o['brake-parameter'] ?? named.brake,
    ledgerTableName: o['ledger-table'] ?? named.ledger,
    dynamoEndpoint: o['dynamodb-endpoint'] ?? started?.dynamoEndpoint,
    ssmEndpoint: o['ssm-endpoint'] ?? started?.ssmEndpoint,
    region: o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
  };
  if (group !== 'brake' && !target.tableName && !(group === 'usage' && ledgerExportAsked(o)))
    throw new UsageError('which table? give --table <name> or --stack <name>');
  if (group === 'brake' && !target.brakeParameterName)
    throw new UsageError('which brake? give --brake-parameter <name> or --stack <name>');
  return target;
}

/** Step 2: the admin on the target, with the configuration the functions run with (or --config's). */
async function adminFor(target: Target, o: Options, group: string): Promise<Admin> {
  // Local endpoints (npm start) take any credentials: none need to be set up for them.
  const local = (endpoint: string | undefined) =>
    endpoint && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE
      ? { endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
      : endpoint
        ? { endpoint }
        : {};
  const dynamo = new DynamoDBClient({ region: target.region, ...local(target.dynamoEndpoint) });
  let config = o.config ? configFile(o.config) : undefined;
  // Plans are checked against the configuration the functions run with: the one the deploy published in the table.
  if (!config && target.tableName && group !== 'keys' && group !== 'brake' && !ledgerExportAsked(o))
    config = await readPublishedConfig(dynamo, target.tableName).catch((err: Error) => {
      if (err instanceof InvalidLimitError) throw new UsageError(err.message);
      throw err;
    });
  return new Admin({
    dynamo,
    ssm: new SSMClient({ region: target.region, ...local(target.ssmEndpoint) }),
    tableName: target.tableName ?? '',
    brakeParameterName: target.brakeParameterName ?? '',
    ...(target.ledgerTableName ? { ledgerTableName: target.ledgerTableName } : {}),
    ...(config ? { config } : {}),
    ...(o.namespace ? { namespace: o.namespace } : {}),
  });
}

function configFile(file: string): LimiterConfig {
  try {
    return parseConfig(JSON.parse(readFileSync(file, 'utf8')));
  } catch (err) {
    throw new UsageError(`--config ${file}: ${(err as Error).message}`);
  }
}

interface Call {
  readonly admin: Admin;
  readonly o: Options;
  readonly rest: readonly string[];
  readonly io: Io;
}

const need = (value: string | undefined, what: string): string => {
  if (!value) throw new UsageError(`missing ${what}\n\n${HELP}`);
  return value;
};

const printJson = (io: Io, value: unknown) => io.out(JSON.stringify(value, null, 2));

/** `usage` with any of the ledger's flags is the ledger export (it needs no configuration). */
const ledgerExportAsked = (o: Options): boolean =>
  o.from !== undefined || o.to !== undefined || o.by !== undefined || o.format !== undefined;

const GROUPINGS = ['user', 'model', 'day'] as const;
const FORMATS = ['table', 'csv', 'json'] as const;

/** `usage --from --to`: the ledger of a tenant over days, summed by user, model or day, as a table, CSV or JSON. */
async function ledgerExport(admin: Admin, o: Options, io: Io): Promise<void> {
  const tenant = need(o.tenant, '--tenant');
  const from = need(o.from, '--from <YYYY-MM-DD>');
  const to = need(o.to, '--to <YYYY-MM-DD>');
  if (o.by !== undefined && !(GROUPINGS as readonly string[]).includes(o.by))
    throw new UsageError(`--by ${o.by}: give user, model or day`);
  const format = o.format ?? (o.json ? 'json' : 'table');
  if (!(FORMATS as readonly string[]).includes(format))
    throw new UsageError(`--format ${format}: give table, csv or json`);
  const by = o.by as LedgerGrouping | undefined;
  const { lines, total, timeZones } = await admin.ledger(tenant, from, to, by, o.user);
  const shown = by ? lines : [total];
  const codes = deniedCodes(shown);
  const figures = (l: LedgerLine) => [
    String(l.requests),
    String(l.inputTokens),
    String(l.outputTokens),
    String(l.cachedTokens),
    String(l.reasoningTokens),
    nanoDollars(l.nanoUsd),
    ...codes.map((c) => String(l.denied[c] ?? 0)),
  ];
  const head = [
    ...(by ? [by] : []),
    'requests',
    'input_tokens',
    'output_tokens',
    'cached_tokens',
    'reasoning_tokens',
    'usd',
    ...codes.map((c) => `denied_${c}`),
  ];
  if (format === 'json') {
    const line = (l: LedgerLine) => ({ ...l, usd: nanoDollars(l.nanoUsd) });
    printJson(io, {
      tenant,
      ...(o.user === undefined ? {} : { user: o.user }),
      from,
      to,
      timeZones,
      ...(by ? { by, lines: lines.map(line) } : {}),
      total: line(total),
    });
  } else if (format === 'csv') {
    // Rows only (no total line), so that a sheet's sum is the total; dollars exact to the billionth.
    const cell = (v: string) => (/[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
    io.out(
      [head, ...shown.map((l) => [...(by ? [l.group ?? ''] : []), ...figures(l)])]
        .map((r) => r.map(cell).join(','))
        .join('\n'),
    );
  } else {
    const rows = shown.map((l) => [...(by ? [l.group ?? ''] : []), ...figures(l)]);
    // Not a name any user or model can have: ids never hold parentheses or spaces.
    if (by) rows.push(['(all of them)', ...figures(total)]);
    const who = `tenant ${tenant}${o.user === undefined ? '' : `, user ${o.user}`}`;
    io.out(
      `${who}, ${from} to ${to}${timeZones.length ? ` (${timeZones.join(', ')})` : ''}\n\n${table([head, ...rows])}`,
    );
  }
}

/** Step 3: the commands, one function each. */
const COMMANDS: Record<string, (call: Call) => Promise<void>> = {
  'tenants create': async ({ admin, o, rest, io }) => {
    await admin.createTenant(need(rest[0], '<tenant>'), need(o.plan, '--plan'));
    io.out(`tenant ${rest[0]} created on plan ${o.plan}`);
  },
  'tenants set-plan': async ({ admin, rest, io }) => {
    await admin.setPlan(need(rest[0], '<tenant>'), need(rest[1], '<plan>'));
    io.out(`tenant ${rest[0]} is now on plan ${rest[1]}`);
  },
  'tenants set-overrides': async ({ admin, o, rest, io }) => {
    const tenant = need(rest[0], '<tenant>');
    if (o.clear) {
      await admin.setOverrides(tenant, undefined);
      io.out(`tenant ${tenant}: overrides removed`);
      return;
    }
    const file = need(o.file, '--file <overrides.json> or --clear');
    let overrides: unknown;
    try {
      overrides = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new UsageError(`--file ${file}: ${(err as Error).message}`);
    }
    await admin.setOverrides(tenant, overrides);
    io.out(`tenant ${tenant}: overrides set`);
  },
  'tenants show': async ({ admin, o, rest, io }) => {
    const view = await admin.showTenant(need(rest[0], '<tenant>'));
    if (o.json) printJson(io, view);
    else io.out(tenantTable(view));
  },
  'keys create': async ({ admin, o, io }) => {
    const created = await admin.createKey(need(o.tenant, '--tenant'), need(o.user, '--user'));
    io.out(
      `key id ${created.id} for ${o.tenant}/${o.user}. The key, shown this once (only its hash is stored):\n${created.key}`,
    );
  },
  'keys list': async ({ admin, o, io }) => printJson(io, await admin.listKeys(need(o.tenant, '--tenant'))),
  'keys revoke': async ({ admin, rest, io }) => {
    const revoked = await admin.revokeKey(need(rest[0], '<key-id | key>'));
    io.out(`key ${revoked.id} of ${revoked.tenant}/${revoked.user} revoked; it stops working within the key cache TTL`);
  },
  'brake on': async ({ admin, o, io }) => {
    printJson(io, await admin.brakeOn(o.for, o.reason));
    io.out('braked: every AI route answers 429 (code brake) within the brake cache TTL (5 s)');
  },
  'brake off': async ({ admin, io }) => {
    await admin.brakeOff();
    io.out('released: traffic flows again within the brake cache TTL (5 s)');
  },
  'brake status': async ({ admin, io }) => printJson(io, await admin.brakeStatus()),
  usage: async ({ admin, o, io }) => {
    if (ledgerExportAsked(o)) return ledgerExport(admin, o, io);
    const usage = await admin.usage(need(o.tenant, '--tenant'), o.user);
    if (o.json) printJson(io, usage);
    else io.out(usageTable(usage));
  },
  'buckets reset': async ({ admin, o, io }) => {
    const tenant = need(o.tenant, '--tenant');
    const removed = await admin.resetBuckets(tenant, o.user);
    const who = o.user ? `${tenant}/${o.user}` : tenant;
    // An audit line on stderr (kept apart from the answer): who, what, when.
    io.err(
      JSON.stringify({
        audit: 'buckets reset',
        tenant,
        ...(o.user ? { user: o.user } : {}),
        items: removed,
        at: new Date().toISOString(),
        by: process.env.USER ?? process.env.USERNAME ?? 'unknown',
      }),
    );
    io.out(
      removed.length
        ? `reset ${removed.length} bucket item(s) of ${who}: full again`
        : `nothing to reset: ${who} has no bucket items (already full)`,
    );
  },
};

/** Step 4: a failure as the person at the terminal needs it: one line with the fix, and the exit code. */
function failure(err: unknown, o: Options, io: Io): number {
  const e = err as Error & { code?: string };
  const fix = (line: string) => {
    io.err(`error: ${line}`);
    return 2;
  };
  if (err instanceof UsageError) return fix(err.message);
  if (o.local && /ECONNREFUSED/.test(`${e.message} ${e.code ?? ''}`))
    return fix(
      `--local: nothing answers at npm start's endpoints (${npmStartStateFile()} is left from a run that ended): run npm start again`,
    );
  if (e.message === 'Region is missing')
    return fix('which region? pass --region <region> (the one the stack is in), or set AWS_REGION');
  if (e.name === 'CredentialsProviderError')
    return fix(
      'no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) for the account the stack is in; ' +
        'against npm start, pass --local (or the CLI flags its banner prints)',
    );
  io.err(`failed: ${e.name}: ${e.message}`);
  return 1;
}
