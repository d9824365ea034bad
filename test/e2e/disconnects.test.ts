/**
 * npm start survives whatever a client does: leaving mid-upload, before the first byte, mid-stream,
 * or reading so slowly that the stream backs up. After each, the same stack still answers.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, requestsPerMinute } from '../../lambda/engine/plans';
import { type LocalStack, startLocal } from '../../local/start';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { demo: { user: [requestsPerMinute(10_000)] } },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
    }),
  ),
);

let local: LocalStack;
let slow: UpstreamStandIn;
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
}, 60_000);
afterAll(async () => {
  await local.stop();
  await slow.stop();
});

const body = (stream: boolean) =>
  JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream });
const headers = { authorization: 'Bearer sk-lrl-local-disconnects-000000001', 'content-type': 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stillAnswers(): Promise<void> {
  const res = await fetch(`${local.baseUrl}/chat/completions`, { method: 'POST', headers, body: body(false) });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toContain(
    'word39',
  );
}

describe('a client that goes away', () => {
  it('mid-upload', async () => {
    const url = new URL(local.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: ${headers.authorization}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"model":`,
    );
    await sleep(100);
    socket.destroy();
    await sleep(100);
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
    // As on Lambda, the function runs on after the client left: the answer it paid for is awaited
    // and settled in full, not cut off halfway (the provider bills what it generated either way).
    await sleep(1_200);
    expect(slow.aborted).toBe(before.aborted);
    await stillAnswers();
  });

  it('mid-stream: the upstream is stopped', async () => {
    const before = slow.aborted;
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
    await sleep(300);
    expect(slow.aborted).toBe(before + 1);
    await stillAnswers();
  });

  it('reading slowly, then leaving', async () => {
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
    await sleep(200);
    await stillAnswers();
  });
});
