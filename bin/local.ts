/** npm start: the whole API on this machine (see local/start.ts). Ctrl-C stops everything. */
import { npmStartStateFile, removeNpmStartState, writeNpmStartState } from '../local/npm-start-state';
import { type LocalStack, startLocal } from '../local/start';
import { parseStartOptions, START_HELP, startFailure } from '../local/start-options';

// A person watches this console: errors and the metrics summary, not every log line (LIMITER_LOG=all for those).
if (process.env.LIMITER_LOG === 'all') delete process.env.LIMITER_LOG;
else process.env.LIMITER_LOG ??= 'errors';
const parsed = parseStartOptions(process.argv.slice(2), process.env);
if ('error' in parsed) {
  process.stderr.write(`${parsed.error}\n`);
  process.exit(2);
}
if (parsed.help) {
  process.stdout.write(START_HELP);
  process.exit(0);
}
const { options } = parsed;
const realUpstream = options.upstreamBaseUrl;
process.stdout.write('Starting DynamoDB Local and the local gateway...\n');
let local: LocalStack;
try {
  local = await startLocal(options);
} catch (err) {
  // Known start-up problems (no Java, a port in use) come as one line with the fix; never a stack trace.
  process.stderr.write(`npm start: ${startFailure(err as Error, options.port)}\n`);
  process.exit(2);
}
const values = { persist: options.persistDir };
// `npm run cli -- --local` finds this stack's table and endpoints here; the configuration it reads from the table, as on AWS.
writeNpmStartState({
  baseUrl: local.baseUrl,
  tableName: local.tableName,
  ledgerTableName: local.ledgerTableName,
  brakeParameterName: local.brakeParameterName,
  dynamoEndpoint: local.dynamoEndpoint,
  ssmEndpoint: local.ssmEndpoint,
});
const cli = 'npm run cli -- --local';
// The demo tenant's ledger days are UTC days (its plan has no calendar budget).
const today = new Date().toISOString().slice(0, 10);
const monthStart = `${today.slice(0, 7)}-01`;
const where = values.persist ? ` in ${values.persist}` : ', in memory';
// The CLI's own flags for this stack, which its no-credentials hint asks for (they need no AWS credentials).
const cliFlags = [
  `--table ${local.tableName}`,
  `--ledger-table ${local.ledgerTableName}`,
  `--brake-parameter ${local.brakeParameterName}`,
  `--dynamodb-endpoint ${local.dynamoEndpoint}`,
  `--ssm-endpoint ${local.ssmEndpoint}`,
  '--region us-east-1',
].join(' ');
process.stdout.write(`
LLM rate limiter running locally (DynamoDB Local${where}; upstream: ${realUpstream ?? 'built-in stand-in'})

  API       ${local.baseUrl}
  key       ${local.apiKey}   (tenant ${local.tenant}, user ${local.user}; plan: 60 requests/min per user, 20k tokens/min)

  curl ${local.baseUrl}/chat/completions -H "Authorization: Bearer ${local.apiKey}" \\
    -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'

  // OpenAI SDK
  const openai = new OpenAI({ apiKey: '${local.apiKey}', baseURL: '${local.baseUrl}' });

  your limits:  curl ${local.baseUrl}/limits -H "Authorization: Bearer ${local.apiKey}"
  usage page:   ${local.baseUrl}/usage   (paste the key)
  the brake:    ${cli} brake on --reason drill     (then: brake off)
  a tenant:     ${cli} tenants create acme --plan ${Object.keys(local.config.plans)[0]}
  its key:      ${cli} keys create --tenant acme --user alice
  usage:        ${cli} usage --tenant ${local.tenant} --user ${local.user}
  invoicing:    ${cli} usage --tenant ${local.tenant} --from ${monthStart} --to ${today} --by model --format csv

  CLI flags    ${cliFlags}
               (what --local stands for: give them where --local cannot read ${npmStartStateFile()})

Every few seconds a line sums up what the limiter did (admitted, denied by code, tokens, spend).
Ctrl-C stops everything.
`);
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping...\n');
    removeNpmStartState();
    void local.stop().then(() => process.exit(0));
  });
}
