// Runs inside the cluster's network namespace (started by node/cluster.ts through nsenter): the reverse of
// netns-forwarder.mjs. Listens on HOST:PORT, an address only reachable inside the namespace, and passes each
// connection to a Unix socket served by the test process in the machine's own namespace.
// Usage: node netns-listener.mjs HOST:PORT SOCKET
import net from 'node:net';

const [address, socketPath] = process.argv.slice(2);
const [host, port] = address.split(':');
net
  .createServer((client) => {
    const upstream = net.connect(socketPath);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  })
  .listen(Number(port), host, () => process.stdout.write(`listening on ${address} -> ${socketPath}\n`));
