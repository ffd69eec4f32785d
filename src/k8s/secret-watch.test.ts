// The --once snapshot of the configured Secrets against a loopback apiserver stand-in: one list per
// name answers every read; a list the RBAC refuses falls back to a GET per Secret.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, test } from 'vitest';
import { makeClients, type KubeClients } from './client.ts';
import { desiredSecrets, secretManifest } from '../sync/desired.ts';
import { planPrune, planSecret } from '../sync/plan.ts';
import { cachedSecret, listedSecretStore } from './secret-watch.ts';
import type { SecretObject } from './secret-object.ts';
import { secretStore } from './secrets.ts';

let server: Server | undefined;
let clients: KubeClients | undefined;
afterEach(async () => {
  await clients?.close();
  clients = undefined;
  const closing = server;
  server = undefined;
  closing?.closeAllConnections();
  await new Promise((resolve) => (closing === undefined ? resolve(undefined) : closing.close(resolve)));
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
  const store = await listedSecretStore(clients.raw, ['acr-x', 'acr-x'], secretStore(clients.raw), (m) =>
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
  const store = await listedSecretStore(clients.raw, ['acr-x'], secretStore(clients.raw), (m) => fallbacks.push(m));
  expect(await store.get('b', 'acr-x')).toBeUndefined();
  expect(requests).toEqual([
    'GET /api/v1/secrets?fieldSelector=metadata.name=acr-x&limit=500',
    'GET /api/v1/namespaces/b/secrets/acr-x',
  ]);
  expect(fallbacks).toEqual([expect.stringContaining('HTTP 403 Forbidden')]);
});

test('after a write loses a race (409), the next read of that Secret goes to the apiserver, once', async () => {
  const { requests, clients } = await standIn(200);
  const store = await listedSecretStore(clients.raw, ['acr-x'], secretStore(clients.raw), () => {});
  const read = await store.get('a', 'acr-x');
  await expect(store.replace('a', 'acr-x', { ...read, data: {} })).rejects.toMatchObject({ status: 409 });
  await store.get('a', 'acr-x');
  await store.get('a', 'acr-x');
  expect(requests.slice(1)).toEqual([
    'PUT /api/v1/namespaces/a/secrets/acr-x',
    'GET /api/v1/namespaces/a/secrets/acr-x',
  ]);
});

describe('the cached form of a watched Secret', () => {
  const [desired] = desiredSecrets([{ server: 'r.azurecr.io', secretName: 'acr-r', username: 'u', password: 'p' }]);
  if (desired === undefined) throw new Error('no desired secret');
  /** Ours as the apiserver returns it, with what others added: a label, an owner, a finalizer. */
  const returned = (namespace: string, uid: string): SecretObject => {
    const manifest = secretManifest(desired, namespace);
    return {
      ...manifest,
      metadata: {
        ...manifest.metadata,
        uid,
        resourceVersion: `${uid}-rv`,
        creationTimestamp: '2026-12-01T00:00:00Z',
        selfLink: `/api/v1/namespaces/${namespace}/secrets/acr-r`,
        labels: { ...manifest.metadata?.labels, team: 'a' },
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: 'o-1' }],
        finalizers: ['example.com/keep'],
        managedFields: [{ manager: 'acr-pull-webhook', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: {} }],
      },
    };
  };

  test('holds what the plan reads and an update writes back, and nothing the apiserver ignores on a PUT', () => {
    expect(cachedSecret(returned('team-a', 'uid-1'))).toEqual({
      metadata: {
        name: 'acr-r',
        namespace: 'team-a',
        uid: 'uid-1',
        resourceVersion: 'uid-1-rv',
        labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook', team: 'a' },
        annotations: { 'acr-pull-webhook/content-hash': desired.contentHash },
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: 'o-1' }],
        finalizers: ['example.com/keep'],
      },
      type: 'kubernetes.io/dockerconfigjson',
      data: secretManifest(desired).data,
    });
  });

  test('Secrets with the same labels, annotations and data share one copy of each', () => {
    const a = cachedSecret(returned('team-a', 'uid-1'));
    const b = cachedSecret(returned('team-b', 'uid-2'));
    expect(b.data).toBe(a.data);
    expect(b.metadata?.labels).toBe(a.metadata?.labels);
    expect(b.metadata?.annotations).toBe(a.metadata?.annotations);
    expect(Object.isFrozen(a.data)).toBe(true);
  });

  test('the plan decides the same from the cached form as from the Secret returned', () => {
    const rotated = desiredSecrets([{ server: 'r.azurecr.io', secretName: 'acr-r', username: 'u', password: 'q' }])[0];
    if (rotated === undefined) throw new Error('no desired secret');
    const secret = returned('team-a', 'uid-1');
    for (const want of [desired, rotated]) {
      const fromCache = planSecret('team-a', cachedSecret(secret), want);
      const fromApi = planSecret('team-a', secret, want);
      expect(fromCache.action).toBe(fromApi.action);
      if (fromCache.action === 'update' && fromApi.action === 'update') {
        // What the PUT sends: the same, less what the apiserver fills in or ignores.
        const { managedFields: _m, creationTimestamp: _c, selfLink: _s, ...metadata } = fromApi.secret.metadata ?? {};
        const { apiVersion: _a, kind: _k, ...rest } = fromApi.secret;
        expect(fromCache.secret).toEqual({ ...rest, metadata });
      }
    }
    expect(planPrune(cachedSecret(secret))).toEqual(planPrune(secret));
  });
});
