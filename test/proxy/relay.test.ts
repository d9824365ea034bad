/** The SSE relay as the network delivers streams: events cut anywhere, UTF-8 split across chunks, CRLF, a last event without its blank line. */
import { describe, expect, it } from 'vitest';
import { SseRelay } from '../../lambda/proxy/relay';

const bytes = (text: string) => new TextEncoder().encode(text);
const delta = (content: string) => `data: ${JSON.stringify({ choices: [{ delta: { content } }] })}\n\n`;
const usage = `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 3 } })}\n\n`;

/** Feeds `stream` cut at the given byte offsets; returns what was forwarded, event by event. */
function relay(stream: Uint8Array, cuts: number[], keepUsageEvent = true) {
  const r = new SseRelay(keepUsageEvent);
  const out: string[] = [];
  let from = 0;
  for (const at of [...cuts, stream.length]) {
    out.push(...r.push(stream.subarray(from, at)));
    from = at;
  }
  out.push(...r.flush());
  return { out, usage: r.usage };
}

describe('the SSE relay', () => {
  const text = `${delta('Grüße, ')}${delta('日本語 ')}${delta('🙂')}${usage}data: [DONE]\n\n`;
  const stream = bytes(text);

  it('forwards the same events whatever the chunking, cut mid-line and mid-character included', () => {
    const whole = relay(stream, []);
    expect(whole.out.join('')).toBe(text);
    expect(whole.usage).toEqual({
      text: 'Grüße, 日本語 🙂',
      done: true,
      reported: { prompt_tokens: 7, completion_tokens: 3 },
    });
    // Every single cut point, and a cut between every byte: 'ü' is 2 bytes, '日' 3, '🙂' 4.
    for (let at = 1; at < stream.length; at++) expect(relay(stream, [at]).out).toEqual(whole.out);
    const everyByte = relay(
      stream,
      Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
    );
    expect(everyByte.out).toEqual(whole.out);
    expect(everyByte.usage).toEqual(whole.usage);
  });

  it('reads events separated by CRLF', () => {
    const crlf = text.replaceAll('\n', '\r\n');
    const { out, usage: seen } = relay(bytes(crlf), [5, 17, 40]);
    expect(out.join('')).toBe(crlf);
    expect(seen.text).toBe('Grüße, 日本語 🙂');
    expect(seen.done).toBe(true);
  });

  it('forwards and reads a last event that lacks its blank line', () => {
    const unfinished = `${delta('a')}data: ${JSON.stringify({ choices: [{ delta: { content: 'b' } }] })}`;
    const { out, usage: seen } = relay(bytes(unfinished), [3]);
    expect(out).toHaveLength(2);
    expect(out.join('')).toBe(unfinished);
    expect(seen.text).toBe('ab');
  });

  it('drops the usage-only event it asked for itself, and keeps it when the client asked', () => {
    expect(relay(stream, [], false).out.join('')).toBe(text.replace(usage, ''));
    expect(relay(stream, [], true).out.join('')).toBe(text);
    expect(relay(stream, [], false).usage.reported).toEqual({ prompt_tokens: 7, completion_tokens: 3 });
  });
});
