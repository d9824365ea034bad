import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens on a free local port; `stop` ends open connections (streams in flight included) and closes. */
export async function listenLocal(server: Server): Promise<{ port: number; stop: () => Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
