// The namespace watcher against a loopback stand-in for the apiserver that lists and then never
// answers the watch: stop() must end that request at once, not when client-node's 30 s timer fires.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { makeClients } from './client.ts';
import { afterEach, expect, test } from 'vitest';
import { namespaceInfo, NamespaceWatcher } from './namespace-watch.ts';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

test('stop() ends a watch request still waiting for its response headers', async () => {
  let watchRequest: IncomingMessage | undefined;
  let resolveWatching: (request: IncomingMessage) => void = () => {};
  const watching = new Promise<IncomingMessage>((resolve) => (resolveWatching = resolve));
  const apiserver = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://apiserver');
    if (url.searchParams.get('watch') === 'true') {
      watchRequest = request;
      resolveWatching(request);
      return; // Black-holed: no headers, ever.
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ kind: 'NamespaceList', metadata: { resourceVersion: '7' }, items: [] }));
  });
  server = apiserver;
  await new Promise<void>((resolve) => apiserver.listen(0, '127.0.0.1', resolve));
  const { port } = apiserver.address() as AddressInfo;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const lists: number[] = [];
  const watcher = new NamespaceWatcher({
    raw: makeClients(kubeConfig, { userAgent: 'test' }).raw,
    kubeConfig,
    handlers: { onList: (all) => lists.push(all.length), onUpsert: () => {}, onDelete: () => {}, onError: () => {} },
    watchTimeoutSeconds: 60,
    backoff: { duration: 10, factor: 2, jitter: 0, steps: Number.POSITIVE_INFINITY, cap: 100 },
  });
  watcher.start();
  const request = await watching;
  expect(lists).toEqual([0]);
  expect(watcher.hasSynced()).toBe(true);

  const closed = new Promise<number>((resolve) => {
    const stoppedAt = Date.now();
    request.socket.once('close', () => resolve(Date.now() - stoppedAt));
  });
  watcher.stop();
  const afterMs = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5_000))]);
  expect(watchRequest?.socket.destroyed).toBe(true);
  expect(afterMs).toBeGreaterThanOrEqual(0);
  expect(afterMs).toBeLessThan(1_000);
}, 15_000);

test('a namespace is kept as its name, uid, labels and whether it is being deleted, and nothing else', () => {
  const labels = { 'kubernetes.io/metadata.name': 'team-a', 'acr-pull-webhook/inject': 'enabled' };
  const managedFields = [{ manager: 'kubectl', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: {} }];
  expect(namespaceInfo({ metadata: { name: 'team-a', uid: 'u-1', labels, managedFields }, status: {} })).toEqual({
    name: 'team-a',
    uid: 'u-1',
    labels,
    terminating: false,
  });
  expect(namespaceInfo({ metadata: { name: 'b' }, status: { phase: 'Terminating' } })).toEqual({
    name: 'b',
    labels: {},
    terminating: true,
  });
});
