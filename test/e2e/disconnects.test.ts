/**
 * npm start survives whatever a client does: leaving mid-upload, before the first byte, mid-stream,
 * or reading so slowly that the stream backs up. After each, the same stack still answers, the
 * upstream was stopped, and the request was settled at its bound (its usage never came).
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { countMessages } from '../../lambda/proxy/input-bound';
import { parseConfig, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { setMetricSink } from '../../lambda/runtime/metrics';
import { type LocalStack, startLocal } from '../../local/start';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { demo: { user: [requestsPerMinute(10_000), tokensPerDay(10_000_000)], outputReservation: 100 } },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
    }),
  ),
);

let local: LocalStack;
let slow: UpstreamStandIn;
/** Tokens settled per request id, from the proxy's metric lines. */
const settled = new Map<string, number>();
/** A request's bound: its input and the plan's output cap, which the upstream was sent. */
const BOUND = countMessages([{ role: 'user', content: 'hi' }], 'o200k_base') + 100;
beforeAll(async () => {
  // An upstream that takes its time: 40 words, 50 ms apart.
  slow = await startUpstreamStandIn({
    words: Array.from({ length: 40 }, (_, i) => ` word${i}`),
    delayMs: 50,
    usage: { prompt_tokens: 5, completion_tokens: 40 },
  });
  local = await startLocal({
    port: 0,
    config,
    apiKey: 'sk-lrl-local-disconnects-000000001',
    upstreamBaseUrl: slow.baseUrl,
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
  await slow.stop();
});

const body = (stream: boolean) =>
  JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream });
const headers = { authorization: 'Bearer sk-lrl-local-disconnects-000000001', 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The upstream saw its client (the proxy) leave, and the request was settled at its bound. */
async function stoppedAndSettledAtBound(before: { aborted: number; requests: number }): Promise<void> {
  await vi.waitFor(() => expect(slow.aborted).toBe(before.aborted + 1), { timeout: 5_000 });
  const { requestId } = slow.requests[before.requests]!;
  await vi.waitFor(() => expect(settled.get(requestId!)).toBe(BOUND), { timeout: 5_000 });
}

async function stillAnswers(): Promise<void> {
  const res = await fetch(`${local.baseUrl}/chat/completions`, { method: 'POST', headers, body: body(false) });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toContain(
    'word39',
  );
}

describe('a client that goes away', () => {
  it('mid-upload: nothing reaches the upstream, nothing is settled', async () => {
    const before = { requests: slow.requests.length, settled: settled.size };
    const url = new URL(local.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: ` +
        `${headers.authorization}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"model":`,
    );
    await sleep(100);
    socket.destroy();
    await sleep(100);
    expect({ requests: slow.requests.length, settled: settled.size }).toEqual(before);
    await stillAnswers();
  });

  it('before the first byte (a non-streamed answer still being generated)', async () => {
    slow.behaviour = { ...slow.behaviour, delayMs: 1_000 };
    const before = { aborted: slow.aborted, requests: slow.requests.length };
    const abort = new AbortController();
    const pending = fetch(`${local.baseUrl}/chat/completions`, {
      method: 'POST',
      headers,
      body: body(false),
      signal: abort.signal,
    });
    while (slow.requests.length === before.requests) await sleep(10); // the upstream is working on it
    abort.abort();
    await expect(pending).rejects.toThrow();
    slow.behaviour = { ...slow.behaviour, delayMs: 50 };
    // Nobody waits for the answer: the upstream is stopped (it stops billing), and what it may
    // have generated is unknown, so the bound is settled.
    await stoppedAndSettledAtBound(before);
    await stillAnswers();
  });

  it('mid-stream: the upstream is stopped', async () => {
    const before = { aborted: slow.aborted, requests: slow.requests.length };
    const abort = new AbortController();
    const res = await fetch(`${local.baseUrl}/chat/completions`, {
      method: 'POST',
      headers,
      body: body(true),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    abort.abort();
    await stoppedAndSettledAtBound(before);
    await stillAnswers();
  });

  it('reading slowly, then leaving', async () => {
    const before = { aborted: slow.aborted, requests: slow.requests.length };
    const url = new URL(local.baseUrl);
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: '/v1/chat/completions', method: 'POST', headers },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.pause(); // read nothing for a while: the stream backs up
          setTimeout(() => {
            res.destroy();
            resolve();
          }, 800);
        },
      );
      req.on('error', reject);
      req.end(body(true));
    });
    await stoppedAndSettledAtBound(before);
    await stillAnswers();
  });
});
