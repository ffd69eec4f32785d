// The --once snapshot of the configured Secrets against a loopback apiserver stand-in: one list per
// name answers every read; a list the RBAC refuses falls back to a GET per Secret.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, expect, test } from 'vitest';
import { makeClients, type KubeClients } from './client.ts';
import { listedSecretStore } from './secret-watch.ts';
import { secretStore } from './secrets.ts';

let server: Server | undefined;
let clients: KubeClients | undefined;
afterEach(async () => {
  await clients?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

async function standIn(listStatus: number): Promise<{ requests: string[]; clients: KubeClients }> {
  const requests: string[] = [];
  server = createServer((request, response) => {
    requests.push(`${request.method} ${decodeURIComponent(request.url ?? '')}`);
    const url = new URL(request.url ?? '/', 'http://apiserver');
    response.setHeader('content-type', 'application/json');
    if (url.pathname === '/api/v1/secrets' && listStatus === 200) {
      const secret = (namespace: string) => ({ metadata: { name: 'acr-x', namespace, resourceVersion: '5' } });
      response.end(JSON.stringify({ kind: 'SecretList', metadata: { resourceVersion: '9' }, items: [secret('a')] }));
      return;
    }
    if (request.method === 'PUT') {
      response.statusCode = 409;
      response.end(JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Conflict', code: 409 }));
      return;
    }
    const code = url.pathname === '/api/v1/secrets' ? listStatus : 404;
    response.statusCode = code;
    response.end(
      JSON.stringify({ kind: 'Status', status: 'Failure', reason: code === 403 ? 'Forbidden' : 'NotFound', code }),
    );
  });
  const listening = server;
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  const { port } = listening.address() as AddressInfo;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  clients = makeClients(kubeConfig, { userAgent: 'test' });
  return { requests, clients };
}

test('--once lists each configured name cluster-wide once, and reads every Secret from that list', async () => {
  const { requests, clients } = await standIn(200);
  const fallbacks: string[] = [];
  const store = await listedSecretStore(clients.core, ['acr-x', 'acr-x'], secretStore(clients.core), (m) =>
    fallbacks.push(m),
  );
  expect((await store.get('a', 'acr-x'))?.metadata?.resourceVersion).toBe('5');
  expect(await store.get('b', 'acr-x')).toBeUndefined();
  expect(requests).toEqual(['GET /api/v1/secrets?fieldSelector=metadata.name=acr-x&limit=500']);
  expect(fallbacks).toEqual([]);
});

test('a list the RBAC refuses falls back to a GET per Secret, saying why', async () => {
  const { requests, clients } = await standIn(403);
  const fallbacks: string[] = [];
  const store = await listedSecretStore(clients.core, ['acr-x'], secretStore(clients.core), (m) => fallbacks.push(m));
  expect(await store.get('b', 'acr-x')).toBeUndefined();
  expect(requests).toEqual([
    'GET /api/v1/secrets?fieldSelector=metadata.name=acr-x&limit=500',
    'GET /api/v1/namespaces/b/secrets/acr-x',
  ]);
  expect(fallbacks).toEqual([expect.stringContaining('HTTP 403 Forbidden')]);
});

test('after a write loses a race (409), the next read of that Secret goes to the apiserver, once', async () => {
  const { requests, clients } = await standIn(200);
  const store = await listedSecretStore(clients.core, ['acr-x'], secretStore(clients.core), () => {});
  const read = await store.get('a', 'acr-x');
  await expect(store.replace('a', 'acr-x', { ...read, data: {} })).rejects.toMatchObject({ status: 409 });
  await store.get('a', 'acr-x');
  await store.get('a', 'acr-x');
  expect(requests.slice(1)).toEqual([
    'PUT /api/v1/namespaces/a/secrets/acr-x',
    'GET /api/v1/namespaces/a/secrets/acr-x',
  ]);
});
