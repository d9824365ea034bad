import { parseArgs } from 'node:util';
import { API_KEY_PATTERN } from '../lambda/runtime/directory';
import { UPSTREAM_KINDS, type UpstreamKind } from '../lambda/gateway/api';
import type { LocalOptions } from './start';

export const START_HELP = `npm start [-- options]: the whole API on this machine (DynamoDB Local, the local gateway, the functions)

Options:
  --port <n>        port of the local API (default 8787; 0 picks a free one)
  --persist <dir>   keep DynamoDB Local's data in <dir> (default: in memory)
  --upstream <kind> openai (default), bedrock or anthropic: the built-in stand-in that speaks
                    that provider's API (Bedrock's: Converse over SigV4, signatures checked)
  --help            this text

Environment:
  PORT                 as --port
  LOCAL_API_KEY        the demo key to create (20-200 printable ASCII characters; default: a new random key)
  UPSTREAM_KIND        as --upstream
  UPSTREAM_BASE_URL    a real upstream of that kind (openai or anthropic) instead of the built-in stand-in (http(s) URL)
  UPSTREAM_API_KEY     its key (leave unset for keyless upstreams such as vLLM or Ollama)
  LIMITER_LOG          all: print every log line (default: errors and a summary every few seconds)

Needs Node 22 (npm ci installs it for the scripts) and Java 17 on PATH for DynamoDB Local.
`;

export type StartOptions = { help: true } | { help?: false; options: LocalOptions } | { error: string };

/**
 * Reads npm start's options and environment before anything starts: the options to start with,
 * the help, or one line saying what is wrong and how to fix it (the caller exits with 2).
 */
export function parseStartOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): StartOptions {
  let values: { port?: string; persist?: string; upstream?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        port: { type: 'string' },
        persist: { type: 'string' },
        upstream: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return {
      error: `npm start: ${(err as Error).message.split('\n')[0]!.replace(/\. To specify.*$/, '')}. Run npm start -- --help for the options.`,
    };
  }
  if (values.help) return { help: true };
  const portText = values.port ?? env.PORT;
  const port = portText === undefined ? 8787 : Number(portText);
  if (
    !Number.isInteger(port) ||
    port < 0 ||
    port > 65_535 ||
    (portText !== undefined && !/^\d+$/.test(portText.trim()))
  ) {
    return {
      error:
        `npm start: ${values.port !== undefined ? '--port' : 'PORT'} is ${JSON.stringify(portText)}; ` +
        'give a port number from 0 to 65535 (0 picks a free one).',
    };
  }
  if (values.persist !== undefined && !values.persist.trim())
    return { error: 'npm start: --persist needs a folder, e.g. --persist .data' };
  const key = env.LOCAL_API_KEY;
  if (key !== undefined && !API_KEY_PATTERN.test(key))
    return {
      error: `npm start: LOCAL_API_KEY must be 20-200 printable ASCII characters without spaces (it has ${key.length}); unset it for a random key.`,
    };
  const upstream = env.UPSTREAM_BASE_URL;
  if (upstream !== undefined && !/^https?:\/\/[^\s/]+/.test(upstream))
    return {
      error: `npm start: UPSTREAM_BASE_URL is ${JSON.stringify(upstream)}; give an absolute http(s) URL such as http://localhost:11434/v1`,
    };
  const kindText = values.upstream ?? env.UPSTREAM_KIND ?? 'openai';
  if (!(UPSTREAM_KINDS as readonly string[]).includes(kindText))
    return {
      error:
        `npm start: ${values.upstream !== undefined ? '--upstream' : 'UPSTREAM_KIND'} is ` +
        `${JSON.stringify(kindText)}; use ${UPSTREAM_KINDS.join(', ')}`,
    };
  const upstreamKind = kindText as UpstreamKind;
  if (upstreamKind === 'bedrock' && upstream !== undefined)
    return {
      error:
        'npm start: UPSTREAM_BASE_URL names an HTTP upstream, but --upstream bedrock runs the Bedrock stand-in ' +
        '(nothing here reaches AWS); unset one of them',
    };
  return {
    options: {
      port,
      ...(values.persist ? { persistDir: values.persist } : {}),
      ...(key ? { apiKey: key } : {}),
      ...(upstreamKind !== 'openai' ? { upstreamKind } : {}),
      ...(upstream ? { upstreamBaseUrl: upstream, upstreamApiKey: env.UPSTREAM_API_KEY ?? '' } : {}),
    },
  };
}

/** One line for a start-up failure: what went wrong and what to do. */
export function startFailure(err: Error & { code?: string }, port: number | undefined): string {
  if (err.code === 'EADDRINUSE' || /EADDRINUSE/.test(err.message))
    return `port ${port} is in use; stop what uses it or pick another with --port (0 picks a free one).`;
  if (/Java/.test(err.message)) return err.message;
  return `could not start: ${err.message.split('\n')[0]}`;
}
