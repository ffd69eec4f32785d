// `npm start`: the product as a user installs it, on a one-node cluster that really runs pods
// (test/support/node/cluster.ts). Builds what is missing (the cluster's tools, then the image from the
// Dockerfile: both cached), starts the cluster, pushes the image and the packaged chart to its ACR-named
// private registry, `helm install`s from there with hooks on (test/support/node/release.ts), deploys a
// private image unchanged into an opted-in namespace and into a plain one, shows which pod runs and which
// pull the registry refused, then keeps everything running until Ctrl-C tears it down.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, type CoreV1Event, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { INJECT_ENABLED, INJECT_LABEL } from '../src/constants.ts';
import { type NodeCluster, netnsMembers, startNodeCluster } from '../test/support/node/cluster.ts';
import { publishRelease, type Release } from '../test/support/node/release.ts';
import { IMAGES, SECRET_NAMES } from '../test/support/node/story.ts';

const root = resolve(import.meta.dirname, '..');
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const IMAGE = IMAGES[0] as string;
const OPTED_IN = 'demo';
const PLAIN = 'plain';
/** Bound on the demo's pods reaching Running or a refused pull (the registry is local). */
const POD_MS = 90_000;
/** Bound on sync-secrets --watch writing the pull secrets into a namespace labelled just now. */
const SYNC_MS = 60_000;

/** One build step: a command and what it makes, with its first-build time on 2 cores (tools/README.md,
 *  docs/image.md). */
interface BuildStep {
  readonly argv: readonly string[];
  readonly what: string;
  readonly cost: string;
}
const tool = (name: string, what: string, cost: string): BuildStep => ({
  argv: [join(root, 'tools', 'build.sh'), name],
  what,
  cost,
});
const BUILD_STEPS: readonly BuildStep[] = [
  tool('etcd', 'etcd', 'first build ~1.5 min'),
  tool('kube-apiserver', 'kube-apiserver', 'first build ~6 min'),
  tool('kube-controller-manager', 'kube-controller-manager', 'first build ~6 min'),
  tool('kube-scheduler', 'kube-scheduler', 'first build ~1 min'),
  tool('kubelet', 'kubelet', 'first build ~2 min'),
  tool('kube-proxy', 'kube-proxy', 'first build ~1 min'),
  tool('containerd', 'containerd, its runc shim and ctr', 'first build ~2.5 min'),
  tool('runc', 'runc (cgo; apt-get installs libseccomp-dev if missing)', 'first build ~30 s'),
  tool('cni', 'CNI plugins bridge, host-local, loopback', 'first build ~20 s'),
  tool('registry', 'the private registry (distribution)', 'first build ~3.5 min'),
  tool('crane', 'crane, which pushes the images', 'first build ~15 s'),
  tool('helm', 'helm, which pushes and installs the chart', 'first build ~3 min'),
  tool('pause', 'the pod sandbox binary (gcc)', 'first build < 1 s'),
  tool('busybox', "Debian's busybox-static, the private test image's only file", 'apt-get if missing, seconds'),
  tool('nft', "Debian's nftables, for kube-proxy", 'apt-get if missing, seconds'),
  tool('htpasswd', "Debian's apache2-utils, for the registries' passwords", 'apt-get if missing, seconds'),
  {
    argv: [join(root, 'tools', 'image', 'build.sh')],
    what: 'the acr-pull-webhook image from the Dockerfile (buildah)',
    cost: 'first build ~2.5 min, ~15 s after a source change',
  },
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

/** Runs one build step in its own process group (Ctrl-C stops the whole go build). */
function buildStep(step: BuildStep): Promise<{ ok: boolean; built: boolean; output: string }> {
  return new Promise((done) => {
    const child = spawn('bash', [...step.argv], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    building = child;
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.once('error', (err) => done({ ok: false, built: false, output: err.message }));
    child.once('close', (code) => {
      building = undefined;
      done({ ok: code === 0, built: /: building |apt-get install|image built in|bases built in/.test(output), output });
    });
  });
}

async function build(): Promise<void> {
  say('==> Building the one-node cluster and the image (first time about 30 min on 2 cores; then seconds)');
  for (const [index, step] of BUILD_STEPS.entries()) {
    checkpoint();
    const stepStarted = Date.now();
    process.stdout.write(`    [${index + 1}/${BUILD_STEPS.length}] ${step.what} (${step.cost}) ... `);
    const result = await buildStep(step);
    checkpoint();
    if (!result.ok) {
      say('failed');
      throw new Error(`bash ${step.argv.join(' ')} failed:\n${result.output.trimEnd()}`);
    }
    say(result.built ? `built in ${seconds(Date.now() - stepStarted)}` : 'up to date');
  }
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
  // What `kubectl create deployment web --image=IMAGE` creates: nothing about pull secrets.
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

/** The release's pods, one line each: name, phase, ready containers. */
async function showReleasePods(core: CoreV1Api, release: Release): Promise<void> {
  const pods = await core.listNamespacedPod({
    namespace: release.namespace,
    labelSelector: `app.kubernetes.io/instance=${release.name}`,
  });
  for (const pod of pods.items) {
    const statuses = pod.status?.containerStatuses ?? [];
    const ready = `${statuses.filter((s) => s.ready).length}/${statuses.length}`;
    say(`    ${pod.metadata?.name}: ${pod.status?.phase} ${ready} ready, image ${pod.spec?.containers[0]?.image}`);
  }
}

let cluster: NodeCluster | undefined;
/** Settles when startNodeCluster does: a start cut short by Ctrl-C tears down what it had started. */
let clusterStart: Promise<unknown> = Promise.resolve();
const timings: [phase: string, ms: number][] = [];
async function timed<T>(phase: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await work();
  timings.push([phase, Date.now() - started]);
  checkpoint();
  return result;
}

async function run(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error(
      'the one-node cluster needs root (network and mount namespaces, cgroups, a bridge): ' +
        'run it as root in a VM or a container with full capabilities',
    );
  const started = Date.now();
  await timed('build (cluster tools and image)', build);

  say('==> Starting the one-node cluster (etcd, kube-apiserver, controllers, kubelet, containerd, registries)');
  const node = await timed('cluster start', async () => {
    const starting = startNodeCluster({ log: (line) => say(`    ${line}`) });
    clusterStart = starting.catch(() => undefined);
    cluster = await starting;
    return cluster;
  });
  say(`    component logs in ${node.dir}`);
  const kc = node.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);

  say(`==> Publishing to the private registry ${node.registries[0].host}: the image and the chart`);
  const release = await timed('publish (image and chart pushed, release namespace)', () =>
    publishRelease(node, (line) => say(`    ${line}`)),
  );

  say(`==> helm install ${release.name} ${release.chartRef} --version ${release.version}`);
  say(`      --namespace ${release.namespace} --wait (hooks on; the node pulls ${release.image})`);
  const installed = await timed('helm install --wait, to Ready', () => release.install());
  for (const line of installed.output.trimEnd().split('\n')) say(`    | ${line}`);
  await showReleasePods(core, release);

  say(`==> Namespace "${OPTED_IN}" labelled ${INJECT_LABEL}=${INJECT_ENABLED}; namespace "${PLAIN}" without it`);
  await timed('sync-secrets writes the pull secrets into the labelled namespace', async () => {
    await core.createNamespace({ body: { metadata: { name: OPTED_IN, labels: { [INJECT_LABEL]: INJECT_ENABLED } } } });
    await waitFor(
      `pull secrets in ${OPTED_IN}`,
      async () => {
        for (const name of SECRET_NAMES) await core.readNamespacedSecret({ name, namespace: OPTED_IN });
        return true;
      },
      SYNC_MS,
    );
  });
  say(`    sync-secrets wrote ${SECRET_NAMES.join(' and ')} into "${OPTED_IN}"`);
  await core.createNamespace({ body: { metadata: { name: PLAIN } } });

  say(`==> Deployment "web" of the private image ${IMAGE}, unchanged, in both namespaces`);
  const podOf = async (namespace: string): Promise<V1Pod | undefined> =>
    (await core.listNamespacedPod({ namespace, labelSelector: 'app=web' })).items[0];
  const [running, refused] = await timed('Deployment to pod Running (and the refused pull)', async () => {
    for (const namespace of [OPTED_IN, PLAIN])
      await apps.createNamespacedDeployment({ namespace, body: deployment('web', IMAGE) });
    return Promise.all([
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
  });
  await showPod(core, OPTED_IN, running);
  await showPod(core, PLAIN, refused);
  say(
    `    The pod in "${OPTED_IN}" runs because the webhook added the secrets sync-secrets wrote there; ` +
      `the same pull in "${PLAIN}" has no secret and the registry refuses it.`,
  );

  say('');
  say('Timings:');
  for (const [phase, ms] of timings) say(`  ${phase.padEnd(66)} ${seconds(ms).padStart(8)}`);
  say(`  ${'all'.padEnd(66)} ${seconds(Date.now() - started).padStart(8)}`);
  say('');
  say('Try it yourself (the cluster keeps running until Ctrl-C):');
  const ns = release.namespace;
  say(`  export KUBECONFIG=${node.kubeconfigPath}`);
  say(`  alias helm=${join(root, '.tools', 'bin', 'helm')}`);
  say('  kubectl get pods -A -o wide');
  const next = (command: string, why: string): void => say(`  ${command.padEnd(62)} # ${why}`);
  next(`helm test ${release.name} -n ${ns} --logs`, `a dry-run pod in "${OPTED_IN}" gets its secrets`);
  next(`kubectl describe pod -n ${PLAIN} -l app=web`, 'the refused pull');
  next(`kubectl label namespace ${PLAIN} ${INJECT_LABEL}=${INJECT_ENABLED}`, 'sync-secrets writes the secrets');
  next(`kubectl delete pod -n ${PLAIN} -l app=web`, 'its replacement is patched and runs');
  say(`  kubectl create deployment hello -n ${OPTED_IN} --image=${IMAGE}`);
  say(`  kubectl get pod -n ${OPTED_IN} -l app=hello -o jsonpath='{.items[*].spec.imagePullSecrets}'`);
  // The registry's name resolves only inside the cluster's namespaces: upgrade from this checkout's chart.
  say(`  helm upgrade ${release.name} ${join(root, 'charts', 'acr-pull-webhook')} -n ${ns} --reuse-values \\`);
  say('    --set webhook.replicas=3 --wait');
  say(`  kubectl logs -n ${ns} -l app.kubernetes.io/component=webhook`);
}

/** Mount points under `dir` in this process's mount namespace (the cluster's own are in its namespace). */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point.startsWith(dir));
}

/** This process's cluster directories (other runs' clusters may be up at the same time). */
function ownDirs(): string[] {
  return readdirSync(tmpdir()).filter((entry) => {
    const owner = join(tmpdir(), entry, 'owner.pid');
    return (
      entry.startsWith('acr-node-') && existsSync(owner) && readFileSync(owner, 'utf8').trim() === `${process.pid}`
    );
  });
}

async function cleanup(): Promise<void> {
  if (cluster === undefined) {
    // A start cut short tears down what it had started itself (startNodeCluster's own stop()).
    const left = ownDirs();
    if (left.length > 0) say(`    teardown problems: cluster directories left in ${tmpdir()}: ${left.join(' ')}`);
    return;
  }
  say('==> Stopping the pods, the node, the registries and the control plane');
  const started = Date.now();
  const errors: string[] = [];
  const { netns, dir } = cluster;
  await cluster.stop().catch((err: Error) => errors.push(err.message));
  cluster = undefined;
  const left = netnsMembers(netns);
  if (left.length > 0) errors.push(`processes left in the cluster's network namespace: ${left.join(' ')}`);
  const mounts = mountsUnder(dir);
  if (mounts.length > 0) errors.push(`mounts left: ${mounts.join(' ')}`);
  const dirs = new Set([...(existsSync(dir) ? [dir] : []), ...ownDirs().map((entry) => join(tmpdir(), entry))]);
  if (dirs.size > 0) errors.push(`still there: ${[...dirs].join(' ')}`);
  if (errors.length > 0) say(`    teardown problems: ${errors.join('; ')}`);
  else
    say(
      `    stopped in ${seconds(Date.now() - started)}: no process left in its network namespace, ` +
        `no mount, ${dir} removed`,
    );
}

let failed = false;
const story = run().then(
  () => stopRequested,
  (err: unknown) => {
    // Ctrl-C also reaches the components (same process group): their exits are not the demo's failure.
    if (interrupted) return;
    failed = true;
    say(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  },
);
// Ctrl-C does not wait for a phase to finish (helm install --wait may take minutes): only for a cluster
// start under way, so that stop() has the whole cluster to stop.
await Promise.race([story, stopRequested.then(() => clusterStart)]);
await cleanup();
process.exit(failed ? 1 : 0);
