// A TLS server that accepts everything the admission port must refuse: TLS 1.0 and 1.1, CBC suites,
// static RSA key exchange. TLS tests probe it first (a negative control), so a refusal they then see
// from `serve` cannot come from a client that never offered the weak protocol or suite.
import { createServer, type TLSSocket } from 'node:tls';
import type { TestPki } from './certificates.ts';

export interface PermissiveTlsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Listens on a free loopback port with the pki's serving pair; a connection is held until the client ends it. */
export async function startPermissiveTlsServer(pki: TestPki): Promise<PermissiveTlsServer> {
  const sockets = new Set<TLSSocket>();
  const server = createServer(
    {
      key: pki.serving.keyPem,
      cert: pki.serving.certPem,
      minVersion: 'TLSv1',
      ciphers: 'ALL:@SECLEVEL=0',
    },
    (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      socket.resume();
      socket.once('end', () => socket.end());
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((listening, failed) => {
    server.once('error', failed);
    server.listen(0, '127.0.0.1', listening);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('permissive TLS server has no port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((closed) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => closed());
      }),
  };
}
