// Runs inside the cluster's network namespace (started by node/cluster.ts through nsenter): listens on
// Unix sockets, which the test process in the machine's own namespace can reach through the file
// system, and forwards each connection to an address only reachable inside the namespace.
// Usage: node netns-forwarder.mjs SOCKET HOST:PORT [SOCKET HOST:PORT ...]
import { rmSync } from 'node:fs';
import net from 'node:net';

const args = process.argv.slice(2);
for (let i = 0; i + 1 < args.length; i += 2) {
  const socketPath = args[i];
  const [host, port] = args[i + 1].split(':');
  rmSync(socketPath, { force: true });
  net
    .createServer((client) => {
      const upstream = net.connect(Number(port), host);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    })
    .listen(socketPath, () => process.stdout.write(`forwarding ${socketPath} -> ${host}:${port}\n`));
}
