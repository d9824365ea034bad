/**
 * The canonical answer (OpenAI chat: JSON, SSE chunks, or an error in OpenAI's shape) in the
 * client's dialect: the last step of a request on a route that speaks another API. The relay
 * and settlement have already read the canonical form; this only changes what the client reads.
 */
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream';
import type { ClientDialect, ProxyError } from './dialect';
import type { ProxyResponse } from './settle';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** An event ends at a blank line: two line ends in a row, each CRLF, LF or CR (as in relay.ts). */
const EVENT_END = /(\r\n|\n|\r(?!\n))(\r\n|\n|\r(?!\n))/;

/** The `data:` payload of one canonical SSE event (null: none). */
function dataOf(event: string): string | null {
  const lines = event.split(/\r\n|\n|\r/).filter((line) => line === 'data' || line.startsWith('data:'));
  return lines.length ? lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n') : null;
}

const UNTRANSLATABLE: ProxyError = {
  message: 'The model provider’s answer could not be read.',
  type: 'api_error',
  code: 'upstream_not_json',
};

/** One canonical stream -> the dialect's events; the canonical body is destroyed with it (client gone). */
function translateStream(
  dialect: ClientDialect,
  canonical: Readable,
  request: Record<string, unknown>,
  inputTokens: number,
): Readable {
  const translator = dialect.stream(request, inputTokens);
  let broken = false;
  let finished = false;
  let pending = '';
  const translate = (event: string): string[] => {
    const data = dataOf(event);
    if (data === null || data.trim() === '[DONE]') return [];
    const json = parse(data);
    if (!isRecord(json)) return [];
    if (isRecord(json.error)) broken = true;
    const choices = Array.isArray(json.choices) ? json.choices : [];
    if (choices.some((c) => isRecord(c) && typeof c.finish_reason === 'string' && c.finish_reason)) finished = true;
    return translator.chunk(json);
  };
  // The relay passes events on as they came (lines may end in CRLF, LF or CR), and a stream may
  // hand several over in one chunk: split them as the relay does.
  const take = (final: boolean): string[] => {
    const events: string[] = [];
    for (let match = EVENT_END.exec(pending); match; match = EVENT_END.exec(pending)) {
      events.push(pending.slice(0, match.index + match[0].length));
      pending = pending.slice(match.index + match[0].length);
    }
    if (final && pending.trim()) events.push(pending);
    if (final) pending = '';
    return events.flatMap(translate);
  };
  const out = new Transform({
    transform(chunk: Buffer | string, _encoding, callback) {
      pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      callback(null, take(false).join(''));
    },
    flush(callback) {
      callback(null, [...take(true), ...translator.end(!broken && finished)].join(''));
    },
  });
  // A client that leaves destroys `out`; pipeline then destroys the canonical body, which stops the upstream.
  pipeline(canonical, out, () => {});
  return out;
}

/** `extra` over `headers`, a name in another case replacing the one there (HTTP header names ignore case). */
function withHeaders(headers: Readonly<Record<string, string>>, extra: Readonly<Record<string, string>>) {
  const names = new Set(Object.keys(extra).map((name) => name.toLowerCase()));
  const kept = Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase()));
  return { ...Object.fromEntries(kept), ...extra };
}

/** The canonical answer as the dialect's clients expect it. `request`: the client's own body. */
export function speak(
  dialect: ClientDialect,
  response: ProxyResponse,
  request: Record<string, unknown> | undefined,
  inputTokens = 0,
): ProxyResponse {
  const headers = withHeaders(response.headers, dialect.headers(response.headers));
  const { body, statusCode } = response;
  if (statusCode >= 400) {
    const json = typeof body === 'string' ? parse(body) : undefined;
    const error = isRecord(json) && isRecord(json.error) ? (json.error as unknown as ProxyError) : UNTRANSLATABLE;
    return { ...response, headers, body: dialect.errorBody(statusCode, error) };
  }
  if (typeof body !== 'string')
    return { ...response, headers, body: translateStream(dialect, body, request ?? {}, inputTokens) };
  const json = parse(body);
  if (!isRecord(json) || !Array.isArray(json.choices))
    return {
      ...response,
      statusCode: 502,
      headers: { ...headers, 'content-type': 'application/json' },
      body: dialect.errorBody(502, UNTRANSLATABLE),
    };
  return {
    ...response,
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(dialect.fromChat(json, request ?? {})),
  };
}
