import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { messagesDialect } from '../../lambda/proxy/dialects/messages';
import { responsesDialect } from '../../lambda/proxy/dialects/responses';
import { speak } from '../../lambda/proxy/speak';

const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] });
const usage = JSON.stringify({
  id: 'c',
  object: 'chat.completion.chunk',
  choices: [],
  usage: { prompt_tokens: 9, completion_tokens: 2 },
});

/** The canonical stream as one chunk (a stream may hand several events over at once), lines ending in `end`. */
function canonical(end: string): Readable {
  const events = [
    chunk({ role: 'assistant', content: 'Hi' }),
    chunk({ content: '!' }),
    chunk({}, 'stop'),
    usage,
    '[DONE]',
  ];
  return Readable.from([events.map((e) => `data: ${e}${end}${end}`).join('')]);
}

async function read(body: Readable): Promise<string> {
  let text = '';
  for await (const c of body) text += String(c);
  return text;
}

describe('a canonical stream in another dialect', () => {
  it.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('reads events that came together in one chunk, lines ending in %s', async (_name, end) => {
    const request = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], stream: true };
    const answer = speak(messagesDialect, { statusCode: 200, headers: {}, body: canonical(end) }, request, 9);
    const text = await read(answer.body as Readable);
    const types = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(types[0]).toBe('message_start');
    expect(types.at(-1)).toBe('message_stop');
    const deltas = [...text.matchAll(/"text":"([^"]*)"/g)].map((m) => m[1]).join('');
    expect(deltas).toBe('Hi!');
    expect(text).toContain('"output_tokens":2');
  });

  it('ends a Responses stream with response.completed carrying the usage', async () => {
    const answer = speak(
      responsesDialect,
      { statusCode: 200, headers: {}, body: canonical('\r\n') },
      { model: 'm', input: 'hi', stream: true },
      9,
    );
    const text = await read(answer.body as Readable);
    expect(text).toMatch(/event: response\.completed\ndata: .*"output_tokens":2/);
  });

  it('turns an error answer into the dialect’s shape, keeping the status', () => {
    const body = JSON.stringify({
      error: { message: 'Slow down.', type: 'rate_limit_exceeded', code: 'user_tokens_per_day' },
    });
    const answer = speak(messagesDialect, { statusCode: 429, headers: { 'Retry-After': '3' }, body }, {}, 0);
    expect(answer.statusCode).toBe(429);
    expect(JSON.parse(answer.body as string)).toEqual({
      type: 'error',
      error: { type: 'rate_limit_error', message: 'Slow down.' },
    });
    // One retry-after, however the names are spelt.
    expect(Object.keys(answer.headers).filter((h) => h.toLowerCase() === 'retry-after')).toHaveLength(1);
  });
});
