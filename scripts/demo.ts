// `npm start`: the whole story on a one-node cluster that really runs pods (test/support/node/cluster.ts).
// Builds what is missing (one line per tool: a first build takes about 25 minutes on 2 cores), starts
// the cluster, installs the webhook and sync-secrets as the node suite does (test/support/node/story.ts),
// deploys a private ACR-named image into an opted-in namespace and into a plain one, shows which pod
// runs and which pull the registry refused, then keeps everything running until Ctrl-C tears it down.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, type CoreV1Event, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { INJECT_ENABLED, INJECT_LABEL } from '../src/constants.ts';
import { type NodeCluster, netnsMembers, startNodeCluster } from '../test/support/node/cluster.ts';
import { createOptedInNamespace, IMAGES, SECRET_NAMES, type Story, startStory } from '../test/support/node/story.ts';

const root = resolve(import.meta.dirname, '..');
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const IMAGE = IMAGES[0] as string;
const OPTED_IN = 'demo';
const PLAIN = 'plain';
/** Bound on the demo's pods reaching Running or a refused pull (the registry is local). */
const POD_MS = 90_000;

/** `bash tools/build.sh node`, one tool at a time, with first-build times on 2 cores (tools/README.md). */
const BUILD_STEPS: readonly (readonly [tool: string, what: string, cost: string])[] = [
  ['etcd', 'etcd', 'first build ~1.5 min'],
  ['kube-apiserver', 'kube-apiserver', 'first build ~6 min'],
  ['kube-controller-manager', 'kube-controller-manager', 'first build ~6 min'],
  ['kube-scheduler', 'kube-scheduler', 'first build ~1 min'],
  ['kubelet', 'kubelet', 'first build ~2 min'],
  ['kube-proxy', 'kube-proxy', 'first build ~1 min'],
  ['containerd', 'containerd, its runc shim and ctr', 'first build ~2.5 min'],
  ['runc', 'runc (cgo; apt-get installs libseccomp-dev if missing)', 'first build ~30 s'],
  ['cni', 'CNI plugins bridge, host-local, loopback', 'first build ~20 s'],
  ['registry', 'the private registry (distribution)', 'first build ~3.5 min'],
  ['crane', 'crane, which pushes the test image', 'first build ~15 s'],
  ['pause', 'the pod sandbox binary (gcc)', 'first build < 1 s'],
  ['busybox', "Debian's busybox-static, the test image's only file", 'apt-get if missing, seconds'],
  ['nft', "Debian's nftables, for kube-proxy", 'apt-get if missing, seconds'],
  ['htpasswd', "Debian's apache2-utils, for the registries' passwords", 'apt-get if missing, seconds'],
];

class Interrupted extends Error {}
let interrupted = false;
let wake = (): void => {};
const stopRequested = new Promise<void>((done) => {
  wake = done;
});
let building: ChildProcess | undefined;
const onSignal = (signal: NodeJS.Signals): void => {
  // A terminal's Ctrl-C (and npm) may deliver the signal more than once: the first one counts.
  if (interrupted) return;
  interrupted = true;
  say(`\n==> ${signal}: stopping`);
  wake();
  if (building?.pid !== undefined) process.kill(-building.pid, 'SIGTERM');
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
const checkpoint = (): void => {
  if (interrupted) throw new Interrupted('interrupted');
};

/** Runs `bash tools/build.sh TOOL` in its own process group (Ctrl-C stops the whole go build). */
function buildStep(tool: string): Promise<{ ok: boolean; built: boolean; output: string }> {
  return new Promise((done) => {
    const child = spawn('bash', [join(root, 'tools', 'build.sh'), tool], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    building = child;
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', (err) => done({ ok: false, built: false, output: err.message }));
    child.once('close', (code) => {
      building = undefined;
      done({ ok: code === 0, built: /: building |apt-get install/.test(output), output });
    });
  });
}

async function build(): Promise<void> {
  say('==> Building the one-node cluster with tools/build.sh (first time about 25 min on 2 cores; then seconds)');
  const started = Date.now();
  for (const [index, [tool, what, cost]] of BUILD_STEPS.entries()) {
    checkpoint();
    const stepStarted = Date.now();
    process.stdout.write(`    [${index + 1}/${BUILD_STEPS.length}] ${what} (${cost}) ... `);
    const result = await buildStep(tool);
    checkpoint();
    if (!result.ok) {
      say('failed');
      throw new Error(`bash tools/build.sh ${tool} failed:\n${result.output.trimEnd()}`);
    }
    say(result.built ? `built in ${seconds(Date.now() - stepStarted)}` : 'up to date');
  }
  say(`    all built in ${seconds(Date.now() - started)}`);
}

/** Polls until `check` returns a value; stops at once on Ctrl-C. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    checkpoint();
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds(timeoutMs)} ${last.slice(0, 300)}`);
    await sleep(250);
  }
}

/** The pod's phase, or the reason its container waits (ErrImagePull, ImagePullBackOff...). */
function stateOf(pod: V1Pod): string {
  const waiting = (pod.status?.containerStatuses ?? []).map((s) => s.state?.waiting?.reason).find(Boolean);
  return waiting ?? pod.status?.phase ?? 'Unknown';
}

function kubeletEvents(events: readonly CoreV1Event[]): CoreV1Event[] {
  const at = (e: CoreV1Event): number =>
    new Date(e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp ?? 0).getTime();
  return events
    .filter((e) => (e.source?.component ?? e.reportingComponent) === 'kubelet')
    .filter((e) => ['Pulling', 'Pulled', 'Failed', 'BackOff', 'Started'].includes(e.reason ?? ''))
    .sort((a, b) => at(a) - at(b));
}

async function showPod(core: CoreV1Api, namespace: string, pod: V1Pod): Promise<void> {
  const name = pod.metadata?.name as string;
  const secrets = (pod.spec?.imagePullSecrets ?? []).map((s) => s.name).join(', ') || '(none)';
  say(`    ${namespace}/${name}: ${stateOf(pod)}, imagePullSecrets: ${secrets}`);
  const events = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  for (const event of kubeletEvents(events.items)) {
    const count = (event.count ?? 1) > 1 ? ` (x${event.count})` : '';
    say(`      kubelet ${event.reason}${count}: ${event.message ?? ''}`);
  }
}

function deployment(name: string, image: string) {
  // What `kubectl create deployment web --image=IMAGE` creates.
  const labels = { app: name };
  return {
    metadata: { name, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'busybox', image }] },
      },
    },
  };
}

let cluster: NodeCluster | undefined;
let story: Story | undefined;

async function run(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error(
      'the one-node cluster needs root (network and mount namespaces, cgroups, a bridge): ' +
        'run it as root in a VM or a container with full capabilities',
    );
  const started = Date.now();
  await build();

  say('==> Starting the one-node cluster (etcd, kube-apiserver, controllers, kubelet, containerd, registries)');
  const clusterStarted = Date.now();
  cluster = await startNodeCluster({ log: (line) => say(`    ${line}`) });
  say(`    cluster up in ${seconds(Date.now() - clusterStarted)}; component logs in ${cluster.dir}`);
  checkpoint();
  const kc = cluster.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);

  say('==> Installing acr-pull-webhook: the webhook behind its Service, and sync-secrets --watch');
  const storyStarted = Date.now();
  story = await startStory(cluster, (line) => say(`    ${line}`));
  say(`    ready in ${seconds(Date.now() - storyStarted)}`);
  checkpoint();

  say(`==> Namespace "${OPTED_IN}" labelled ${INJECT_LABEL}=${INJECT_ENABLED}; namespace "${PLAIN}" without it`);
  await createOptedInNamespace(cluster, OPTED_IN);
  say(`    sync-secrets wrote ${SECRET_NAMES.join(' and ')} into "${OPTED_IN}"`);
  await core.createNamespace({ body: { metadata: { name: PLAIN } } });

  say(`==> Deployment "web" of the private image ${IMAGE} in both namespaces`);
  const deployed = Date.now();
  for (const namespace of [OPTED_IN, PLAIN])
    await apps.createNamespacedDeployment({ namespace, body: deployment('web', IMAGE) });
  const podOf = async (namespace: string): Promise<V1Pod | undefined> =>
    (await core.listNamespacedPod({ namespace, labelSelector: 'app=web' })).items[0];
  const [running, refused] = await Promise.all([
    waitFor(
      `a Running pod in ${OPTED_IN}`,
      async () => {
        const pod = await podOf(OPTED_IN);
        return pod?.status?.phase === 'Running' ? pod : undefined;
      },
      POD_MS,
    ),
    waitFor(
      `a refused pull in ${PLAIN}`,
      async () => {
        const pod = await podOf(PLAIN);
        if (pod === undefined || !/ErrImagePull|ImagePullBackOff/.test(stateOf(pod))) return undefined;
        const events = await core.listNamespacedEvent({
          namespace: PLAIN,
          fieldSelector: `involvedObject.name=${pod.metadata?.name}`,
        });
        return events.items.some((e) => e.reason === 'Failed') ? pod : undefined;
      },
      POD_MS,
    ),
  ]);
  say(`    both settled in ${seconds(Date.now() - deployed)}:`);
  await showPod(core, OPTED_IN, running);
  await showPod(core, PLAIN, refused);
  say(
    `    The pod in "${OPTED_IN}" runs because the webhook added the secret sync-secrets wrote there; ` +
      `the same pull in "${PLAIN}" has no secret and the registry refuses it.`,
  );

  const kubeconfig = cluster.kubeconfigPath;
  say('');
  say(`All of it took ${seconds(Date.now() - started)}. Try it yourself (the cluster keeps running until Ctrl-C):`);
  say(`  export KUBECONFIG=${kubeconfig}`);
  say('  kubectl get pods -A -o wide');
  say(`  kubectl describe pod -n ${PLAIN} -l app=web                       # the refused pull`);
  say(`  kubectl label namespace ${PLAIN} ${INJECT_LABEL}=${INJECT_ENABLED}  # sync-secrets writes the secrets`);
  say(`  kubectl delete pod -n ${PLAIN} -l app=web                         # its replacement is patched and runs`);
  say(`  kubectl create deployment hello -n ${OPTED_IN} --image=${IMAGE}`);
  say(`  kubectl get pod -n ${OPTED_IN} -l app=hello -o jsonpath='{.items[*].spec.imagePullSecrets}'`);
  say(`  webhook log: ${story.webhookLogPath}`);
}

async function cleanup(): Promise<void> {
  // A start cut short has already torn down what it had started (startNodeCluster's own stop()).
  if (story === undefined && cluster === undefined) return;
  say('==> Stopping sync-secrets, the webhook, the pods, the node and the control plane');
  const started = Date.now();
  const errors: string[] = [];
  const { netns, dir } = cluster ?? { netns: '', dir: '' };
  await story?.stop().catch((err: Error) => errors.push(err.message));
  await cluster?.stop().catch((err: Error) => errors.push(err.message));
  story = undefined;
  cluster = undefined;
  const left = netns === '' ? [] : netnsMembers(netns);
  if (left.length > 0) errors.push(`processes left in the cluster's network namespace: ${left.join(' ')}`);
  if (dir !== '' && existsSync(dir)) errors.push(`${dir} is still there`);
  if (errors.length > 0) say(`    teardown problems: ${errors.join('; ')}`);
  else say(`    stopped in ${seconds(Date.now() - started)}: no process left in its namespace, ${dir} removed`);
}

let failed = false;
try {
  await run();
  await stopRequested;
} catch (err) {
  // Ctrl-C also reaches the components (same process group): their exits are not the demo's failure.
  if (!interrupted) {
    failed = true;
    say(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
await cleanup();
process.exit(failed ? 1 : 0);
