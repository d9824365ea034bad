/**
 * npm start's stack in front of a provider stand-in that bills like one, for the hard-cap tests
 * and their benchmark: tenants and keys of their own per class of hostile traffic, a client that
 * can leave at any point, and each request's settlement read from the proxy's own metric lines.
 */
import { request } from 'node:http';
import { expect, vi } from 'vitest';
import { parseConfig, tokensPerDay } from '../../lambda/engine/plans';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { setMetricSink } from '../../lambda/runtime/metrics';
import { localClient } from '../../local/dynamodb-local';
import { type LocalStack, startLocal } from '../../local/start';
import { type Bill, type BillingProvider, startBillingProvider } from './billing-provider';

/** The smallest token limit: every user's day. The tenant's is twice that. */
export const USER_DAY = 3_000;
const price = { inputPerMillion: 0.15, outputPerMillion: 0.6 };
const HARD_CAP_MODELS = {
  'gpt-4o-mini': { ...price, defaultMaxTokens: 200 },
  'o4-mini': { ...price, defaultMaxTokens: 600 },
  'deepseek-r1': { ...price, defaultMaxTokens: 300 },
  'llama3.1': { ...price, defaultMaxTokens: 150 },
};
export const HARD_CAP_CONFIG = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { hostile: { tenant: [tokensPerDay(2 * USER_DAY)], user: [tokensPerDay(USER_DAY)] } },
      // The other dialects reach the same provider through the same chat rules.
      endpoints: Object.fromEntries(
        ['/v1/chat/completions', '/v1/responses', '/v1/messages'].map((route) => [route, { models: HARD_CAP_MODELS }]),
      ),
    }),
  ),
);

/** How a client leaves: after this many bytes of the answer, or this many ms after sending. */
export interface Leave {
  readonly bytes?: number;
  readonly ms?: number;
}

export interface Sent {
  readonly status: number;
  readonly body: string;
  /** When the client left (performance.now()), if it did. */
  readonly leftAt?: number;
}

export interface HardCapStack {
  readonly local: LocalStack;
  readonly provider: BillingProvider;
  /** Tokens settled per request id. */
  readonly settled: Map<string, number>;
  /** A tenant of its own with `users` keys. */
  newTenant(users?: number): Promise<string[]>;
  /** One request to `path` (under /v1), leaving early when told to. */
  send(key: string, body: string, leave?: Leave, path?: string): Promise<Sent>;
  /** What the provider billed since the `from`th request. */
  billedSince(from: number): Bill[];
  stop(): Promise<void>;
}

export const chat = (model: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'Tell me everything.' }], ...extra });

export const billed = (bills: readonly Bill[]): number => bills.reduce((sum, b) => sum + b.input + b.output, 0);

/** Requests settled below what the provider billed for them (and those not settled at all). */
export const underbilled = (bills: readonly Bill[], settled: ReadonlyMap<string, number>): Bill[] =>
  bills.filter((b) => !settled.has(b.requestId) || settled.get(b.requestId)! < b.input + b.output);

/** Every request the provider billed was settled, at no less than its bill (waits for settlements to land). */
export async function settledAtLeastBilled(stack: HardCapStack, bills: readonly Bill[]): Promise<void> {
  const { settled } = stack;
  await vi.waitFor(() => expect(bills.filter((b) => !settled.has(b.requestId))).toEqual([]), { timeout: 10_000 });
  const under = underbilled(bills, settled);
  expect(under.map((b) => ({ billed: b.input + b.output, settled: settled.get(b.requestId) }))).toEqual([]);
}

export async function startHardCapStack(): Promise<HardCapStack> {
  const provider = await startBillingProvider();
  const saved = process.env.UPSTREAM_BODY_TIMEOUT_MS;
  process.env.UPSTREAM_BODY_TIMEOUT_MS = '1500';
  const local = await startLocal({
    port: 0,
    config: HARD_CAP_CONFIG,
    upstreamBaseUrl: provider.baseUrl,
    upstreamApiKey: 'sk-up',
    summary: () => {},
  });
  const settled = new Map<string, number>();
  setMetricSink((line) => {
    const m = JSON.parse(line) as { requestId?: string; TokensSettled?: number };
    if (m.requestId && typeof m.TokensSettled === 'number') settled.set(m.requestId, m.TokensSettled);
  });
  let tenants = 0;
  return {
    local,
    provider,
    settled,
    async newTenant(users = 1) {
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
    },
    send: (key, body, leave, path) => send(local, key, body, leave, path),
    billedSince: (from) => provider.bills.slice(from),
    async stop() {
      await local.stop();
      await provider.stop();
      if (saved === undefined) delete process.env.UPSTREAM_BODY_TIMEOUT_MS;
      else process.env.UPSTREAM_BODY_TIMEOUT_MS = saved;
    },
  };
}

/** One request as a client sends it, leaving early when told to. */
function send(local: LocalStack, key: string, body: string, leave?: Leave, path = '/chat/completions'): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(`${local.baseUrl}${path}`), {
      method: 'POST',
      // Both headers: OpenAI's clients send the first, Anthropic's the second.
      headers: { authorization: `Bearer ${key}`, 'x-api-key': key, 'content-type': 'application/json' },
    });
    let timer: NodeJS.Timeout | undefined;
    const leaveNow = (status: number, text: string) => {
      const leftAt = performance.now();
      req.destroy();
      resolve({ status, body: text, leftAt });
    };
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
        if (leave?.bytes !== undefined && text.length > leave.bytes) leaveNow(res.statusCode ?? 0, text);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) => (leave ? resolve({ status: 0, body: '' }) : reject(err)));
    if (leave?.ms !== undefined) timer = setTimeout(() => leaveNow(0, ''), leave.ms);
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}
