// The product as users install it, on the one-node cluster: the image built from the Dockerfile and the packaged
// chart pulled from the ACR-named private registry, `helm install --wait` with its hooks running as pods of that
// image, under Pod Security "restricted". Then the story from the chart's own install (not a test-registered
// webhook), `helm test`, and `helm uninstall`. Timings go to stderr as `[chart e2e] …` lines.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type CoreV1Event,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, SYNC_LEASE_NAME } from '../../src/constants.ts';
import { cgroupV1Controllers, REGISTRY_HOSTS, startNodeCluster, type NodeCluster } from '../support/node/cluster.ts';
import { CREDENTIALS_SECRETS, IMAGE_PULL_SECRET, publishRelease, type Release } from '../support/node/release.ts';
import { IMAGES, SECRET_NAMES, until } from '../support/node/story.ts';

/** Bound on a pod reaching Running or a pull failure (a local registry, a small image). */
const POD_MS = 90_000;
/** Bound on a controller (garbage collector, sync-secrets --watch) catching up with a change. */
const CONTROLLER_MS = 60_000;
/** The release's object names: "<release>-<chart>" (the release name does not contain the chart's). */
const FULLNAME = 'acr-acr-pull-webhook';
const INSTANCE_SELECTOR = 'app.kubernetes.io/instance=acr';

let cluster: NodeCluster;
let release: Release;
let core: CoreV1Api;
let installMs = 0;
/** The first install's serving certificate, to tell a reinstall's new one from it. */
let firstServingCert = '';
const preLabelled = `pre-labelled-${randomBytes(3).toString('hex')}`;
const optedIn: string[] = [preLabelled];
const timings: string[] = [];
const log = (line: string): void => {
  process.stderr.write(`[chart e2e] ${line}\n`);
};
const record = (what: string, ms: number): void => {
  timings.push(`${what}: ${(ms / 1000).toFixed(1)} s`);
  log(`${what}: ${(ms / 1000).toFixed(1)} s`);
};
const unique = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

function kubectl(...args: string[]): Promise<string> {
  return new Promise((ok, fail) =>
    execFile('kubectl', ['--kubeconfig', cluster.kubeconfigPath, ...args], { timeout: 60_000 }, (err, out, stderr) =>
      err ? fail(new Error(`kubectl ${args.join(' ')}: ${err.message}\n${stderr}`)) : ok(out),
    ),
  );
}

async function podsOf(namespace: string, labelSelector: string): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace, labelSelector })).items;
}

/** The pids in a container's cgroup (cgroupfs driver: a directory named by the container id under the pods'
 *  cgroup root), so the test reads the kernel's view of the process, not the pod spec. */
function containerPids(containerId: string): number[] {
  const id = containerId.replace(/^containerd:\/\//, '');
  for (const controller of cgroupV1Controllers()) {
    const found: string[] = [];
    const walk = (dir: string): void => {
      if (!existsSync(dir)) return;
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory()) continue;
        if (entry.name === id) found.push(join(dir, entry.name));
        else walk(join(dir, entry.name));
      }
    };
    walk(join('/sys/fs/cgroup', controller, cluster.cgroupRoot));
    const pids = found.flatMap((dir) =>
      readFileSync(join(dir, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map(Number),
    );
    if (pids.length > 0) return pids;
  }
  return [];
}

/** The process's uids (real, effective, saved, fs) and its root mount's options. */
function processIdentity(pid: number): { uids: string; rootMount: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).join(' ') ?? '';
  const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[4] === '/');
  return { uids, rootMount: root?.[5] ?? '' };
}

async function waitRunning(namespace: string, name: string): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await until(
    `pod ${namespace}/${name} Running`,
    async () => {
      pod = await core.readNamespacedPod({ name, namespace });
      if (pod.status?.phase !== 'Running') throw new Error(`saw ${JSON.stringify(pod.status)}`);
      return true;
    },
    POD_MS,
  );
  return pod as V1Pod;
}

async function eventsOf(namespace: string, pod: string): Promise<CoreV1Event[]> {
  return (await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${pod}` })).items;
}

/** kubectl create deployment (an unchanged Deployment, as a user writes it); returns its first pod. */
async function deployment(namespace: string, image: string): Promise<V1Pod> {
  const app = unique('app');
  await kubectl('create', 'deployment', app, `--image=${image}`, '-n', namespace);
  let pod: V1Pod | undefined;
  await until(
    `a pod of deployment ${namespace}/${app}`,
    async () => {
      pod = (await podsOf(namespace, `app=${app}`))[0];
      if (pod === undefined) throw new Error('no pod yet');
      return true;
    },
    30_000,
  );
  return pod as V1Pod;
}

/** Waits until the pod's container waits on a pull failure, then returns the kubelet's Failed event messages. */
async function refusedPull(namespace: string, name: string): Promise<string> {
  await until(
    `pull failure of ${namespace}/${name}`,
    async () => {
      const status = (await core.readNamespacedPod({ name, namespace })).status;
      const reason = status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
      if (!/ErrImagePull|ImagePullBackOff/.test(reason)) throw new Error(`saw ${JSON.stringify(status)}`);
      return true;
    },
    POD_MS,
  );
  const failed = (await eventsOf(namespace, name)).filter((event) => event.reason === 'Failed');
  return failed.map((event) => event.message).join('\n');
}

/** The registry's answer to a pull without (valid) credentials, as containerd reports it. */
const REFUSED = /401 Unauthorized|pull access denied, repository does not exist or may require authorization/;

/** Both pull secrets exist in the namespace (throws naming the missing one). */
async function pullSecretsIn(namespace: string): Promise<boolean> {
  for (const name of SECRET_NAMES) await core.readNamespacedSecret({ name, namespace });
  return true;
}

/** Each object's events of the install (reasons, in order), in seconds from its start (the events' resolution). */
async function installTimeline(since: number): Promise<string[]> {
  const spans = new Map<string, { first: number; last: number; reasons: string[] }>();
  const events = (await core.listNamespacedEvent({ namespace: release.namespace })).items;
  const at = (time: Date | string | undefined): number => new Date(time ?? 0).getTime() - since;
  events.sort((a, b) => at(a.firstTimestamp ?? a.eventTime) - at(b.firstTimestamp ?? b.eventTime));
  for (const event of events) {
    const first = at(event.firstTimestamp ?? event.eventTime);
    const last = at(event.lastTimestamp ?? event.eventTime);
    const key = `${event.involvedObject.kind} ${event.involvedObject.name}`;
    const span = spans.get(key) ?? { first, last, reasons: [] };
    span.first = Math.min(span.first, first);
    span.last = Math.max(span.last, last);
    span.reasons.push(`${event.reason}${(event.count ?? 1) > 1 ? ` x${event.count}` : ''}`);
    spans.set(key, span);
  }
  const seconds = (ms: number): string => `+${(ms / 1000).toFixed(0)} s`;
  return [...spans]
    .sort((a, b) => a[1].first - b[1].first)
    .map(([key, span]) => `${key}: ${seconds(span.first)} .. ${seconds(span.last)} (${span.reasons.join(', ')})`);
}

beforeAll(async () => {
  let started = Date.now();
  cluster = await startNodeCluster({ log });
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  record('cluster start', Date.now() - started);
  started = Date.now();
  release = await publishRelease(cluster, log);
  record('image and chart published, release namespace prepared', Date.now() - started);
  // Opted in before the install, so the sync-secrets --once hook has a namespace to write into.
  await core.createNamespace({ body: { metadata: { name: preLabelled, labels: { [INJECT_LABEL]: INJECT_ENABLED } } } });
  // Fail: a webhook call that misses shows as a failed create instead of a pod without its secret. Debug: a test
  // reads the review lines to see which pods the apiserver sent (at info only warned reviews have one).
  const installStarted = Date.now();
  const install = await release.install({ webhook: { failurePolicy: 'Fail', logLevel: 'debug' } });
  installMs = install.ms;
  record('helm install --wait (hooks on) to Ready', install.ms);
  for (const line of await installTimeline(installStarted)) log(`  install events: ${line}`);
}, 900_000);

afterAll(async () => {
  await cluster?.stop();
  log(`timings:\n  ${timings.join('\n  ')}`);
}, 120_000);

describe('helm install from the OCI registry, hooks on, on the real node', () => {
  test('the release is deployed from the registry chart at its version, within the helm timeout', async () => {
    const list = JSON.parse(await release.helm('list', '-n', release.namespace, '-o', 'json')) as unknown[];
    expect(list).toEqual([
      expect.objectContaining({ name: release.name, status: 'deployed', chart: `acr-pull-webhook-${release.version}` }),
    ]);
    expect(installMs).toBeLessThan(5 * 60_000);
  });

  test('certs-gen create made the TLS Secret and certs-gen patch put its CA in the caBundle', async () => {
    const secret = await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace: release.namespace });
    expect(secret.type).toBe('kubernetes.io/tls');
    const decode = (key: string): string => Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
    const serving = new X509Certificate(decode('tls.crt'));
    firstServingCert = serving.fingerprint256;
    expect(serving.subjectAltName).toContain(`DNS:${FULLNAME}.${release.namespace}.svc`);

    const configuration = await cluster.kubeConfig
      .makeApiClient(AdmissionregistrationV1Api)
      .readMutatingWebhookConfiguration({ name: FULLNAME });
    const hook = configuration.webhooks?.[0];
    expect(hook?.failurePolicy).toBe('Fail');
    expect(hook?.clientConfig.service).toMatchObject({ name: FULLNAME, namespace: release.namespace });
    const bundle = Buffer.from(hook?.clientConfig.caBundle ?? '', 'base64').toString('utf8');
    const ca = new X509Certificate(bundle);
    expect(serving.checkIssued(ca)).toBe(true);
    expect(serving.verify(ca.publicKey)).toBe(true);
  });

  test('the sync-secrets --once hook wrote both pull secrets into the namespace opted in before install', async () => {
    for (const name of SECRET_NAMES) {
      const secret = await core.readNamespacedSecret({ name, namespace: preLabelled });
      expect(secret.type).toBe('kubernetes.io/dockerconfigjson');
    }
  });

  test('the webhook Deployment is 2/2 ready behind a PodDisruptionBudget of maxUnavailable 1', async () => {
    const webhook = await cluster.kubeConfig
      .makeApiClient(AppsV1Api)
      .readNamespacedDeployment({ name: FULLNAME, namespace: release.namespace });
    expect([webhook.spec?.replicas, webhook.status?.readyReplicas]).toEqual([2, 2]);
    const pdb = await cluster.kubeConfig
      .makeApiClient(PolicyV1Api)
      .readNamespacedPodDisruptionBudget({ name: FULLNAME, namespace: release.namespace });
    expect(pdb.spec?.maxUnavailable).toBe(1);
    expect(pdb.status?.currentHealthy).toBe(2);
  });

  test("every pod of the release runs its processes as uid 65532 on a read-only root (the kernel's view)", async () => {
    const pods = await podsOf(release.namespace, INSTANCE_SELECTOR);
    const running = pods.filter((pod) => pod.status?.phase === 'Running');
    const components = running.map((pod) => pod.metadata?.labels?.['app.kubernetes.io/component']).sort();
    expect(components).toEqual(['sync-secrets', 'webhook', 'webhook']);
    for (const pod of running) {
      expect(pod.spec?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
      for (const status of pod.status?.containerStatuses ?? []) {
        expect(status.ready, `${pod.metadata?.name}`).toBe(true);
        const pids = containerPids(status.containerID ?? '');
        expect(pids.length, `processes of ${pod.metadata?.name}/${status.name}`).toBeGreaterThan(0);
        for (const pid of pids) {
          const identity = processIdentity(pid);
          expect(identity.uids, `${pod.metadata?.name} pid ${pid}`).toBe('65532 65532 65532 65532');
          expect(identity.rootMount.split(','), `${pod.metadata?.name} pid ${pid}`).toContain('ro');
        }
      }
    }
  });

  test('the release namespace enforces Pod Security restricted: a pod without those settings is refused', async () => {
    // So the chart's pods running there is the proof that their security contexts pass "restricted".
    const refused = await core
      .createNamespacedPod({
        namespace: release.namespace,
        dryRun: 'All',
        body: { metadata: { name: 'unrestricted' }, spec: { containers: [{ name: 'main', image: release.image }] } },
      })
      .then(
        () => 'created',
        // The client's message is the status code; the apiserver's reason is the body's Status message.
        (err: Error & { body?: unknown }) => (JSON.parse(String(err.body)) as { message: string }).message,
      );
    expect(refused).toMatch(/violates PodSecurity "restricted:latest"/);
  });

  test('the sync-secrets Lease is held by a running sync-secrets pod', async () => {
    const coordination = cluster.kubeConfig.makeApiClient(CoordinationV1Api);
    // A ready replica may still be acquiring the Lease: bounded, failing with what it saw.
    await until(
      'a running sync-secrets pod holding the Lease',
      async () => {
        const lease = await coordination.readNamespacedLease({ name: SYNC_LEASE_NAME, namespace: release.namespace });
        const sync = await podsOf(release.namespace, `${INSTANCE_SELECTOR},app.kubernetes.io/component=sync-secrets`);
        const running = sync.filter((pod) => pod.status?.phase === 'Running').map((pod) => pod.metadata?.name);
        if (!running.includes(lease.spec?.holderIdentity))
          throw new Error(`holder ${lease.spec?.holderIdentity}, running ${running.join(', ')}`);
        return true;
      },
      30_000,
    );
  });

  test('the hook Jobs were deleted on success (their delete policy) and their pods are gone', async () => {
    const hooks = parseAllDocuments(await release.helm('get', 'hooks', release.name, '-n', release.namespace))
      .map((doc) => doc.toJS() as { kind?: string; metadata?: { name: string } } | null)
      .filter((object) => object?.kind === 'Job')
      .map((object) => object?.metadata?.name);
    expect(hooks.sort()).toEqual(
      [`${FULLNAME}-certs-gen-create`, `${FULLNAME}-certs-gen-patch`, `${FULLNAME}-sync-secrets-once`].sort(),
    );
    const jobs = await cluster.kubeConfig.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: release.namespace });
    expect(jobs.items.map((job) => job.metadata?.name)).toEqual([]);
    const ms = await until(
      'the hook Jobs’ pods deleted',
      async () => {
        const left = (await podsOf(release.namespace, 'batch.kubernetes.io/job-name')).map((p) => p.metadata?.name);
        if (left.length > 0) throw new Error(`left: ${left.join(', ')}`);
        return true;
      },
      CONTROLLER_MS,
    );
    record('hook pods gone after install', ms);
  });
});

describe('helm test', () => {
  test("the chart's check-injection pod passes and names the namespace it checked", async () => {
    const started = Date.now();
    const output = await release.helm('test', release.name, '-n', release.namespace, '--logs', '--timeout', '2m');
    record('helm test', Date.now() - started);
    log(output);
    expect(output).toMatch(/Phase:\s+Succeeded/);
    // The only opted-in namespace so far is the one labelled before the install.
    expect(output).toContain(`namespace ${preLabelled}`);
    expect(output).toContain(`PASS ${preLabelled}: every registry's pull secret is injected and present`);
    // The test hook deletes its pod on success.
    const left = await podsOf(release.namespace, 'app.kubernetes.io/component=check-injection');
    expect(left.filter((pod) => pod.metadata?.deletionTimestamp === undefined)).toEqual([]);
  });
});

describe('the story from the chart install', () => {
  test('a newly labelled namespace gets both pull secrets from sync-secrets --watch', async () => {
    const namespace = unique('labelled');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    optedIn.push(namespace);
    const started = Date.now();
    await core.patchNamespace(
      { name: namespace, body: { metadata: { labels: { [INJECT_LABEL]: INJECT_ENABLED } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await until(`pull secrets in ${namespace}`, () => pullSecretsIn(namespace), 30_000);
    record('label to pull secrets (sync-secrets --watch)', Date.now() - started);
  });

  test('an unchanged Deployment of a private image runs there, with the pull secret the webhook injected', async () => {
    const namespace = optedIn[1] as string;
    const started = Date.now();
    const pod = await deployment(namespace, IMAGES[0] as string);
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: SECRET_NAMES[0] }]);
    const running = await waitRunning(namespace, pod.metadata?.name as string);
    expect(running.status?.containerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[0]}/e2e/busybox@sha256:`);
    record('deployment to Running (opted-in namespace)', Date.now() - started);
  });

  test('in a namespace without the label the same Deployment cannot pull: the registry refuses', async () => {
    const namespace = unique('not-labelled');
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const pod = await deployment(namespace, IMAGES[0] as string);
    expect(pod.spec?.imagePullSecrets).toBeUndefined();
    expect(await refusedPull(namespace, pod.metadata?.name as string)).toMatch(REFUSED);
  });

  test('a pod with an init container from the second registry gets both secrets, in configuration order', async () => {
    const namespace = optedIn[1] as string;
    const started = Date.now();
    const created = await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'two-registries' },
        spec: {
          terminationGracePeriodSeconds: 0,
          initContainers: [{ name: 'init', image: IMAGES[1] as string, command: ['/bin/sh', '-c', 'echo init'] }],
          containers: [{ name: 'main', image: IMAGES[0] as string }],
        },
      },
    });
    expect(created.spec?.imagePullSecrets).toEqual([{ name: SECRET_NAMES[0] }, { name: SECRET_NAMES[1] }]);
    const running = await waitRunning(namespace, 'two-registries');
    expect(running.status?.initContainerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[1]}/e2e/busybox@sha256:`);
    expect(running.status?.containerStatuses?.[0]?.imageID).toContain(`${REGISTRY_HOSTS[0]}/e2e/busybox@sha256:`);
    record('two registries to Running', Date.now() - started);
  });

  test('a pod labelled inject=disabled never reaches the webhook (objectSelector); its pull is refused', async () => {
    const namespace = optedIn[1] as string;
    const created = await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'opted-out', labels: { [INJECT_LABEL]: INJECT_DISABLED } },
        spec: { terminationGracePeriodSeconds: 0, containers: [{ name: 'main', image: IMAGES[0] as string }] },
      },
    });
    expect(created.spec?.imagePullSecrets).toBeUndefined();
    expect(await refusedPull(namespace, 'opted-out')).toMatch(REFUSED);
    // The webhook would opt the pod out itself too: its review log shows the apiserver never asked. The pod of
    // the test before is the control (review lines are flushed within 250 ms; the pull failure took longer).
    const reviews = await kubectl(
      'logs',
      '-n',
      release.namespace,
      '-l',
      'app.kubernetes.io/component=webhook',
      '--tail=-1',
    );
    expect(reviews).toContain(`"namespace":"${namespace}","pod":"two-registries"`);
    expect(reviews).not.toContain(`"pod":"opted-out"`);
  });

  test('a rotated password in the credentials Secret reaches the pull secret in place; new pulls use it', async () => {
    const namespace = optedIn[1] as string;
    const [registry] = cluster.registries;
    const original = await core.readNamespacedSecret({ name: SECRET_NAMES[0], namespace });
    const password = randomBytes(18).toString('base64url');
    await registry.setPassword(password);
    // What the user does: new credentials into the Secrets they manage (existingSecret, and the image pull Secret).
    const started = Date.now();
    await core.replaceNamespacedSecret({
      name: CREDENTIALS_SECRETS[0] as string,
      namespace: release.namespace,
      body: {
        metadata: { name: CREDENTIALS_SECRETS[0] as string },
        stringData: { username: registry.username, password },
      },
    });
    const auth = Buffer.from(`${registry.username}:${password}`).toString('base64');
    await core.replaceNamespacedSecret({
      name: IMAGE_PULL_SECRET,
      namespace: release.namespace,
      body: {
        metadata: { name: IMAGE_PULL_SECRET },
        type: 'kubernetes.io/dockerconfigjson',
        stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [registry.host]: { auth } } }) },
      },
    });
    // The kubelet updates the projected volume (its sync period and Secret cache), sync-secrets re-reads it.
    await until(
      'the pull secret rewritten with the new password',
      async () => {
        const secret = await core.readNamespacedSecret({ name: SECRET_NAMES[0], namespace });
        const config = Buffer.from(secret.data?.['.dockerconfigjson'] ?? '', 'base64').toString('utf8');
        if (!config.includes(auth)) throw new Error(`still the old credentials (uid ${secret.metadata?.uid})`);
        return true;
      },
      120_000,
    );
    record(
      'credentials Secret update to pull secret rewritten (kubelet volume update + sync-secrets)',
      Date.now() - started,
    );
    const rotated = await core.readNamespacedSecret({ name: SECRET_NAMES[0], namespace });
    expect(rotated.metadata?.uid).toBe(original.metadata?.uid);
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: 'after-rotation' },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [{ name: 'main', image: IMAGES[0] as string, imagePullPolicy: 'Always' }],
        },
      },
    });
    await waitRunning(namespace, 'after-rotation');
  });
});

describe('helm uninstall --wait', () => {
  test('removes every object of the release and its TLS Secret; pull secrets in opted-in namespaces stay', async () => {
    const manifest = await release.helm('get', 'manifest', release.name, '-n', release.namespace);
    const objects = parseAllDocuments(manifest)
      .map((doc) => doc.toJS() as { apiVersion: string; kind: string; metadata: { name: string } } | null)
      .filter((object) => object !== null)
      .map((object) => {
        const group = object.apiVersion.includes('/') ? `.${object.apiVersion.split('/')[0]}` : '';
        return `${object.kind.toLowerCase()}${group}/${object.metadata.name}`;
      });
    // The chart's cluster-scoped objects are in the list, so the check below covers them too.
    expect(objects).toEqual(
      expect.arrayContaining([
        `mutatingwebhookconfiguration.admissionregistration.k8s.io/${FULLNAME}`,
        expect.stringMatching(/^clusterrole\.rbac\.authorization\.k8s\.io\//),
        expect.stringMatching(/^validatingadmissionpolicy\.admissionregistration\.k8s\.io\//),
      ]),
    );

    const { ms } = await release.uninstall();
    record('helm uninstall --wait', ms);
    expect(await kubectl('get', ...objects, '-n', release.namespace, '--ignore-not-found', '-o', 'name')).toBe('');
    const gone = await until(
      'no pod left in the release namespace',
      async () => {
        const left = (await core.listNamespacedPod({ namespace: release.namespace })).items.map(
          (p) => p.metadata?.name,
        );
        if (left.length > 0) throw new Error(`left: ${left.join(', ')}`);
        return true;
      },
      CONTROLLER_MS,
    );
    record('uninstall to no pods', ms + gone);
    expect(
      (await cluster.kubeConfig.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: release.namespace })).items,
    ).toEqual([]);

    // certs-gen made the TLS Secret, not helm: the garbage collector deletes it through its ownerReference.
    const collected = await until(
      'the TLS Secret collected',
      async () => {
        const secrets = (await core.listNamespacedSecret({ namespace: release.namespace })).items;
        const names = secrets.map((secret) => secret.metadata?.name);
        if (names.includes(`${FULLNAME}-tls`)) throw new Error(`still there: ${names.join(', ')}`);
        return true;
      },
      CONTROLLER_MS,
    );
    record('TLS Secret collected after uninstall', collected);
    // Once the pods (drained, then collected after their ReplicaSet) and the TLS Secret are gone, nothing carrying
    // the release's instance label is left in any namespace.
    const kinds = [...new Set(objects.map((object) => object.split('/')[0]))];
    const labelled = await kubectl(
      'get',
      [...kinds, 'pod', 'job', 'secret'].join(','),
      '-A',
      '-l',
      INSTANCE_SELECTOR,
      '-o',
      'name',
    );
    expect(labelled).toBe('');

    for (const namespace of optedIn) expect(await pullSecretsIn(namespace)).toBe(true);
  });

  test('installed again once the TLS Secret is gone (README): a new certificate, pods get their secrets', async () => {
    // After the rotation above this also shows a fresh registry login pulling the chart.
    const { ms } = await release.install({ webhook: { failurePolicy: 'Fail' } });
    record('helm install again, to Ready', ms);
    const secret = await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace: release.namespace });
    const serving = new X509Certificate(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64').toString('utf8'));
    expect(serving.fingerprint256).not.toBe(firstServingCert);
    const pod = await core.createNamespacedPod({
      namespace: preLabelled,
      dryRun: 'All',
      body: {
        metadata: { name: 'after-reinstall' },
        spec: { containers: [{ name: 'main', image: IMAGES[0] as string }] },
      },
    });
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: SECRET_NAMES[0] }]);
  });
});
