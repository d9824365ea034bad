import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { InvalidLimitError } from '../../lambda/engine/errors';
import { type LimiterConfig, parseConfig } from '../../lambda/engine/plans';
import { readPublishedConfig } from '../../lambda/engine/published-config';
import { npmStartStateFile, readNpmStartState } from '../../lambda/local/npm-start-state';
import type { Usage } from '../../lambda/limits/usage';
import { Admin, type TenantView, UsageError } from './admin';
import { amount, SHAPE_NAMES, span, table } from './format';

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
  buckets reset --tenant <tenant> [--user <user>] refills the user's buckets (and lifts its penalty box), or the
                                                  tenant's own and endpoint buckets (with --config); logged

Where:  --stack <name> [--region <r>]             names from the stack's outputs
        --local                                   the stack npm start runs in this repository
        --table <name> --brake-parameter <name>   or give them directly
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
    span(l.periodSeconds),
    SHAPE_NAMES[l.shape],
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

async function fromStack(name: string, region: string | undefined): Promise<{ table?: string; brake?: string }> {
  const cfn = new CloudFormationClient(region ? { region } : {});
  const out = await cfn.send(new DescribeStacksCommand({ StackName: name }));
  const outputs = out.Stacks?.[0]?.Outputs ?? [];
  const find = (suffix: string) => outputs.find((o) => o.OutputKey?.includes(suffix))?.OutputValue;
  return { table: find('TableName'), brake: find('BrakeParameterName') };
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
      config: { type: 'string' },
      'dynamodb-endpoint': { type: 'string' },
      'ssm-endpoint': { type: 'string' },
      namespace: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

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
    let config: LimiterConfig | undefined;
    if (o.config) {
      try {
        config = parseConfig(JSON.parse(readFileSync(o.config, 'utf8')));
      } catch (err) {
        throw new UsageError(
          `--config ${o.config}: ${err instanceof InvalidLimitError || err instanceof SyntaxError ? err.message : (err as Error).message}`,
        );
      }
    }
    const started = o.local ? readNpmStartState() : undefined;
    if (o.local && !started)
      throw new UsageError(
        `--local: npm start is not running here (${npmStartStateFile()} is missing): run npm start in another terminal first`,
      );
    const named = o.stack
      ? await fromStack(o.stack, o.region)
      : started
        ? { table: started.tableName, brake: started.brakeParameterName }
        : {};
    const tableName = o.table ?? named.table;
    const brakeParameterName = o['brake-parameter'] ?? named.brake;
    const dynamoEndpoint = o['dynamodb-endpoint'] ?? started?.dynamoEndpoint;
    const ssmEndpoint = o['ssm-endpoint'] ?? started?.ssmEndpoint;
    const needsTable = group !== 'brake';
    if (needsTable && !tableName) throw new UsageError('which table? give --table <name> or --stack <name>');
    if (!needsTable && !brakeParameterName)
      throw new UsageError('which brake? give --brake-parameter <name> or --stack <name>');
    const region = o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    // Local endpoints (npm start) take any credentials: none need to be set up for them.
    const local = (endpoint: string | undefined) =>
      endpoint && !process.env.AWS_ACCESS_KEY_ID && !process.env.AWS_PROFILE
        ? { endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
        : endpoint
          ? { endpoint }
          : {};
    const dynamo = new DynamoDBClient({ region, ...local(dynamoEndpoint) });
    // Plans are checked against the configuration the functions run with: the one the deploy published in the table.
    if (!config && tableName && (group === 'tenants' || group === 'usage' || group === 'buckets'))
      config = await readPublishedConfig(dynamo, tableName).catch((err: Error) => {
        if (err instanceof InvalidLimitError) throw new UsageError(err.message);
        throw err;
      });
    const admin = new Admin({
      dynamo,
      ssm: new SSMClient({ region, ...local(ssmEndpoint) }),
      tableName: tableName ?? '',
      brakeParameterName: brakeParameterName ?? '',
      ...(config ? { config } : {}),
      ...(o.namespace ? { namespace: o.namespace } : {}),
    });
    const need = (value: string | undefined, what: string): string => {
      if (!value) throw new UsageError(`missing ${what}\n\n${HELP}`);
      return value;
    };
    const json = (value: unknown) => io.out(JSON.stringify(value, null, 2));
    switch (`${group} ${verb ?? ''}`.trim()) {
      case 'tenants create':
        await admin.createTenant(need(rest[0], '<tenant>'), need(o.plan, '--plan'));
        io.out(`tenant ${rest[0]} created on plan ${o.plan}`);
        return 0;
      case 'tenants set-plan':
        await admin.setPlan(need(rest[0], '<tenant>'), need(rest[1], '<plan>'));
        io.out(`tenant ${rest[0]} is now on plan ${rest[1]}`);
        return 0;
      case 'tenants set-overrides': {
        const tenant = need(rest[0], '<tenant>');
        if (o.clear) {
          await admin.setOverrides(tenant, undefined);
          io.out(`tenant ${tenant}: overrides removed`);
          return 0;
        }
        let overrides: unknown;
        try {
          overrides = JSON.parse(readFileSync(need(o.file, '--file <overrides.json> or --clear'), 'utf8'));
        } catch (err) {
          if (err instanceof UsageError) throw err;
          throw new UsageError(`--file ${o.file}: ${(err as Error).message}`);
        }
        await admin.setOverrides(tenant, overrides);
        io.out(`tenant ${tenant}: overrides set`);
        return 0;
      }
      case 'tenants show': {
        const view = await admin.showTenant(need(rest[0], '<tenant>'));
        if (o.json) json(view);
        else io.out(tenantTable(view));
        return 0;
      }
      case 'keys create': {
        const created = await admin.createKey(need(o.tenant, '--tenant'), need(o.user, '--user'));
        io.out(
          `key id ${created.id} for ${o.tenant}/${o.user}. The key, shown this once (only its hash is stored):\n${created.key}`,
        );
        return 0;
      }
      case 'keys list':
        json(await admin.listKeys(need(o.tenant, '--tenant')));
        return 0;
      case 'keys revoke': {
        const revoked = await admin.revokeKey(need(rest[0], '<key-id | key>'));
        io.out(
          `key ${revoked.id} of ${revoked.tenant}/${revoked.user} revoked; it stops working within the key cache TTL`,
        );
        return 0;
      }
      case 'brake on':
        json(await admin.brakeOn(o.for, o.reason));
        io.out('braked: every AI route answers 429 (code brake) within the brake cache TTL (5 s)');
        return 0;
      case 'brake off':
        await admin.brakeOff();
        io.out('released: traffic flows again within the brake cache TTL (5 s)');
        return 0;
      case 'brake status':
        json(await admin.brakeStatus());
        return 0;
      case 'usage': {
        const usage = await admin.usage(need(o.tenant, '--tenant'), o.user);
        if (o.json) json(usage);
        else io.out(usageTable(usage));
        return 0;
      }
      case 'buckets reset': {
        const tenant = need(o.tenant, '--tenant');
        const removed = await admin.resetBuckets(tenant, o.user);
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
            ? `reset ${removed.length} bucket item(s) of ${o.user ? `${tenant}/${o.user}` : tenant}: full again`
            : `nothing to reset: ${o.user ? `${tenant}/${o.user}` : tenant} has no bucket items (already full)`,
        );
        return 0;
      }
      default:
        throw new UsageError(`unknown command '${[group, verb].filter(Boolean).join(' ')}'\n\n${HELP}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`error: ${err.message}`);
      return 2;
    }
    if (o.local && /ECONNREFUSED/.test(`${(err as Error).message} ${(err as { code?: string }).code ?? ''}`)) {
      io.err(
        `error: --local: nothing answers at npm start's endpoints (${npmStartStateFile()} is left from a run that ended): run npm start again`,
      );
      return 2;
    }
    if ((err as Error).message === 'Region is missing') {
      io.err('error: which region? pass --region <region> (the one the stack is in), or set AWS_REGION');
      return 2;
    }
    if ((err as Error).name === 'CredentialsProviderError') {
      io.err(
        'error: no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) for the account the stack is in; against npm start, pass the --dynamodb-endpoint and --ssm-endpoint it prints',
      );
      return 2;
    }
    io.err(`failed: ${(err as Error).name}: ${(err as Error).message}`);
    return 1;
  }
}
