/**
 * The hard cap against hostile clients and upstreams (issue 22), through npm start's stack and a
 * provider stand-in with its own ledger: what the provider billed over the smallest limit
 * involved (worst class), the requests settled below their bill, and how soon a client that
 * leaves stops the upstream (mid-stream, and while the model thinks in silence).
 */
import type { ProviderBehaviour } from '../test/support/billing-provider';
import { billed, chat, startHardCapStack, underbilled, USER_DAY } from '../test/support/hard-cap-stack';
import { percentile, report } from './report';
import { size } from './smoke';

interface HostileClass {
  readonly name: string;
  readonly behaviour: ProviderBehaviour;
  readonly body: string;
  readonly requests: number;
  readonly concurrent?: boolean;
  readonly leave?: { bytes?: number; ms?: number };
}

const CLASSES: readonly HostileClass[] = [
  { name: 'no max_tokens', behaviour: { natural: 2_000 }, body: chat('gpt-4o-mini'), requests: 20, concurrent: true },
  {
    name: 'leaves mid-stream, hidden reasoning',
    behaviour: { natural: 2_000, reasoning: 400, thinkMs: 100 },
    body: chat('o4-mini', { stream: true, max_completion_tokens: 500 }),
    requests: 5,
    leave: { bytes: 1 },
  },
  {
    name: 'leaves mid-stream, reasoning_content',
    behaviour: { natural: 2_000, reasoning: 200, reasoningField: 'reasoning_content', usage: false },
    body: chat('deepseek-r1', { stream: true }),
    requests: 5,
    leave: { bytes: 400 },
  },
  {
    name: 'upstream reads only max_tokens',
    behaviour: { natural: 2_000, reads: 'max_tokens' },
    body: chat('llama3.1', { stream: true }),
    requests: 10,
    concurrent: true,
  },
  {
    name: 'SSE to a non-streamed request',
    behaviour: { sseForJson: true, usage: false },
    body: chat('gpt-4o-mini'),
    requests: 5,
  },
  {
    name: 'bare CR',
    behaviour: { lineEnd: '\r', usage: false },
    body: chat('gpt-4o-mini', { stream: true }),
    requests: 5,
  },
];

export async function benchHardCap(): Promise<void> {
  const stack = await startHardCapStack();
  try {
    let worst = 0;
    let under = 0;
    for (const c of CLASSES) {
      stack.provider.behaviour = c.behaviour;
      const [key] = await stack.newTenant();
      const from = stack.provider.bills.length;
      const n = size(c.requests, Math.min(c.requests, 3));
      const one = () => stack.send(key!, c.body, c.leave);
      if (c.concurrent) await Promise.all(Array.from({ length: n }, one));
      else for (let i = 0; i < n; i++) await one();
      const bills = stack.billedSince(from);
      await settledOrTimeout(
        stack.settled,
        bills.map((b) => b.requestId),
      );
      worst = Math.max(worst, billed(bills) / USER_DAY);
      under += underbilled(bills, stack.settled).length;
    }
    report('security.hardcap.billed_over_limit', worst, 'ratio');
    report('security.hardcap.underbilled_requests', under, 'requests');

    // A client that leaves: mid-stream, and while the model thinks in silence before its first token.
    const waits: number[] = [];
    for (const [behaviour, leave] of [
      [{ natural: 2_000, eventMs: 20 }, { bytes: 200 }],
      [{ natural: 2_000, reasoning: 500, thinkMs: 5_000 }, { ms: 300 }],
    ] as const) {
      stack.provider.behaviour = behaviour;
      for (let i = 0; i < size(15, 2); i++) {
        const [key] = await stack.newTenant(); // a day's tokens each: no request is denied
        const from = stack.provider.bills.length;
        const sent = await stack.send(key!, chat('o4-mini', { stream: true, max_completion_tokens: 600 }), leave);
        const [bill] = stack.billedSince(from);
        const deadline = performance.now() + 10_000;
        while (bill && bill.abortedAt === undefined && performance.now() < deadline) await sleep(5);
        if (bill?.abortedAt !== undefined && sent.leftAt !== undefined) waits.push(bill.abortedAt - sent.leftAt);
        else waits.push(10_000); // never stopped within 10 s: counted as 10 s
      }
    }
    waits.sort((a, b) => a - b);
    report('proxy.disconnect_to_upstream_abort_ms', percentile(waits, 99), 'ms');
  } finally {
    await stack.stop();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settledOrTimeout(settled: ReadonlyMap<string, number>, ids: readonly string[]): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (ids.some((id) => !settled.has(id)) && performance.now() < deadline) await sleep(20);
}
