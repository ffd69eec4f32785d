// Faults on the real node, on the chart as a user installs it (from the OCI registry, hooks on), with the webhook's
// failurePolicy Fail so that any missed admission is a failed create. Pods are created at a steady rate throughout
// each fault (test/support/node/load.ts); every fault must end with 0 failed and 0 unpatched creates. Counts and
// times go to stderr as `[faults] …` lines.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateServingCertificate, inspectCertificate } from '../../certs-gen/generate.ts';
import { INJECT_ENABLED, INJECT_LABEL, SYNC_LEASE_NAME } from '../../src/constants.ts';
import { startNodeCluster, type NodeCluster } from '../support/node/cluster.ts';
import { apiserverMetrics, sampleSum } from '../support/apiserver-metrics.ts';
import { describeCounts, type LoadCounts, startLoad } from '../support/node/load.ts';
import { publishRelease, type Release } from '../support/node/release.ts';
import { createOptedInNamespace, SECRET_NAMES, until } from '../support/node/story.ts';

/** The release's object names: "<release>-<chart>". */
const FULLNAME = 'acr-acr-pull-webhook';
const WEBHOOK_SELECTOR = 'app.kubernetes.io/instance=acr,app.kubernetes.io/component=webhook';
const SYNC_SELECTOR = 'app.kubernetes.io/instance=acr,app.kubernetes.io/component=sync-secrets';
/** Every fault runs against this install; upgrades must keep it. */
const VALUES = { webhook: { failurePolicy: 'Fail' }, syncSecrets: { watch: { replicas: 2 } } };
/** Creates per second during each fault. */
const RATE = 10;
/** Bound on pods being replaced or rolled, and on the kubelet delivering a Secret update. */
const ROLL_MS = 180_000;
/** Load before and after each fault, so the counts cover the steady state on both sides. */
const MARGIN_MS = 3_000;
const DAY_MS = 24 * 60 * 60 * 1000;
/** The webhook's name in the MutatingWebhookConfiguration, as the apiserver's metrics label it. */
const WEBHOOK_NAME = 'pods.acr-pull-webhook.io';
const DURATION = 'apiserver_admission_webhook_admission_duration_seconds';

/** The apiserver's own account of its calls to the webhook: calls, rejections, and the duration histogram. */
interface WebhookCalls {
  readonly calls: number;
  readonly rejected: number;
  /** Cumulative count per bucket bound (seconds). */
  readonly buckets: ReadonlyMap<number, number>;
}

let cluster: NodeCluster;
let release: Release;
let core: CoreV1Api;
const results: string[] = [];
const log = (line: string): void => {
  process.stderr.write(`[faults] ${line}\n`);
};
const report = (fault: string, run: { counts: LoadCounts; apiserver: ReturnType<typeof callsBetween> }, extra = '') => {
  const { calls, rejected, within } = run.apiserver;
  const apiserver = `apiserver: ${calls} webhook calls, ${rejected} rejected, ${within}`;
  const line = `${fault}: ${describeCounts(run.counts)}; ${apiserver}${extra === '' ? '' : `; ${extra}`}`;
  results.push(line);
  log(line);
};
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

function kubectl(...args: string[]): Promise<string> {
  return new Promise((ok, fail) =>
    execFile('kubectl', ['--kubeconfig', cluster.kubeconfigPath, ...args], { timeout: 60_000 }, (err, out, stderr) =>
      err ? fail(new Error(`kubectl ${args.join(' ')}: ${err.message}\n${stderr}`)) : ok(out),
    ),
  );
}

const isReady = (pod: V1Pod): boolean =>
  pod.metadata?.deletionTimestamp === undefined &&
  (pod.status?.conditions ?? []).some((condition) => condition.type === 'Ready' && condition.status === 'True');

async function podsOf(labelSelector: string): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: release.namespace, labelSelector })).items;
}

/** Waits until the webhook has exactly `replicas` pods, all Ready and none terminating; returns their names. */
async function webhookSettled(replicas: number, what: string): Promise<string[]> {
  let names: string[] = [];
  await until(
    what,
    async () => {
      const pods = await podsOf(WEBHOOK_SELECTOR);
      names = pods.map((pod) => pod.metadata?.name as string);
      if (pods.length !== replicas || !pods.every(isReady)) throw new Error(`pods: ${names.join(', ')}`);
      return true;
    },
    ROLL_MS,
  );
  return names;
}

/** The SHA-256 fingerprint of the certificate each Ready webhook pod serves on its admission port, by pod name. */
async function servedFingerprints(): Promise<Map<string, string>> {
  const pods = (await podsOf(WEBHOOK_SELECTOR)).filter(isReady);
  const script = pods
    .map(
      (pod) =>
        `echo "${pod.metadata?.name} $(openssl s_client -connect ${pod.status?.podIP}:8443 </dev/null 2>/dev/null` +
        ' | openssl x509 -noout -fingerprint -sha256)"',
    )
    .join('; ');
  const out = await cluster.runInside(['sh', '-c', script]);
  const served = new Map<string, string>();
  for (const line of out.trim().split('\n')) {
    const [name, fingerprint] = [line.split(' ')[0] as string, /Fingerprint=(\S+)/.exec(line)?.[1] ?? 'none'];
    served.set(name, fingerprint);
  }
  return served;
}

/** Waits until the kubelet has written `fingerprint`'s certificate into every Ready webhook pod's Secret volume (the
 *  file the webhook reads; a tmpfs mounted in the cluster's mount namespace); returns the ms it took. */
function untilDelivered(fingerprint: string, what: string): Promise<number> {
  return until(
    what,
    async () => {
      const pods = (await podsOf(WEBHOOK_SELECTOR)).filter(isReady);
      const files = pods.map((pod) =>
        join(cluster.dir, 'kubelet', 'pods', pod.metadata?.uid as string, 'volumes', 'kubernetes.io~secret', 'tls'),
      );
      const script = files
        .map((dir) => `openssl x509 -noout -fingerprint -sha256 -in ${dir}/tls.crt || echo missing`)
        .join('; ');
      const seen = [...(await cluster.runInside(['sh', '-c', script])).matchAll(/Fingerprint=(\S+)|missing/g)].map(
        (match) => match[1] ?? 'missing',
      );
      if (seen.length < 2 || seen.some((seenPrint) => seenPrint !== fingerprint)) throw new Error(`seen: ${seen}`);
      return true;
    },
    ROLL_MS,
  );
}

/** Waits until every Ready webhook pod (at least two) serves `fingerprint`; returns the ms it took. */
function untilServed(fingerprint: string, what: string): Promise<number> {
  return until(
    what,
    async () => {
      const served = await servedFingerprints();
      const wrong = [...served].filter(([, seen]) => seen !== fingerprint);
      if (served.size < 2 || wrong.length > 0) throw new Error(`served: ${JSON.stringify([...served])}`);
      return true;
    },
    ROLL_MS,
  );
}

async function tlsSecret(): Promise<{ cert: string; key: string; caCert: string; caKey: string }> {
  const secret = await core.readNamespacedSecret({ name: `${FULLNAME}-tls`, namespace: release.namespace });
  const text = (key: string): string => Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
  return { cert: text('tls.crt'), key: text('tls.key'), caCert: text('ca.crt'), caKey: text('ca.key') };
}

async function caBundle(): Promise<string> {
  const configuration = await cluster.kubeConfig
    .makeApiClient(AdmissionregistrationV1Api)
    .readMutatingWebhookConfiguration({ name: FULLNAME });
  return configuration.webhooks?.[0]?.clientConfig.caBundle ?? '';
}

async function webhookCalls(): Promise<WebhookCalls> {
  const text = await apiserverMetrics(cluster.kubeConfig);
  const labels = { name: WEBHOOK_NAME };
  // Bucket bounds as the apiserver writes them (le="0.005", le="1", ...), read rather than assumed.
  const bounds = new Set<string>();
  for (const match of text.matchAll(new RegExp(`^${DURATION}_bucket\\{.*le="([^"]+)"`, 'gm')))
    if (match[1] !== '+Inf') bounds.add(match[1] as string);
  const buckets = new Map<number, number>();
  for (const le of [...bounds].sort((a, b) => Number(a) - Number(b)))
    buckets.set(Number(le), sampleSum(text, `${DURATION}_bucket`, { ...labels, le }));
  return {
    calls: sampleSum(text, `${DURATION}_count`, labels),
    rejected: sampleSum(text, 'apiserver_admission_webhook_rejection_count', labels),
    buckets,
  };
}

/** What the apiserver counted between two readings: calls, rejections, and the bound on the slowest call. */
function callsBetween(before: WebhookCalls, after: WebhookCalls): { calls: number; rejected: number; within: string } {
  const calls = after.calls - before.calls;
  const bound = [...after.buckets].find(([le, count]) => count - (before.buckets.get(le) ?? 0) === calls)?.[0];
  return {
    calls,
    rejected: after.rejected - before.rejected,
    within: bound === undefined ? 'some over the largest bucket' : `all within ${bound} s`,
  };
}

/** A container's output in the (first) pod of a Job in the release namespace, as the kubelet wrote it. */
async function jobContainerLog(job: string, container: string): Promise<string> {
  const pod = (await podsOf(`batch.kubernetes.io/job-name=${job}`))[0]?.metadata?.name ?? '(none)';
  const root = join(cluster.dir, 'pod-logs');
  const dirs = existsSync(root)
    ? readdirSync(root).filter((dir) => dir.startsWith(`${release.namespace}_${pod}_`))
    : [];
  return dirs
    .map((dir) => join(root, dir, container, '0.log'))
    .filter((file) => existsSync(file))
    .map((file) => readFileSync(file, 'utf8'))
    .join('\n');
}

/** Runs `fault` with pods created at RATE in a fresh opted-in namespace, from MARGIN_MS before to MARGIN_MS after. */
async function underLoad<T>(
  fault: () => Promise<T>,
): Promise<{ counts: LoadCounts; apiserver: ReturnType<typeof callsBetween>; result: T }> {
  const namespace = `load-${randomBytes(3).toString('hex')}`;
  await createOptedInNamespace(cluster, namespace);
  const before = await webhookCalls();
  const load = startLoad(cluster.kubeConfig, { namespace, ratePerSecond: RATE, expectSecrets: [SECRET_NAMES[0]] });
  try {
    await sleep(MARGIN_MS);
    const result = await fault();
    await sleep(MARGIN_MS);
    const counts = await load.stop();
    return { counts, apiserver: callsBetween(before, await webhookCalls()), result };
  } finally {
    await load.stop();
    // Gated pods are not bound to the node: the namespace goes at once, without the kubelet.
    await core.deleteNamespace({ name: namespace }).catch(() => {});
  }
}

/** No create failed or came back without its secret, and the apiserver saw no webhook call fail. */
function expectNoMisses(counts: LoadCounts, apiserver: { calls: number; rejected: number }): void {
  expect(counts.attempted).toBeGreaterThan(0);
  expect({ failed: counts.failed, unpatched: counts.unpatched, firstFailures: counts.firstFailures }).toEqual({
    failed: 0,
    unpatched: 0,
    firstFailures: [],
  });
  expect(counts.succeeded).toBe(counts.attempted);
  expect(apiserver.rejected).toBe(0);
  expect(apiserver.calls).toBeGreaterThanOrEqual(counts.attempted);
}

beforeAll(async () => {
  let started = Date.now();
  cluster = await startNodeCluster({ log });
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  log(`cluster start: ${seconds(Date.now() - started)}`);
  started = Date.now();
  release = await publishRelease(cluster, log);
  log(`image and chart published: ${seconds(Date.now() - started)}`);
  const install = await release.install(VALUES);
  log(`helm install --wait (hooks on): ${seconds(install.ms)}`);
  await webhookSettled(2, 'the webhook 2/2 Ready after the install');
}, 900_000);

afterAll(async () => {
  log(`results:\n  ${results.join('\n  ')}`);
  await cluster?.stop();
}, 120_000);

describe('faults on the real node under a steady pod-create load (failurePolicy Fail)', () => {
  test('deleting one webhook pod (graceful) fails no create while a replacement comes up', async () => {
    const [victim] = await webhookSettled(2, 'the webhook 2/2 Ready');
    const run = await underLoad(async () => {
      const started = Date.now();
      await core.deleteNamespacedPod({ name: victim as string, namespace: release.namespace });
      // Until the victim is gone (its drain and close included) and two others are Ready.
      const names = await webhookSettled(2, 'a replacement webhook pod Ready and the deleted one gone');
      return { ms: Date.now() - started, names };
    });
    expect(run.result.names).not.toContain(victim);
    report('delete one webhook pod', run, `replacement Ready and old pod gone after ${seconds(run.result.ms)}`);
    expectNoMisses(run.counts, run.apiserver);
  }, 600_000);

  test('helm upgrade rolling the webhook Deployment fails no create', async () => {
    const before = await webhookSettled(2, 'the webhook 2/2 Ready');
    const run = await underLoad(async () => {
      const upgrade = await release.upgrade({
        ...VALUES,
        webhook: { ...VALUES.webhook, podAnnotations: { 'acr-pull-webhook.test/rolled': 'once' } },
      });
      const names = await webhookSettled(2, 'the rollout complete, old pods gone');
      return { ms: upgrade.ms, names };
    });
    for (const name of before) expect(run.result.names).not.toContain(name);
    const pods = await podsOf(WEBHOOK_SELECTOR);
    expect(pods.map((pod) => pod.metadata?.annotations?.['acr-pull-webhook.test/rolled'])).toEqual(['once', 'once']);
    report('helm upgrade rolling the webhook', run, `helm upgrade --wait ${seconds(run.result.ms)}`);
    expectNoMisses(run.counts, run.apiserver);
  }, 600_000);

  test('CronJob renewal: the pods reload the certificate from their Secret volume, no admission fails', async () => {
    const installed = await tlsSecret();
    const names = inspectCertificate(installed.cert);
    // A certificate from the same CA whose renewal is due, as time would make it: 5 of 30 days left.
    const due = generateServingCertificate(
      { certPem: installed.caCert, keyPem: installed.caKey },
      {
        dnsNames: names.dnsNames,
        ipAddresses: names.ipAddresses,
        validityDays: 30,
        now: new Date(Date.now() - 25 * DAY_MS),
      },
    );
    const dueFingerprint = new X509Certificate(due.certPem).fingerprint256;
    const installedFingerprint = new X509Certificate(installed.cert).fingerprint256;
    expect([...(await servedFingerprints()).values()]).toEqual([installedFingerprint, installedFingerprint]);
    const caBundleBefore = await caBundle();

    const run = await underLoad(async () => {
      await core.patchNamespacedSecret(
        {
          name: `${FULLNAME}-tls`,
          namespace: release.namespace,
          body: {
            data: {
              'tls.crt': Buffer.from(due.certPem).toString('base64'),
              'tls.key': Buffer.from(due.keyPem).toString('base64'),
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      const dueDeliveredMs = await untilDelivered(dueFingerprint, 'the due certificate in every pod volume');
      const dueServedMs = await untilServed(dueFingerprint, 'every webhook pod serving the due certificate');

      const started = Date.now();
      const cronJob = `${FULLNAME}-certs-gen`;
      await kubectl('create', 'job', '--from', `cronjob/${cronJob}`, 'renew-now', '-n', release.namespace);
      const batch = cluster.kubeConfig.makeApiClient(BatchV1Api);
      await until(
        'the renewal Job complete',
        async () => {
          const job = await batch.readNamespacedJob({ name: 'renew-now', namespace: release.namespace });
          const conditions = job.status?.conditions ?? [];
          if (conditions.some((c) => c.type === 'Failed' && c.status === 'True'))
            throw new Error(`renewal Job failed: ${JSON.stringify(job.status)}`);
          if (!conditions.some((c) => c.type === 'Complete' && c.status === 'True'))
            throw new Error(JSON.stringify(job.status));
          return true;
        },
        ROLL_MS,
      );
      const jobMs = Date.now() - started;
      const renewLog = await jobContainerLog('renew-now', 'renew');
      const renewed = await tlsSecret();
      const renewedFingerprint = new X509Certificate(renewed.cert).fingerprint256;
      const deliveredMs = await untilDelivered(renewedFingerprint, 'the renewed certificate in every pod volume');
      const servedMs = await untilServed(renewedFingerprint, 'every webhook pod serving the renewed certificate');
      return { dueDeliveredMs, dueServedMs, jobMs, deliveredMs, servedMs, renewed, renewedFingerprint, renewLog };
    });

    // Renewed because it was due, not because the edited certificate failed to verify.
    expect(run.result.renewLog).toMatch(
      /renewed the serving certificate in .*\(less than a third of the validity left/,
    );
    const renewed = inspectCertificate(run.result.renewed.cert);
    expect(run.result.renewedFingerprint).not.toBe(dueFingerprint);
    expect(renewed.notAfter.getTime() - renewed.notBefore.getTime()).toBeGreaterThan(300 * DAY_MS);
    expect(run.result.renewed.caCert).toBe(installed.caCert);
    expect(new X509Certificate(run.result.renewed.cert).checkIssued(new X509Certificate(installed.caCert))).toBe(true);
    expect(await caBundle()).toBe(caBundleBefore);
    report(
      'certificate renewal',
      run,
      `Secret edited: in the pods' volumes (kubelet) after ${seconds(run.result.dueDeliveredMs)}, served ` +
        `${seconds(run.result.dueServedMs)} later; renewal Job ${seconds(run.result.jobMs)}; renewed certificate ` +
        `in the volumes ${seconds(run.result.deliveredMs)} after the Job completed, ` +
        `served ${seconds(run.result.servedMs)} later`,
    );
    expectNoMisses(run.counts, run.apiserver);
  }, 900_000);

  test('deleting the sync-secrets leader: another replica takes the Lease; a new namespace gets secrets', async () => {
    const leases = cluster.kubeConfig.makeApiClient(CoordinationV1Api);
    const holder = async (): Promise<string> =>
      (await leases.readNamespacedLease({ name: SYNC_LEASE_NAME, namespace: release.namespace })).spec
        ?.holderIdentity ?? '';
    let replicas: string[] = [];
    let leader = '';
    await until(
      'two sync-secrets pods Ready, one of them holding the Lease',
      async () => {
        const pods = await podsOf(SYNC_SELECTOR);
        replicas = pods.filter(isReady).map((pod) => pod.metadata?.name as string);
        leader = await holder();
        if (pods.length !== 2 || replicas.length !== 2 || !replicas.includes(leader))
          throw new Error(`pods ${replicas.join(', ')}, holder ${leader}`);
        return true;
      },
      ROLL_MS,
    );
    const other = replicas.find((name) => name !== leader) as string;

    const run = await underLoad(async () => {
      const started = Date.now();
      await core.deleteNamespacedPod({ name: leader, namespace: release.namespace });
      let next = '';
      // Usually the standing replica (it retries every few seconds); the replacement may win a race for it.
      await until(
        `the Lease held by a replica other than ${leader}`,
        async () => {
          next = await holder();
          if (next === '' || next === leader) throw new Error(`holder ${next}`);
          return true;
        },
        ROLL_MS,
      );
      const takeoverMs = Date.now() - started;
      // Labelled right after the takeover: only the new leader can write its secrets.
      const namespace = `after-takeover-${randomBytes(3).toString('hex')}`;
      await core.createNamespace({
        body: { metadata: { name: namespace, labels: { [INJECT_LABEL]: INJECT_ENABLED } } },
      });
      const secretsMs = await until(
        `pull secrets in ${namespace}`,
        async () => {
          for (const name of SECRET_NAMES) await core.readNamespacedSecret({ name, namespace });
          return true;
        },
        60_000,
      );
      await core.deleteNamespace({ name: namespace });
      return { takeoverMs, secretsMs, next };
    });
    const replicasNow = (await podsOf(SYNC_SELECTOR)).map((pod) => pod.metadata?.name);
    expect(replicasNow).toContain(run.result.next);
    report(
      'delete the sync-secrets leader',
      run,
      `Lease to ${run.result.next === other ? 'the standing replica' : 'the replacement pod'} ` +
        `${run.result.takeoverMs} ms after the delete; secrets in a namespace labelled then ` +
        `${run.result.secretsMs} ms later`,
    );
    expectNoMisses(run.counts, run.apiserver);
  }, 600_000);
});
