// The whole story on a real node: sync-secrets writes the pull secrets, the webhook (reached by the
// apiserver through its Service and kube-proxy, as in a cluster) patches the pods, and the kubelet
// with containerd pulls a private image from an ACR-named registry only because of that secret.
// The cluster is test/support/node/cluster.ts (build it with `bash tools/build.sh node`).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  DiscoveryV1Api,
  type KubeConfig,
  type V1Pod,
  type CoreV1Event,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  NODE_IP,
  REGISTRY_HOSTS,
  cgroupV1Controllers,
  netnsMembers,
  startNodeCluster,
  type NodeCluster,
} from '../support/node/cluster.ts';
import { createOptedInNamespace, IMAGES, SECRET_NAMES, startStory, type Story, until } from '../support/node/story.ts';

/** Bound on a pod reaching Running or a pull failure on this node (a pull is local and small). */
const POD_MS = 90_000;

let cluster: NodeCluster;
let kc: KubeConfig;
let core: CoreV1Api;
let story: Story;
const timings: string[] = [];
const record = (what: string, ms: number): void => {
  timings.push(`${what}: ${(ms / 1000).toFixed(1)} s`);
  process.stderr.write(`[node e2e] ${what}: ${(ms / 1000).toFixed(1)} s\n`);
};
const unique = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

/** What the machine looks like outside the cluster's namespaces, before and after. */
interface HostState {
  netns: string;
  links: string;
  nft: string;
  mounts: string;
}
let before: HostState;

function sh(cmd: string, args: string[]): Promise<string> {
  return new Promise((ok, fail) =>
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) =>
      err ? fail(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : ok(stdout),
    ),
  );
}

async function hostState(): Promise<HostState> {
  return {
    netns: await sh('ip', ['netns', 'list']),
    links: (await sh('ip', ['-o', 'link', 'show']))
      .split('\n')
      .map((line) => line.split(':')[1]?.trim())
      .join(' '),
    nft: await sh('nft', ['list', 'ruleset']),
    mounts: readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((line) => /acr-node-|kubelet|containerd/.test(line))
      .join('\n'),
  };
}

beforeAll(async () => {
  before = await hostState();
  const started = Date.now();
  cluster = await startNodeCluster({ log: (line) => process.stderr.write(`[node e2e] ${line}\n`) });
  record('cluster start', Date.now() - started);
  kc = cluster.kubeConfig;
  core = kc.makeApiClient(CoreV1Api);

  story = await startStory(cluster, (line) => process.stderr.write(`[node e2e] ${line}\n`));
  record('webhook and sync-secrets ready', Date.now() - started);
}, 900_000);

afterAll(async () => {
  await story?.stop();
  await cluster?.stop();
  process.stderr.write(`[node e2e] timings:\n  ${timings.join('\n  ')}\n`);
}, 120_000);

async function optedInNamespace(prefix: string): Promise<string> {
  const name = unique(prefix);
  await createOptedInNamespace(cluster, name);
  return name;
}

function kubectl(...args: string[]): Promise<string> {
  return sh('kubectl', ['--kubeconfig', cluster.kubeconfigPath, ...args]);
}

async function podOf(namespace: string, app: string): Promise<V1Pod> {
  const pods = await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` });
  const pod = pods.items[0];
  if (pod === undefined) throw new Error(`no pod of ${app} in ${namespace} yet`);
  return pod;
}

async function waitRunning(namespace: string, name: string): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await until(
    `pod ${namespace}/${name} Running`,
    async () => {
      pod = await core.readNamespacedPod({ name, namespace });
      return pod.status?.phase === 'Running';
    },
    POD_MS,
  );
  return pod as V1Pod;
}

/** Waits until a container of the pod is waiting on a pull failure; returns the reason. */
async function waitPullFailure(namespace: string, name: string): Promise<string> {
  let reason = '';
  await until(
    `pull failure of ${namespace}/${name}`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace });
      const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
      reason =
        statuses.map((s) => s.state?.waiting?.reason ?? '').find((r) => /ErrImagePull|ImagePullBackOff/.test(r)) ?? '';
      return reason !== '';
    },
    POD_MS,
  );
  return reason;
}

async function eventsOf(namespace: string, pod: string): Promise<CoreV1Event[]> {
  const events = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${pod}` });
  return events.items;
}

async function deployment(namespace: string, image: string): Promise<V1Pod> {
  const app = unique('app');
  await kubectl('create', 'deployment', app, `--image=${image}`, '-n', namespace);
  let pod: V1Pod | undefined;
  await until(
    `a pod of deployment ${app}`,
    async () => {
      pod = await podOf(namespace, app);
      return true;
    },
    30_000,
  );
  return pod as V1Pod;
}

/** The container logs the kubelet wrote for a pod (in the cluster's dir), for failure messages. */
function podLogs(namespace: string, pod: string): string {
  const root = join(cluster.dir, 'pod-logs');
  const dirs = existsSync(root) ? readdirSync(root).filter((d) => d.startsWith(`${namespace}_${pod}_`)) : [];
  return dirs
    .flatMap((d) => readdirSync(join(root, d)).map((c) => join(root, d, c, '0.log')))
    .filter((f) => existsSync(f))
    .map((f) => `${f}:\n${readFileSync(f, 'utf8')}`)
    .join('\n');
}

function podSpec(name: string, image: string, extra: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { name },
    spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'main', image }], ...extra },
  };
}

describe('a private ACR-named image on a real node', () => {
  test('a: in an opted-in namespace the deployment runs with the injected secret; the kubelet pulled it', async () => {
    const started = Date.now();
    const namespace = await optedInNamespace('opted-in');
    const pod = await deployment(namespace, IMAGES[0] as string);
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: 'acr-e2etest' }]);
    const running = await waitRunning(namespace, pod.metadata?.name as string);
    expect(running.status?.containerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[0]}/e2e/busybox@sha256:`);
    const events = await eventsOf(namespace, pod.metadata?.name as string);
    expect(events.map((e) => `${e.source?.component ?? e.reportingComponent}: ${e.reason}`)).toEqual(
      expect.arrayContaining(['kubelet: Pulling', 'kubelet: Pulled', 'kubelet: Started']),
    );
    record('a: opted-in namespace to Running', Date.now() - started);
  });

  test('b: without the label the same deployment cannot pull: the registry answers 401', async () => {
    const started = Date.now();
    const namespace = unique('not-opted-in');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const pod = await deployment(namespace, IMAGES[0] as string);
    expect(pod.spec?.imagePullSecrets).toBeUndefined();
    expect(await waitPullFailure(namespace, pod.metadata?.name as string)).toMatch(/ErrImagePull|ImagePullBackOff/);
    const failed = (await eventsOf(namespace, pod.metadata?.name as string)).filter((e) => e.reason === 'Failed');
    expect(failed.map((e) => e.message).join('\n')).toMatch(
      /401 Unauthorized|pull access denied, repository does not exist or may require authorization/,
    );
    record('b: refused pull seen', Date.now() - started);
  });

  test('c: init container and container from the two registries: both pulled, secrets in config order', async () => {
    const started = Date.now();
    const namespace = await optedInNamespace('two-registries');
    const created = await core.createNamespacedPod({
      namespace,
      body: podSpec('two', IMAGES[0] as string, {
        initContainers: [{ name: 'init', image: IMAGES[1] as string, command: ['/bin/sh', '-c', 'echo init done'] }],
      }),
    });
    expect(created.spec?.imagePullSecrets).toEqual([{ name: 'acr-e2etest' }, { name: 'acr-e2etest2' }]);
    const running = await waitRunning(namespace, 'two');
    expect(running.status?.initContainerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[1]}/e2e/busybox@sha256:`);
    expect(running.status?.containerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[0]}/e2e/busybox@sha256:`);
    record('c: two registries to Running', Date.now() - started);
  });

  test('d: a rotated password reaches the pull secret in place, and a new pull uses it', async () => {
    const started = Date.now();
    const namespace = await optedInNamespace('rotation');
    const [registry] = cluster.registries;
    const original = await core.readNamespacedSecret({ name: 'acr-e2etest', namespace });
    const newPassword = randomBytes(18).toString('base64url');
    await registry.setPassword(newPassword);

    // The secret still holds the old password: the registry now refuses it.
    await core.createNamespacedPod({
      namespace,
      body: podSpec('old', IMAGES[0] as string, {
        containers: [{ name: 'main', image: IMAGES[0] as string, imagePullPolicy: 'Always' }],
      }),
    });
    await waitPullFailure(namespace, 'old');

    story.volumes[0]?.update({ username: registry.username, password: newPassword });
    await until(
      'the pull secret rewritten',
      async () => {
        const secret = await core.readNamespacedSecret({ name: 'acr-e2etest', namespace });
        return secret.data?.['.dockerconfigjson'] !== original.data?.['.dockerconfigjson'];
      },
      30_000,
    );
    const rotated = await core.readNamespacedSecret({ name: 'acr-e2etest', namespace });
    expect(rotated.metadata?.uid).toBe(original.metadata?.uid);

    await core.createNamespacedPod({
      namespace,
      body: podSpec('new', IMAGES[0] as string, {
        containers: [{ name: 'main', image: IMAGES[0] as string, imagePullPolicy: 'Always' }],
      }),
    });
    await waitRunning(namespace, 'new');
    record('d: rotation to Running', Date.now() - started);
  });

  test('e: a namespace labelled while everything runs gets its secret and a Running pod', async () => {
    const namespace = unique('labelled-later');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const started = Date.now();
    await core.patchNamespace(
      { name: namespace, body: { metadata: { labels: { 'acr-pull-webhook/inject': 'enabled' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until(
      'secrets in the newly labelled namespace',
      async () => {
        for (const secret of SECRET_NAMES) await core.readNamespacedSecret({ name: secret, namespace });
        return true;
      },
      30_000,
    );
    record('e: label to secrets', Date.now() - started);
    await core.createNamespacedPod({ namespace, body: podSpec('late', IMAGES[0] as string) });
    await waitRunning(namespace, 'late');
    record('e: label to Running', Date.now() - started);
  });

  test('f: a pod that opts out is not patched, and its pull is refused', async () => {
    const started = Date.now();
    const namespace = await optedInNamespace('opt-out');
    const created = await core.createNamespacedPod({
      namespace,
      body: {
        ...podSpec('out', IMAGES[0] as string),
        metadata: { name: 'out', labels: { 'acr-pull-webhook/inject': 'disabled' } },
      },
    });
    expect(created.spec?.imagePullSecrets).toBeUndefined();
    await waitPullFailure(namespace, 'out');
    const failed = (await eventsOf(namespace, 'out')).filter((e) => e.reason === 'Failed');
    expect(failed.map((e) => e.message).join('\n')).toMatch(
      /401 Unauthorized|pull access denied, repository does not exist or may require authorization/,
    );
    record('f: opt-out refused', Date.now() - started);
  });

  test('g: a pod reaches the apiserver through the kubernetes Service (ClusterIP, kube-proxy)', async () => {
    const namespace = await optedInNamespace('in-cluster');
    // The kubelet injects KUBERNETES_SERVICE_HOST/PORT (the Service's ClusterIP); anonymous /version is public.
    // A TCP connect is what this static busybox can do (its wget segfaults without glibc's NSS
    // libraries); the ClusterIP's only endpoint is the apiserver's, as the assertion below shows.
    const script = 'nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null && echo connected';
    await core.createNamespacedPod({
      namespace,
      body: podSpec('client', IMAGES[0] as string, {
        restartPolicy: 'Never',
        containers: [{ name: 'main', image: IMAGES[0] as string, command: ['/bin/sh', '-c', script] }],
      }),
    });
    let phase = '';
    await until(
      'the client pod finished',
      async () => {
        phase = (await core.readNamespacedPod({ name: 'client', namespace })).status?.phase ?? '';
        return phase === 'Succeeded' || phase === 'Failed';
      },
      POD_MS,
    );
    expect(phase, podLogs(namespace, 'client')).toBe('Succeeded');
    expect(podLogs(namespace, 'client')).toContain('connected');
    const service = await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    expect(service.spec?.clusterIP).toBe('10.0.0.1');
    const slices = await kc.makeApiClient(DiscoveryV1Api).listNamespacedEndpointSlice({
      namespace: 'default',
      labelSelector: 'kubernetes.io/service-name=kubernetes',
    });
    expect(slices.items.flatMap((slice) => (slice.endpoints ?? []).flatMap((e) => e.addresses))).toEqual([NODE_IP]);
  });

  test('stop() leaves no process, namespace, link, mount, cgroup or nft rule behind', async () => {
    const { dir, netns, cgroupRoot } = cluster;
    await story.stopSync();
    const started = Date.now();
    await cluster.stop();
    record('stop', Date.now() - started);
    expect(netnsMembers(netns)).toEqual([]);
    const mentioning = readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
        } catch {
          return false;
        }
      });
    expect(mentioning).toEqual([]);
    for (const controller of cgroupV1Controllers())
      expect(existsSync(join('/sys/fs/cgroup', controller, cgroupRoot))).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await hostState()).toEqual(before);
  });
});
