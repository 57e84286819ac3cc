// Free TCP ports on the loopback interface, for programs that need a port number up front
// (docker-registry takes "addr: host:port" and cannot report a kernel-chosen port back).
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * Asks the kernel for a free port on 127.0.0.1 by listening on port 0, then releases it.
 * Another process could grab it between release and use; that window is tiny on a test box.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`freePort: unexpected server address ${JSON.stringify(address)}`));
        return;
      }
      const { port } = address;
      server.close((error) => (error ? reject(error) : resolve(port)));
    });
  });
}

/** Starts an in-process server on a kernel-chosen loopback port; resolves with its base URL. */
export async function listenOnLoopback(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}
