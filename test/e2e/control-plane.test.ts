// The control-plane harness itself: the shared apiserver from global-setup.ts, and a private one for
// restart/stop (restarting the shared one would disturb other files, and it lives in the vitest
// main process, out of reach of test workers).
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthenticationV1Api, CoreV1Api, KubeConfig, VersionApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createNamespace, startControlPlane, type ControlPlane } from '../support/control-plane.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The k8s.io/kubernetes version tools/kube-apiserver pins (and stamps into the binary). */
function pinnedKubernetesVersion(): string {
  const goMod = readFileSync(join(repoRoot, 'tools', 'kube-apiserver', 'go.mod'), 'utf8');
  const match = /^\s*(?:require\s+)?k8s\.io\/kubernetes (v1\.\d+\.\d+)\b/m.exec(goMod);
  if (!match?.[1]) throw new Error('k8s.io/kubernetes is not pinned in tools/kube-apiserver/go.mod');
  return match[1];
}

function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

function getStatus(url: string, caPem: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: caPem }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('shared control plane (global setup)', () => {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  const core = kc.makeApiClient(CoreV1Api);

  it('serves /version with the pinned release', async () => {
    const info = await kc.makeApiClient(VersionApi).getCode();
    expect(info.gitVersion).toBe(pinnedKubernetesVersion());
    expect(inject('server')).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('authenticates the kubeconfig user as admin in system:masters', async () => {
    const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    expect(review.status?.userInfo?.username).toBe('admin');
    expect(review.status?.userInfo?.groups).toContain('system:masters');
  });

  it('rejects unauthenticated requests to the API (RBAC), while /readyz stays public', async () => {
    const server = inject('server');
    const caPem = inject('caPem');
    expect([401, 403]).toContain(await getStatus(`${server}/api/v1/namespaces`, caPem));
    expect(await getStatus(`${server}/readyz`, caPem)).toBe(200);
  });

  it('stores a pod in a namespace created with its default ServiceAccount', async () => {
    const ns = uniqueName('cp-pod');
    await createNamespace(kc, ns, { 'acr-pull-webhook-test': 'true' });
    const sa = await core.readNamespacedServiceAccount({ namespace: ns, name: 'default' });
    expect(sa.metadata?.name).toBe('default');
    expect((await core.readNamespace({ name: ns })).metadata?.labels?.['acr-pull-webhook-test']).toBe('true');

    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'hello' }, spec: { containers: [{ name: 'c', image: 'example.azurecr.io/hello:1' }] } },
    });
    const pod = await core.readNamespacedPod({ namespace: ns, name: 'hello' });
    // No scheduler or kubelet: it is admitted and stored, never run.
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.spec?.serviceAccountName).toBe('default');
  });
});

describe('private control plane', () => {
  let cp: ControlPlane;

  beforeAll(async () => {
    cp = await startControlPlane();
  });
  afterAll(async () => {
    await cp?.stop();
  });

  it('keeps its data across restartApiserver()', async () => {
    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    const ns = uniqueName('cp-restart');
    await createNamespace(cp.kubeConfig, ns);
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'kept' }, data: { answer: '42' } },
    });

    await cp.restartApiserver();

    // same URL, same CA, same client
    const cm = await core.readNamespacedConfigMap({ namespace: ns, name: 'kept' });
    expect(cm.data?.['answer']).toBe('42');
    const info = await cp.kubeConfig.makeApiClient(VersionApi).getCode();
    expect(info.gitVersion).toBe(pinnedKubernetesVersion());
  });

  it('stop() ends both processes and removes its dir, and is idempotent', async () => {
    const pids = readPids(cp);
    expect(pids.length).toBe(2);
    await Promise.all([cp.stop(), cp.stop()]);
    await cp.stop();
    expect(existsSync(cp.dir)).toBe(false);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});

/** Pids of this control plane's etcd and kube-apiserver, found by their --data-dir / --etcd-servers
 *  arguments in /proc (the harness does not expose its child processes). */
function readPids(cp: ControlPlane): number[] {
  const pids: number[] = [];
  for (const entry of readdirSyncSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes(`--data-dir=${cp.dir}`) || cmdline.includes(`--etcd-servers=${cp.etcdUrl}`))
      pids.push(Number(entry));
  }
  return pids;
}

function readdirSyncSafe(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}
