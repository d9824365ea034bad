/**
 * The hard cap against hostile clients and misbehaving upstreams, through npm start's stack and a
 * provider stand-in that keeps its own ledger (hidden reasoning included). For each class: what
 * the provider billed stays within the smallest token limit involved, and no request is settled
 * below what the provider billed for it.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig, tokensPerDay } from '../../lambda/engine/plans';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { setMetricSink } from '../../lambda/runtime/metrics';
import { localClient } from '../../local/dynamodb-local';
import { type LocalStack, startLocal } from '../../local/start';
import { type Bill, type BillingProvider, startBillingProvider } from '../support/billing-provider';

const CHAT = '/v1/chat/completions';
/** The smallest token limit: every user's day. The tenant's is twice that. */
const USER_DAY = 3_000;
const price = { inputPerMillion: 0.15, outputPerMillion: 0.6 };
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { hostile: { tenant: [tokensPerDay(2 * USER_DAY)], user: [tokensPerDay(USER_DAY)] } },
      endpoints: {
        [CHAT]: {
          models: {
            'gpt-4o-mini': { ...price, defaultMaxTokens: 200 },
            'o4-mini': { ...price, defaultMaxTokens: 600 },
            'deepseek-r1': { ...price, defaultMaxTokens: 300 },
            'llama3.1': { ...price, defaultMaxTokens: 150 },
          },
        },
      },
    }),
  ),
);

let local: LocalStack;
let provider: BillingProvider;
/** Tokens settled per request id, from the proxy's own metric lines. */
const settled = new Map<string, number>();
const savedBodyTimeout = process.env.UPSTREAM_BODY_TIMEOUT_MS;

beforeAll(async () => {
  provider = await startBillingProvider();
  process.env.UPSTREAM_BODY_TIMEOUT_MS = '1500';
  local = await startLocal({
    port: 0,
    config,
    upstreamBaseUrl: provider.baseUrl,
    upstreamApiKey: 'sk-up',
    summary: () => {},
  });
  setMetricSink((line) => {
    const m = JSON.parse(line) as { requestId?: string; TokensSettled?: number };
    if (m.requestId && typeof m.TokensSettled === 'number') settled.set(m.requestId, m.TokensSettled);
  });
}, 60_000);
afterAll(async () => {
  await local.stop();
  await provider.stop();
  if (savedBodyTimeout === undefined) delete process.env.UPSTREAM_BODY_TIMEOUT_MS;
  else process.env.UPSTREAM_BODY_TIMEOUT_MS = savedBodyTimeout;
});

let tenants = 0;
/** A tenant of its own for one class, with `users` keys. */
async function newTenant(users = 1): Promise<string[]> {
  const client = localClient(local.dynamoEndpoint);
  const tenant = `hostile-${++tenants}`;
  await putTenant(client, local.tableName, { id: tenant, plan: 'hostile' });
  const keys: string[] = [];
  for (let u = 0; u < users; u++) {
    const key = `sk-lrl-local-hardcap-${tenants}-${u}-000000000000`;
    await putApiKey(client, local.tableName, key, { tenant, user: `user-${u}`, status: 'active' });
    keys.push(key);
  }
  client.destroy();
  return keys;
}

const chat = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'Tell me everything.' }], ...extra });

/** Sends one request; with `leaveAfter`, the client leaves after that many body bytes (0: before any). */
function send(
  key: string,
  body: string,
  leaveAfter?: { bytes?: number; ms?: number },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${local.baseUrl}/chat/completions`);
    const req = request(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    });
    let timer: NodeJS.Timeout | undefined;
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        if (leaveAfter?.bytes !== undefined && text.length > leaveAfter.bytes) {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) => (leaveAfter ? resolve({ status: 0, body: '' }) : reject(err)));
    if (leaveAfter?.ms !== undefined)
      timer = setTimeout(() => {
        req.destroy();
        resolve({ status: 0, body: '' });
      }, leaveAfter.ms);
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}

const billedSince = (from: number): Bill[] => provider.bills.slice(from);
const total = (bills: Bill[]) => bills.reduce((sum, b) => sum + b.input + b.output, 0);

/** Every request the provider billed was settled, at no less than its bill (waits for settlements to land). */
async function settledAtLeastBilled(bills: Bill[]): Promise<void> {
  await vi.waitFor(() => expect(bills.filter((b) => !settled.has(b.requestId))).toEqual([]), { timeout: 10_000 });
  const under = bills.filter((b) => settled.get(b.requestId)! < b.input + b.output);
  expect(under.map((b) => ({ billed: b.input + b.output, settled: settled.get(b.requestId) }))).toEqual([]);
}

describe('the hard cap, whatever the client sends or the upstream does', () => {
  it('no max_tokens (the SDK default): 20 at once from one user are bounded by the cap each call carries', async () => {
    provider.behaviour = { natural: 2_000 };
    const [key] = await newTenant();
    const from = provider.bills.length;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send(key!, chat('gpt-4o-mini', { stream: i % 2 === 0 }))),
    );
    const bills = billedSince(from);
    expect(answers.filter((a) => a.status === 200).length).toBe(bills.length);
    expect(answers.filter((a) => a.status === 429).length).toBeGreaterThan(0);
    for (const b of bills) expect(b.body).toMatchObject({ max_completion_tokens: 200 });
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(bills);
  });

  it('a client that leaves mid-stream from a reasoning model: the hidden reasoning is paid for', async () => {
    provider.behaviour = { natural: 2_000, reasoning: 400, thinkMs: 100 };
    const [key] = await newTenant();
    const from = provider.bills.length;
    for (let i = 0; i < 5; i++)
      await send(key!, chat('o4-mini', { stream: true, max_completion_tokens: 500 }), { bytes: 1 });
    const bills = billedSince(from);
    expect(bills.length).toBeGreaterThan(0);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(bills);
  });

  it.each([['reasoning_content'], ['reasoning']] as const)(
    'a client that leaves while %s streams: that channel is paid for',
    async (field) => {
      provider.behaviour = { natural: 2_000, reasoning: 200, reasoningField: field, usage: false };
      const [key] = await newTenant();
      const from = provider.bills.length;
      for (let i = 0; i < 4; i++) await send(key!, chat('deepseek-r1', { stream: true }), { bytes: 400 });
      const bills = billedSince(from);
      expect(bills.length).toBeGreaterThan(0);
      expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
      await settledAtLeastBilled(bills);
    },
  );

  it('a client that leaves while the model thinks in silence stops the upstream before it answers', async () => {
    provider.behaviour = { natural: 2_000, reasoning: 500, thinkMs: 6_000 };
    const [key] = await newTenant();
    const from = provider.bills.length;
    await send(key!, chat('o4-mini', { stream: true }), { ms: 500 });
    const [bill] = billedSince(from);
    // The provider noticed its client leave within its silence: it never wrote a visible token.
    await vi.waitFor(() => expect(bill!.aborted).toBe(true), { timeout: 5_000 });
    expect(bill!.visible).toBe(0);
    expect(bill!.output).toBeLessThan(500);
    await settledAtLeastBilled([bill!]);
  });

  it('conflicting caps are refused; an upstream that reads only max_tokens still gets the cap', async () => {
    const [key] = await newTenant();
    const from = provider.bills.length;
    const refused = await send(key!, chat('gpt-4o-mini', { max_completion_tokens: 1, max_tokens: 100_000 }));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'conflicting_output_caps', param: 'max_tokens' });
    expect(billedSince(from)).toHaveLength(0);
    provider.behaviour = { natural: 2_000, reads: 'max_tokens' };
    for (let i = 0; i < 4; i++) await send(key!, chat('llama3.1', { stream: i % 2 === 0 }));
    const bills = billedSince(from);
    expect(bills).toHaveLength(4);
    for (const b of bills) expect(b.output).toBe(150);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(bills);
  });

  it.each([
    ['an SSE body to a non-streamed request', { sseForJson: true }, false],
    ['a stream with bare CR line ends', { lineEnd: '\r' }, true],
    ['a stream with bare CR line ends and no usage', { lineEnd: '\r', usage: false }, true],
    ['an SSE body without usage to a non-streamed request', { sseForJson: true, usage: false }, false],
  ] as const)('odd framing, %s: settled at no less than the bill', async (_name, behaviour, stream) => {
    provider.behaviour = { natural: 2_000, ...behaviour };
    const [key] = await newTenant();
    const from = provider.bills.length;
    for (let i = 0; i < 3; i++) expect((await send(key!, chat('gpt-4o-mini', { stream }))).status).toBe(200);
    const bills = billedSince(from);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(bills);
  });

  it('an upstream error whose body never ends: the request ends at the body deadline, settled at its bound', async () => {
    provider.behaviour = { stallErrorStatus: 400 };
    const [key] = await newTenant();
    const from = provider.bills.length;
    const res = await send(key!, chat('gpt-4o-mini'));
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'upstream_timeout' });
    const bills = billedSince(from);
    await settledAtLeastBilled(bills);
    expect(settled.get(bills[0]!.requestId)).toBeGreaterThanOrEqual(bills[0]!.input + 200);
  });
});
