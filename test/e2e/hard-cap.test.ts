/**
 * The hard cap against hostile clients and misbehaving upstreams, through npm start's stack and a
 * provider stand-in that keeps its own ledger (hidden reasoning included). For each class: what
 * the provider billed stays within the smallest token limit involved, and no request is settled
 * below what the provider billed for it.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  billed,
  chat,
  type HardCapStack,
  settledAtLeastBilled,
  startHardCapStack,
  USER_DAY,
} from '../support/hard-cap-stack';

let stack: HardCapStack;
beforeAll(async () => {
  stack = await startHardCapStack();
}, 60_000);
afterAll(() => stack.stop());

const send: HardCapStack['send'] = (...args) => stack.send(...args);
const newTenant = (users?: number) => stack.newTenant(users);
const billedSince = (from: number) => stack.billedSince(from);
const total = billed;

describe('the hard cap, whatever the client sends or the upstream does', () => {
  it('no max_tokens (the SDK default): 20 at once from one user are bounded by the cap each call carries', async () => {
    stack.provider.behaviour = { natural: 2_000 };
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send(key!, chat('gpt-4o-mini', { stream: i % 2 === 0 }))),
    );
    // Then one at a time until the limit answers 429 (a busy machine may have failed some above with a 503).
    for (let i = 0; i < 20 && !answers.some((a) => a.status === 429); i++)
      answers.push(await send(key!, chat('gpt-4o-mini')));
    const bills = billedSince(from);
    expect(answers.filter((a) => a.status === 200).length).toBe(bills.length);
    expect(answers.filter((a) => a.status === 429).length).toBeGreaterThan(0);
    for (const b of bills) expect(b.body).toMatchObject({ max_completion_tokens: 200 });
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it('a client that leaves mid-stream from a reasoning model: the hidden reasoning is paid for', async () => {
    stack.provider.behaviour = { natural: 2_000, reasoning: 400, thinkMs: 100 };
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    for (let i = 0; i < 5; i++)
      await send(key!, chat('o4-mini', { stream: true, max_completion_tokens: 500 }), { bytes: 1 });
    const bills = billedSince(from);
    expect(bills.length).toBeGreaterThan(0);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it.each([['reasoning_content'], ['reasoning']] as const)(
    'a client that leaves while %s streams: that channel is paid for',
    async (field) => {
      stack.provider.behaviour = { natural: 2_000, reasoning: 200, reasoningField: field, usage: false };
      const [key] = await newTenant();
      const from = stack.provider.bills.length;
      for (let i = 0; i < 4; i++) await send(key!, chat('deepseek-r1', { stream: true }), { bytes: 400 });
      const bills = billedSince(from);
      expect(bills.length).toBeGreaterThan(0);
      expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
      await settledAtLeastBilled(stack, bills);
    },
  );

  it('a client that leaves while the model thinks in silence stops the upstream before it answers', async () => {
    stack.provider.behaviour = { natural: 2_000, reasoning: 500, thinkMs: 6_000 };
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    await send(key!, chat('o4-mini', { stream: true }), { ms: 500 });
    const [bill] = billedSince(from);
    // The provider noticed its client leave within its silence: it never wrote a visible token.
    await vi.waitFor(() => expect(bill!.aborted).toBe(true), { timeout: 5_000 });
    expect(bill!.visible).toBe(0);
    expect(bill!.output).toBeLessThan(500);
    await settledAtLeastBilled(stack, [bill!]);
  });

  it('conflicting caps are refused; an upstream that reads only max_tokens still gets the cap', async () => {
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    const refused = await send(key!, chat('gpt-4o-mini', { max_completion_tokens: 1, max_tokens: 100_000 }));
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body).error).toMatchObject({ code: 'conflicting_output_caps', param: 'max_tokens' });
    expect(billedSince(from)).toHaveLength(0);
    stack.provider.behaviour = { natural: 2_000, reads: 'max_tokens' };
    for (let i = 0; i < 4; i++) await send(key!, chat('llama3.1', { stream: i % 2 === 0 }));
    const bills = billedSince(from);
    expect(bills).toHaveLength(4);
    for (const b of bills) expect(b.output).toBe(150);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it.each([
    ['an SSE body to a non-streamed request', { sseForJson: true }, false],
    ['a stream with bare CR line ends', { lineEnd: '\r' }, true],
    ['a stream with bare CR line ends and no usage', { lineEnd: '\r', usage: false }, true],
    ['an SSE body without usage to a non-streamed request', { sseForJson: true, usage: false }, false],
  ] as const)('odd framing, %s: settled at no less than the bill', async (_name, behaviour, stream) => {
    stack.provider.behaviour = { natural: 2_000, ...behaviour };
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    for (let i = 0; i < 3; i++) expect((await send(key!, chat('gpt-4o-mini', { stream }))).status).toBe(200);
    const bills = billedSince(from);
    expect(total(bills)).toBeLessThanOrEqual(USER_DAY);
    await settledAtLeastBilled(stack, bills);
  });

  it('an upstream error whose body never ends: the request ends at the body deadline, settled at its bound', async () => {
    stack.provider.behaviour = { stallErrorStatus: 400 };
    const [key] = await newTenant();
    const from = stack.provider.bills.length;
    const res = await send(key!, chat('gpt-4o-mini'));
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'upstream_timeout' });
    const bills = billedSince(from);
    await settledAtLeastBilled(stack, bills);
    expect(stack.settled.get(bills[0]!.requestId)).toBeGreaterThanOrEqual(bills[0]!.input + 200);
  });
});
