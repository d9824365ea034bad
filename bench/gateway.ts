/**
 * The whole local path (npm start): requests per second through the gateway (authorizer + proxy
 * + settlement) and the latency it adds over calling the upstream stand-in directly, same run;
 * and tenant isolation: tenant B's time to first chunk while tenant A floods past its cap.
 */
import { putApiKey, putTenant } from '../lambda/runtime/directory';
import { slidingWindow, tokenBucket } from '../lambda/engine/limits';
import { parseConfig, requests, tokens } from '../lambda/engine/plans';
import { localClient } from '../local/dynamodb-local';
import { startLocal } from '../local/start';
import { load, percentile, report } from './report';
import { size } from './smoke';

const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

export async function benchGateway(): Promise<void> {
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        plans: {
          roomy: {
            tenant: [requests(slidingWindow(1e9, '1 m')), tokens(tokenBucket(1e12, 1e6))],
            user: [requests(slidingWindow(1e9, '1 m'))],
          },
          small: { tenant: [requests(slidingWindow(20, '1 h', 6))] },
        },
        endpoints: {
          '/v1/chat/completions': { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } },
        },
      }),
    ),
  );
  process.env.LIMITER_LOG = 'off';
  const local = await startLocal({ port: 0, config, apiKey: 'sk-lrl-local-bench-key-0000001' });
  try {
    const client = localClient(local.dynamoEndpoint);
    const keyFor = async (tenant: string, plan: string, user: string) => {
      await putTenant(client, local.tableName, { id: tenant, plan });
      const key = `sk-lrl-bench-${tenant}-${user}-00000`;
      await putApiKey(client, local.tableName, key, { tenant, user, status: 'active' });
      return key;
    };
    const key = await keyFor('bench', 'roomy', 'u');
    const viaGateway = async () => {
      const r = await fetch(`${local.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body,
      });
      await r.text();
      return r.status === 200;
    };
    const direct = async () => {
      const r = await fetch(`${local.upstreamBaseUrl}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      await r.text();
      return true;
    };
    await load(size(300, 8), 8, viaGateway);
    await load(size(300, 8), 8, direct);
    const timed = async (fn: () => Promise<boolean>) => {
      const values: number[] = [];
      for (let i = 0; i < size(300, 5); i++) {
        const t = performance.now();
        await fn();
        values.push(performance.now() - t);
      }
      return values.sort((a, b) => a - b);
    };
    const g = await timed(viaGateway);
    const d = await timed(direct);
    report(
      'gateway.added_latency_ms.p50',
      percentile(g, 50) - percentile(d, 50),
      'ms (through the gateway minus direct to the stand-in)',
    );
    report('gateway.added_latency_ms.p99', percentile(g, 99) - percentile(d, 99), 'ms');
    const throughput = await load(size(2_000, 32), 16, viaGateway);
    const directThroughput = await load(size(2_000, 32), 16, direct);
    report(
      'gateway.requests_per_s',
      throughput.perSecond,
      'requests/s (concurrency 16, non-streamed completions)',
      directThroughput.perSecond,
    );

    // Isolation: tenant B's first chunk alone, then while 20 clients of tenant A flood past its cap.
    const bKey = await keyFor('tenant-b', 'roomy', 'b');
    const aKeys = await Promise.all(Array.from({ length: 20 }, (_, i) => keyFor('tenant-a', 'small', `a${i}`)));
    const ttft = async () => {
      const t = performance.now();
      const r = await fetch(`${local.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const reader = r.body!.getReader();
      await reader.read();
      const first = performance.now() - t;
      while (!(await reader.read()).done);
      return first;
    };
    const alone: number[] = [];
    for (let i = 0; i < size(60, 2); i++) alone.push(await ttft());
    let flooding = true;
    const flood = Promise.all(
      aKeys.map(async (k) => {
        while (flooding)
          await (
            await fetch(`${local.baseUrl}/chat/completions`, {
              method: 'POST',
              headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
              body,
            })
          ).text();
      }),
    );
    const during: number[] = [];
    for (let i = 0; i < size(60, 2); i++) during.push(await ttft());
    flooding = false;
    await flood;
    report(
      'gateway.isolation.tenant_b_ttft_p50_ms',
      percentile(
        during.sort((a, b) => a - b),
        50,
      ),
      'ms (while 20 clients of tenant A flood past its cap, same process; baseline: alone)',
      percentile(
        alone.sort((a, b) => a - b),
        50,
      ),
    );
  } finally {
    await local.stop();
  }
}
