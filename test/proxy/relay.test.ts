/** The SSE relay as the network delivers streams: events cut anywhere, UTF-8 split across chunks, CRLF, a last event without its blank line. */
import { describe, expect, it } from 'vitest';
import { EventTooLargeError, MAX_EVENT_BYTES, SseRelay } from '../../lambda/proxy/relay';

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
      started: new Set([0]),
      finished: new Set(),
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

  it('reads events separated by bare CR (valid SSE), also when a CRLF is cut between its two bytes', () => {
    const cr = text.replaceAll('\n', '\r');
    const { out, usage: seen } = relay(bytes(cr), [5, 17, 40]);
    expect(out).toHaveLength(5);
    expect(out.join('')).toBe(cr);
    expect(seen.text).toBe('Grüße, 日本語 🙂');
    expect(seen.reported).toEqual({ prompt_tokens: 7, completion_tokens: 3 });
    const crlf = bytes(text.replaceAll('\n', '\r\n'));
    for (let at = 1; at < crlf.length; at++) expect(relay(crlf, [at]).out).toHaveLength(5);
  });

  it('counts every output channel: content, refusal, reasoning, tool calls, function_call, audio transcripts', () => {
    const chunk = (d: Record<string, unknown>, finish: string | null = null) =>
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: d, finish_reason: finish }] })}\n\n`;
    const events = [
      chunk({ reasoning_content: 'R1' }),
      chunk({ reasoning: 'R2' }),
      chunk({ content: 'C' }),
      chunk({ refusal: 'F' }),
      chunk({ tool_calls: [{ index: 0, function: { name: 'get', arguments: '{"a":1}' } }] }),
      chunk({ function_call: { name: 'legacy', arguments: '{}' } }),
      chunk({ audio: { transcript: 'T' } }, 'stop'),
    ].join('');
    const r = new SseRelay(false);
    r.push(bytes(events));
    expect(r.usage.text).toBe('R1R2CFget{"a":1}legacy{}T');
    expect(r.complete).toBe(true);
  });

  it('knows an answer is whole only when every choice that started finished', () => {
    const choice = (index: number, finish: string | null) =>
      `data: ${JSON.stringify({ choices: [{ index, delta: { content: 'x' }, finish_reason: finish }] })}\n\n`;
    const r = new SseRelay(false);
    r.push(bytes(choice(0, null) + choice(1, null) + choice(0, 'stop')));
    expect(r.complete).toBe(false);
    r.push(bytes(choice(1, 'length')));
    expect(r.complete).toBe(true);
  });

  it('reads a whole JSON answer where SSE was expected', () => {
    const json = JSON.stringify({
      choices: [{ index: 0, message: { content: 'whole' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 4, completion_tokens: 1 },
    });
    const { out, usage: seen } = relay(bytes(json), [7]);
    expect(out.join('')).toBe(json);
    expect(seen.text).toBe('whole');
    expect(seen.reported).toEqual({ prompt_tokens: 4, completion_tokens: 1 });
  });

  it('passes an error event on only where it is safe, and a whole JSON answer followed by a blank line is read', () => {
    const leak = `data: ${JSON.stringify({ error: { message: 'Authorization: Bearer sk-up-SECRET123 refused', code: 'boom' } })}\n\n`;
    const { out } = relay(bytes(leak), []);
    expect(out.join('')).not.toContain('sk-up-SECRET');
    expect(JSON.parse(out[0]!.slice(6))).toEqual({
      error: { message: 'The model provider reported an error.', type: 'api_error', code: 'boom', param: null },
    });
    const answer = {
      choices: [{ index: 0, message: { content: 'ok' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 1 },
    };
    const json = `${JSON.stringify(answer)}\n\n`;
    expect(relay(bytes(json), []).usage.reported).toEqual({ prompt_tokens: 3, completion_tokens: 1 });
  });

  it('with n choices, is whole only when all n started and finished', () => {
    const choice = (index: number) =>
      `data: ${JSON.stringify({ choices: [{ index, delta: { content: 'x' }, finish_reason: 'stop' }] })}\n\n`;
    const r = new SseRelay(false, 2);
    r.push(bytes(choice(0)));
    expect(r.complete).toBe(false);
    r.push(bytes(choice(1)));
    expect(r.complete).toBe(true);
  });

  it('fails an event past MAX_EVENT_BYTES: a line that never ends cannot hold the relay', () => {
    const r = new SseRelay(false);
    const piece = bytes('x'.repeat(64 * 1024));
    expect(() => {
      for (let i = 0; i < 80; i++) r.push(piece);
    }).toThrow(EventTooLargeError);
    // What the proxy logs names the error and the size; an event of exactly MAX_EVENT_BYTES still waits for its end.
    const err = (() => {
      try {
        new SseRelay(false).push(bytes('x'.repeat(MAX_EVENT_BYTES + 1)));
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.name).toBe('EventTooLargeError');
    expect(err?.message).toBe(`an upstream event passed ${MAX_EVENT_BYTES} bytes without ending`);
    const atMost = new SseRelay(false);
    expect(atMost.push(bytes(`data: ${'x'.repeat(MAX_EVENT_BYTES - 6)}`))).toEqual([]);
    expect(atMost.push(bytes('\n\n'))).toHaveLength(1);
  });

  it('reads what a careless upstream sends without failing: null choices, deltas and data, content parts, no space after the colon', () => {
    const events = [
      'data: null\n\n',
      'data: [1, 2]\n\n',
      `data: ${JSON.stringify({ choices: [null, { index: 1, delta: null }] })}\n\n`,
      `data:${JSON.stringify({ choices: [{ index: 0, delta: { content: 'a b' } }] })}\n\n`,
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: [{ type: 'text', text: 'P1' }, { refusal: 'P2' }, null] } }] })}\n\n`,
      `data: ${JSON.stringify({ choices: [{ index: 0, finish_reason: 'stop' }] })}\n\n`,
    ].join('');
    const r = new SseRelay(false, 2);
    const out = r.push(bytes(events));
    expect(out.join('')).toBe(events);
    expect(r.usage.text).toBe('a bP1P2');
    expect(r.usage.started).toEqual(new Set([0, 1]));
    expect(r.usage.finished).toEqual(new Set([0]));
    expect(r.usage.done).toBe(false);
    r.push(bytes('data: [DONE] \n\n'));
    expect(r.usage.done).toBe(true);
    // A whole answer whose message holds content parts counts them too.
    const whole = new SseRelay(false);
    whole.readWhole(JSON.stringify({ choices: [{ index: 0, message: { content: [{ type: 'text', text: 'W' }] } }] }));
    expect(whole.usage.text).toBe('W');
  });

  it('passes a whole JSON error where SSE was expected as JSON, with only what is safe', () => {
    const leak = JSON.stringify({
      error: { message: 'echo: x-api-key sk-up-SECRET9 was refused', type: 'invalid_request_error' },
    });
    const { out } = relay(bytes(leak), [9]);
    expect(out).toHaveLength(1);
    expect(JSON.parse(out[0]!)).toEqual({
      error: { message: 'The model provider reported an error.', type: 'api_error', code: null, param: null },
    });
  });

  it('drops only the usage-only event it asked for: usage beside content, or a chunk without usage, is forwarded', () => {
    const azureFirst = `data: ${JSON.stringify({ choices: [], prompt_filter_results: [{ prompt_index: 0 }] })}\n\n`;
    const contentAndUsage = {
      choices: [{ index: 0, delta: { content: 'z' } }],
      usage: { prompt_tokens: 2, completion_tokens: 1 },
    };
    const withContent = `data: ${JSON.stringify(contentAndUsage)}\n\n`;
    const noChoices = `data: ${JSON.stringify({ usage: { prompt_tokens: 2, completion_tokens: 1 } })}\n\n`;
    const after = `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`;
    const { out, usage: seen } = relay(bytes(azureFirst + withContent + noChoices + after), [], false);
    expect(out).toEqual([azureFirst, withContent, after]);
    expect(seen.reported).toEqual({ prompt_tokens: 2, completion_tokens: 1 });
    expect(seen.text).toBe('z');
    // The usage-only event it asked for is dropped also when it is the last and lacks its blank line.
    const last = relay(bytes(delta('y') + usage.trimEnd()), [], false);
    expect(last.out).toEqual([delta('y')]);
    expect(last.usage.reported).toEqual({ prompt_tokens: 7, completion_tokens: 3 });
  });

  it('drops the usage-only event it asked for itself, and keeps it when the client asked', () => {
    expect(relay(stream, [], false).out.join('')).toBe(text.replace(usage, ''));
    expect(relay(stream, [], true).out.join('')).toBe(text);
    expect(relay(stream, [], false).usage.reported).toEqual({ prompt_tokens: 7, completion_tokens: 3 });
  });
});
