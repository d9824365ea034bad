/**
 * The usage ledger against what was settled and what the upstream billed: a mixed run through
 * the authorizer and the streaming proxy built from their environment as in Lambda (finished
 * streams and plain answers with cached and reasoning tokens, embeddings, clients that leave
 * mid-stream, an upstream that cuts the stream, upstream errors refunded, and 429s), then the
 * ledger read three ways: the rows, GET /v1/limits' month so far, and the CLI's CSV export.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler, depsFromEnvironment } from '../../lambda/authorizer/handler';
import { type LedgerRow, readLedger, summarizeLedger } from '../../lambda/engine/ledger';
import { requestsPerMinute, tokensPerMinute, usdPerDay } from '../../lambda/engine/plans';
import { createLimitsHandler, limitsDepsFromEnvironment } from '../../lambda/limits/handler';
import { createProxyHandler, proxyDepsFromEnvironment } from '../../lambda/proxy/handler';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { main } from '../../lib/cli/main';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals, invokeStreaming } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';
import { dynamoEndpoint, ledgerTableName, tableName, uniqueKey } from '../support/dynamo';
import { authorizerEvent, lambdaContext, proxyEvent } from '../support/events';
import { localFunctionEnvironment } from '../support/function-environment';

const CHAT = '/v1/chat/completions';
const EMBED = '/v1/embeddings';
const MODELS = {
  'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6, cachedInputPerMillion: 0.075 },
  'o4-mini': { inputPerMillion: 1.1, outputPerMillion: 4.4, cachedInputPerMillion: 0.275 },
};
const CONFIG = {
  plans: {
    team: { tenant: [usdPerDay(1_000)], user: [requestsPerMinute(1_000), tokensPerMinute(10_000_000)] },
    tight: { user: [requestsPerMinute(2)] },
    // 100 tokens a minute: one request (its input and 40 of output) fits, the next is the proxy's 429.
    small: { user: [tokensPerMinute(100)] },
  },
  endpoints: {
    [CHAT]: { models: MODELS },
    [EMBED]: { models: { 'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0 } } },
  },
};

let ssm: SsmLocal;
let upstream: UpstreamStandIn;
const saved = { ...process.env };
const settled: Record<string, unknown>[] = [];
const tenant = uniqueKey('tenant');
const tight = uniqueKey('tight');
const small = uniqueKey('small');
const keys: Record<string, string> = {};
let authorizer: ReturnType<typeof createHandler>;
let proxy: ReturnType<typeof createProxyHandler>;
let authorizerLedger: NonNullable<ReturnType<typeof depsFromEnvironment>['ledger']>;
let statuses: Record<string, number[]>;

/** One request of `user` through the authorizer and the proxy, as API Gateway would pass it on. */
async function send(
  user: string,
  route: string,
  body: Record<string, unknown>,
  disconnectAfterChunks?: number,
): Promise<number> {
  const decision = await authorizer(
    authorizerEvent({ route, headers: { Authorization: `Bearer ${keys[user]}` } }),
    lambdaContext(),
  );
  if (decision.policyDocument.Statement[0]?.Effect !== 'Allow') return 429;
  const res = await invokeStreaming(
    proxy,
    proxyEvent({ route, body, authorizer: decision.context as Record<string, string> }),
    lambdaContext('proxy'),
    disconnectAfterChunks === undefined ? {} : { disconnectAfterChunks },
  );
  return res.statusCode;
}

const chat = (model: string, stream: boolean, words = 3) => ({
  model,
  stream,
  max_tokens: 40,
  messages: [{ role: 'user', content: `count to ${words}, please` }],
});

beforeAll(async () => {
  installLambdaStreamingGlobals();
  ssm = await startSsmLocal();
  upstream = await startUpstreamStandIn({
    // Honest usage with the parts a real upstream reports: cached input and reasoning output.
    reply: (body) => {
      const n = Number(/count to (\d+)/.exec(JSON.stringify(body))?.[1] ?? 3);
      // One token each, so the usage below (the words and two of reasoning) is honest.
      const words = Array.from({ length: n }, () => ' hello');
      // 'embed me' is two tokens: an embedding's whole usage.
      if (body.input !== undefined) return { words: [], usage: { prompt_tokens: 2 } };
      return {
        words,
        usage: {
          prompt_tokens: 6,
          completion_tokens: n + 2,
          prompt_tokens_details: { cached_tokens: 4 },
          completion_tokens_details: { reasoning_tokens: 2 },
        } as never,
      };
    },
  });
  ssm.parameters.set('/ledger-test/brake', { value: 'off', version: 1, modified: Date.now() });
  ssm.secrets.set('ledger-test-key', 'sk-upstream');
  Object.assign(process.env, {
    ...localFunctionEnvironment({
      tableName: tableName(),
      brakeParameterName: '/ledger-test/brake',
      config: CONFIG,
      dynamoEndpoint: dynamoEndpoint(),
      ssmEndpoint: ssm.endpoint,
    }),
    LEDGER_TABLE_NAME: ledgerTableName(),
    UPSTREAM_BASE_URL: upstream.baseUrl,
    UPSTREAM_API_KEY_SECRET: 'ledger-test-key',
  });
  const client = localClient(dynamoEndpoint());
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  await putTenant(client, tableName(), { id: tight, plan: 'tight' });
  await putTenant(client, tableName(), { id: small, plan: 'small' });
  for (const user of ['done', 'gone', 'cut', 'failed', 'limited', 'tokens']) {
    keys[user] = `sk-ledger-${uniqueKey(user)}`;
    await putApiKey(client, tableName(), keys[user]!, {
      tenant: user === 'limited' ? tight : user === 'tokens' ? small : tenant,
      user,
      status: 'active',
    });
  }
  const authorizerDeps = depsFromEnvironment();
  authorizerLedger = authorizerDeps.ledger!;
  authorizer = createHandler(authorizerDeps);
  const proxyDeps = proxyDepsFromEnvironment();
  proxy = createProxyHandler({
    ...proxyDeps,
    log: (entry) => {
      if (entry.outcome === 'settled') settled.push(entry);
    },
  });

  statuses = { done: [], gone: [], cut: [], failed: [], limited: [], tokens: [] };
  // Finished answers: streamed and not, two models, and embeddings.
  for (let i = 0; i < 6; i++)
    statuses.done!.push(await send('done', CHAT, chat(i % 2 ? 'o4-mini' : 'gpt-4o-mini', true, 3 + i)));
  for (let i = 0; i < 3; i++) statuses.done!.push(await send('done', CHAT, chat('gpt-4o-mini', false, 2 + i)));
  statuses.done!.push(await send('done', EMBED, { model: 'text-embedding-3-small', input: 'embed me' }));
  // Clients that leave after the first chunk of a slow stream: settled at the bound.
  upstream.behaviour.delayMs = 50;
  for (let i = 0; i < 3; i++) statuses.gone!.push(await send('gone', CHAT, chat('gpt-4o-mini', true, 8), 2));
  upstream.behaviour.delayMs = 0;
  // The upstream cuts the stream: no usage came, the bound is settled.
  upstream.behaviour.failAfterChunks = 1;
  for (let i = 0; i < 2; i++) statuses.cut!.push(await send('cut', CHAT, chat('gpt-4o-mini', true, 5)));
  upstream.behaviour.failAfterChunks = undefined;
  // The upstream refuses: nothing was used, the reservation is refunded.
  upstream.behaviour.status = 500;
  statuses.failed!.push(await send('failed', CHAT, chat('gpt-4o-mini', true)));
  upstream.behaviour.status = 429;
  upstream.behaviour.retryAfter = '1';
  statuses.failed!.push(await send('failed', CHAT, chat('gpt-4o-mini', false)));
  upstream.behaviour.status = undefined;
  // The provider's 429 cools the model down for its Retry-After (1 s): the next one is refused
  // without a call (upstream-feedback.ts), and counted as a 429.
  statuses.failed!.push(await send('failed', CHAT, chat('gpt-4o-mini', false)));
  await new Promise((r) => setTimeout(r, 1_100));
  // Two a minute: the next ones are 429s from the authorizer.
  for (let i = 0; i < 5; i++) statuses.limited!.push(await send('limited', CHAT, chat('gpt-4o-mini', true)));
  // The proxy's own 429: the token limit, decided once the body is counted. Two at once, each
  // reserving its input and 60 of output: the second does not fit while the first is answering.
  upstream.behaviour.delayMs = 200;
  const big = { ...chat('gpt-4o-mini', false), max_tokens: 60 };
  const first = send('tokens', CHAT, big);
  await new Promise((r) => setTimeout(r, 100));
  statuses.tokens!.push(await send('tokens', CHAT, big), await first);
  upstream.behaviour.delayMs = 0;
  // The authorizer's container was busy: its denial counts wait (up to a minute) for a later
  // invocation. One after a pause finds it idle and writes them.
  expect(authorizerLedger.unwritten().denied).toEqual({ user_requests_per_minute: 3 });
  await new Promise((r) => setTimeout(r, 1_100));
  statuses.limited!.push(await send('limited', CHAT, chat('gpt-4o-mini', true)));
  expect(authorizerLedger.unwritten().denied).toEqual({});
}, 120_000);

afterAll(async () => {
  process.env = saved;
  await upstream?.stop();
  await ssm?.stop();
});

const today = () => new Date().toISOString().slice(0, 10);
const rowsOf = async (t: string): Promise<LedgerRow[]> =>
  readLedger(localClient(dynamoEndpoint()), ledgerTableName(), t, today(), today());
const nano = (microUsd: unknown) => Math.round(Number(microUsd) * 1000);

describe('the usage ledger of a mixed run', () => {
  it('ran as planned: answers, clients gone, streams cut, upstream errors and 429s', () => {
    expect(statuses.done).toEqual(Array(10).fill(200));
    expect(statuses.gone!.every((s) => s === 200)).toBe(true);
    expect(statuses.cut).toEqual([200, 200]);
    expect(statuses.failed).toEqual([502, 429, 429]);
    expect(statuses.limited).toEqual([200, 200, 429, 429, 429, 429]);
  });

  it('equals what was settled, request for request: requests, tokens and dollars by user', async () => {
    const rows = await rowsOf(tenant);
    const byUser = summarizeLedger(rows, 'user');
    for (const line of byUser) {
      const mine = settled.filter((s) => s.tenant === tenant && s.user === line.group);
      expect(line.requests, String(line.group)).toBe(mine.length);
      expect(line.inputTokens + line.outputTokens, String(line.group)).toBe(
        mine.reduce((a, s) => a + Number(s.usedTokens), 0),
      );
      expect(line.nanoUsd, String(line.group)).toBe(mine.reduce((a, s) => a + nano(s.usedMicroUsd), 0));
    }
    expect(byUser.map((l) => [l.group, l.requests])).toEqual([
      ['cut', 2],
      ['done', 10],
      ['failed', 2],
      ['gone', 3],
    ]);
    expect(settled.filter((s) => s.tenant === tenant)).toHaveLength(17);
  });

  it("equals the upstream's bill where the upstream reported usage, and is never below it where it did not", async () => {
    const rows = await rowsOf(tenant);
    const done = summarizeLedger(
      rows.filter((r) => r.user === 'done'),
      'model',
    );
    const doneIds = new Set(
      settled.filter((s) => s.tenant === tenant && s.user === 'done').map((s) => String(s.requestId)),
    );
    const bills = [...upstream.bills.entries()].filter(([id]) => doneIds.has(id));
    expect(bills).toHaveLength(10);
    const billed = (model: string, part: 'promptTokens' | 'completionTokens' | 'cachedTokens' | 'reasoningTokens') =>
      bills.filter(([, b]) => b.complete && b.model === model).reduce((a, [, b]) => a + b[part], 0);
    for (const line of done) {
      const model = String(line.group);
      expect(line.inputTokens, model).toBe(billed(model, 'promptTokens'));
      expect(line.outputTokens, model).toBe(billed(model, 'completionTokens'));
      expect(line.cachedTokens, model).toBe(billed(model, 'cachedTokens'));
      expect(line.reasoningTokens, model).toBe(billed(model, 'reasoningTokens'));
    }
    expect(done.map((l) => l.group)).toEqual(['gpt-4o-mini', 'o4-mini', 'text-embedding-3-small']);
    // Dollars of the finished answers at the models' own prices (cached input at its rate).
    const price = (model: string) =>
      ({
        ...MODELS,
        'text-embedding-3-small': { inputPerMillion: 0.02, outputPerMillion: 0, cachedInputPerMillion: 0.02 },
      })[model as 'o4-mini']!;
    const expected = bills
      .filter(([, b]) => b.complete)
      .reduce((a, [, b]) => {
        const p = price(b.model);
        return (
          a +
          Math.round(
            ((b.promptTokens - b.cachedTokens) * p.inputPerMillion +
              b.cachedTokens * p.cachedInputPerMillion +
              b.completionTokens * p.outputPerMillion) *
              1000,
          )
        );
      }, 0);
    expect(done.reduce((a, l) => a + l.nanoUsd, 0)).toBe(expected);
    // Cut short, by the client or the upstream: the bound was settled, at least what was billed.
    for (const user of ['gone', 'cut']) {
      const [line] = summarizeLedger(rows.filter((r) => r.user === user));
      const ids = settled.filter((s) => s.user === user).map((s) => String(s.requestId));
      const bill = ids.reduce(
        (a, id) => a + (upstream.bills.get(id)?.promptTokens ?? 0) + (upstream.bills.get(id)?.completionTokens ?? 0),
        0,
      );
      expect(line!.inputTokens + line!.outputTokens, user).toBeGreaterThanOrEqual(bill);
      expect(bill, user).toBeGreaterThan(0);
    }
    // Refused upstream, billed nothing: counted as requests; the 429 refunded whole, the 500 kept at
    // its bound (a server error may come after the provider generated, and billed, docs/design.md).
    const failed = settled.filter((s) => s.user === 'failed');
    expect(failed.map((s) => upstream.bills.has(String(s.requestId)))).toEqual([false, false]);
    expect(failed.map((s) => [s.why, s.usedTokens])).toEqual([
      [expect.stringMatching(/^upstream_500/), 13 + 40],
      [expect.stringMatching(/^upstream_429/), 0],
    ]);
    const [line] = summarizeLedger(rows.filter((r) => r.user === 'failed'));
    expect([line!.requests, line!.inputTokens, line!.outputTokens]).toEqual([2, 13, 40]);
    // The third, refused while the model cooled down after the provider's 429: a 429, not a request.
    expect(line!.denied).toEqual({ upstream_rate_limited: 1 });
  });

  it("counts 429s by code: the authorizer's under no model, the proxy's under the model asked for", async () => {
    const [line] = summarizeLedger(await rowsOf(tight));
    expect(line!.denied).toEqual({ user_requests_per_minute: 4 });
    expect(line!.requests).toBe(2);
    expect(statuses.tokens).toEqual([429, 200]);
    const byModel = summarizeLedger(await rowsOf(small), 'model');
    expect(byModel.map((l) => [l.group, l.requests, l.denied])).toEqual([
      ['gpt-4o-mini', 1, { user_tokens_per_minute: 1 }],
    ]);
  });

  it("shows the tenant's month so far on GET /v1/limits, and the caller's part", async () => {
    const limits = createLimitsHandler(limitsDepsFromEnvironment());
    const res = (await limits(
      proxyEvent({ route: '/v1/limits', authorizer: { tenant, user: 'done' } }),
      lambdaContext('limits'),
    )) as { statusCode: number; body: string };
    expect(res.statusCode).toBe(200);
    const { monthToDate } = JSON.parse(res.body);
    const [total] = summarizeLedger(await rowsOf(tenant));
    const [mine] = summarizeLedger((await rowsOf(tenant)).filter((r) => r.user === 'done'));
    expect(monthToDate.month).toBe(today().slice(0, 7));
    expect(monthToDate.timeZone).toBe('UTC');
    expect(monthToDate.tenant.requests).toBe(17);
    expect(monthToDate.tenant.usd).toBe(total!.nanoUsd / 1e9);
    expect(monthToDate.user.requests).toBe(10);
    expect(monthToDate.user.inputTokens).toBe(mine!.inputTokens);
  });

  it('exports it with the CLI as CSV whose rows sum to the total, dollars exact', async () => {
    const out: string[] = [];
    const code = await main(
      [
        'usage',
        '--tenant',
        tenant,
        '--from',
        today(),
        '--to',
        today(),
        '--by',
        'user',
        '--format',
        'csv',
        '--table',
        tableName(),
        '--ledger-table',
        ledgerTableName(),
        '--dynamodb-endpoint',
        dynamoEndpoint(),
      ],
      { out: (t) => out.push(t), err: (t) => out.push(`ERR ${t}`) },
    );
    expect(out.join('\n')).not.toMatch(/^ERR/m);
    expect(code).toBe(0);
    const [head, ...lines] = out.join('\n').split('\n');
    expect(head).toBe(
      'user,requests,input_tokens,output_tokens,cached_tokens,reasoning_tokens,usd,denied_upstream_rate_limited',
    );
    const [total] = summarizeLedger(await rowsOf(tenant));
    const cells = lines.map((l) => l.split(','));
    expect(cells.map((c) => c[0])).toEqual(['cut', 'done', 'failed', 'gone']);
    expect(cells.reduce((a, c) => a + Number(c[1]), 0)).toBe(total!.requests);
    // Dollars as exact decimals to the billionth: their sum in billionths is the ledger's.
    expect(cells.reduce((a, c) => a + Number(c[6]!.replace('.', '')), 0)).toBe(total!.nanoUsd);
  });
});
