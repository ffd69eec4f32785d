// The one-node cluster itself (test/support/node/cluster.ts), before any of the project is installed: the
// kubelet pulls the private ACR-named image only with a pull secret (what makes every chart test on this
// node mean something), pods reach the apiserver through the kubernetes Service, and stop() leaves the
// machine as it found it. The product's own story runs from its chart in chart.test.ts and chart-faults.test.ts.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, DiscoveryV1Api, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  cgroupV1Controllers,
  NODE_IP,
  type NodeCluster,
  netnsMembers,
  startNodeCluster,
} from '../support/node/cluster.ts';
import { IMAGES, until } from '../support/node/story.ts';

/** Bound on a pod finishing or failing its pull on this node (a pull is local and small). */
const POD_MS = 90_000;
const NAMESPACE = 'node';
const IMAGE = IMAGES[0] as string;

let cluster: NodeCluster;
let core: CoreV1Api;

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

/** The container logs the kubelet wrote for a pod (in the cluster's dir), for assertions and failure messages. */
function podLogs(pod: string): string {
  const root = join(cluster.dir, 'pod-logs');
  const dirs = existsSync(root) ? readdirSync(root).filter((d) => d.startsWith(`${NAMESPACE}_${pod}_`)) : [];
  return dirs
    .flatMap((d) => readdirSync(join(root, d)).map((c) => join(root, d, c, '0.log')))
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
}

/** Runs a one-container pod until it finishes or its pull fails; returns the phase or the pull failure. */
async function runPod(name: string, container: Partial<V1Container>, pullSecret?: string): Promise<string> {
  const body: V1Pod = {
    metadata: { name },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 0,
      ...(pullSecret === undefined ? {} : { imagePullSecrets: [{ name: pullSecret }] }),
      containers: [{ name: 'main', image: IMAGE, ...container }],
    },
  };
  await core.createNamespacedPod({ namespace: NAMESPACE, body });
  let outcome = '';
  await until(
    `pod ${name} finished or refused its pull`,
    async () => {
      const pod = await core.readNamespacedPod({ name, namespace: NAMESPACE });
      const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
      const phase = pod.status?.phase ?? '';
      outcome = /ErrImagePull|ImagePullBackOff/.test(waiting) ? waiting : phase;
      return outcome !== 'Pending' && outcome !== 'Running' && outcome !== '';
    },
    POD_MS,
  );
  return outcome;
}

beforeAll(async () => {
  before = await hostState();
  cluster = await startNodeCluster({ log: (line) => process.stderr.write(`[node] ${line}\n`) });
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
  const registry = cluster.registries[0];
  const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
  await core.createNamespacedSecret({
    namespace: NAMESPACE,
    body: {
      metadata: { name: 'registry' },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [registry.host]: { auth } } }) },
    },
  });
}, 900_000);

afterAll(async () => {
  await cluster?.stop();
}, 120_000);

describe('the one-node cluster, before the project is installed', () => {
  test('without a pull secret the kubelet cannot pull the private image: the registry refuses it', async () => {
    expect(await runPod('no-secret', { command: ['/bin/true'] })).toMatch(/^(ErrImagePull|ImagePullBackOff)$/);
    const events = await core.listNamespacedEvent({
      namespace: NAMESPACE,
      fieldSelector: 'involvedObject.name=no-secret',
    });
    expect(events.items.map((event) => event.message).join('\n')).toMatch(
      /401 Unauthorized|no basic auth credentials|pull access denied/,
    );
  });

  test('a pod reaches the apiserver through the kubernetes Service (ClusterIP, kube-proxy)', async () => {
    // The kubelet injects KUBERNETES_SERVICE_HOST/PORT (the Service's ClusterIP). A TCP connect is what this
    // static busybox can do (its wget segfaults without glibc's NSS libraries).
    const script = 'nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null && echo connected';
    expect(await runPod('client', { command: ['/bin/sh', '-c', script] }, 'registry'), podLogs('client')).toBe(
      'Succeeded',
    );
    expect(podLogs('client')).toContain('connected');
    const service = await core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
    expect(service.spec?.clusterIP).toBe('10.0.0.1');
    const slices = await cluster.kubeConfig.makeApiClient(DiscoveryV1Api).listNamespacedEndpointSlice({
      namespace: 'default',
      labelSelector: 'kubernetes.io/service-name=kubernetes',
    });
    expect(slices.items.flatMap((slice) => (slice.endpoints ?? []).flatMap((e) => e.addresses))).toEqual([NODE_IP]);
  });

  test('stop() leaves no process, namespace, link, mount, cgroup or nft rule behind', async () => {
    const { dir, netns, cgroupRoot } = cluster;
    await cluster.stop();
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
