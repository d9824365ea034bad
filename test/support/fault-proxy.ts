import { createServer, type Server, type Socket, connect } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy in front of a local service that can stop answering: `pass` forwards bytes both
 * ways; `hang` keeps every connection open (new ones are accepted) and swallows what the client
 * sends, as a dependency does when it is overloaded or a network path black-holes; `drop` cuts
 * every connection as soon as the client writes.
 */
export type FaultMode = 'pass' | 'hang' | 'drop';

export interface FaultProxy {
  readonly endpoint: string;
  mode: FaultMode;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string, mode: FaultMode = 'pass'): Promise<FaultProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const proxy = { mode } as FaultProxy & { mode: FaultMode };
  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(Number(port), hostname);
    sockets.add(upstream);
    client.on('data', (chunk) => {
      if (proxy.mode === 'hang') return;
      if (proxy.mode === 'drop') {
        client.destroy();
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (proxy.mode === 'pass') client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close);
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return Object.assign(proxy, {
    endpoint: `http://127.0.0.1:${address.port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}
