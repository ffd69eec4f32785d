// `acr-pull-webhook doctor` as a process against the real apiserver, the real `serve` and a real
// `sync-secrets --watch`: healthy is exit 0; each problem it claims to detect is made on purpose and gives
// its line and exit 1 (missing configuration, wrong caBundle, no ready endpoints, missing, unmanaged, edited
// and stale secrets, a namespace not opted in, an opted-out pod, an unmatched image, pull failure Events).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  V1MicroTime,
  type V1MutatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { desiredSecrets, secretManifest } from '../../src/sync/desired.ts';
import { testPki } from '../support/certificates.ts';
import { createNamespace } from '../support/control-plane.ts';
import { startSyncWatcher, timeUntil, type SyncWatcher } from '../support/sync-process.ts';
import { tempDir } from '../support/temp-dir.ts';
import { webhookConfiguration } from '../support/webhook-configuration.ts';
import { MAIN, startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';

const ADMIN_KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(ADMIN_KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const discovery = kc.makeApiClient(DiscoveryV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const apps = kc.makeApiClient(AppsV1Api);
const batch = kc.makeApiClient(BatchV1Api);
const dir = tempDir('e2e-doctor');
const run = randomUUID().slice(0, 8);
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Only this file's namespaces carry this label key: the hot value is synced by the watcher, the cold one not. */
const OPT_IN = 'doctor-e2e.acr-pull-webhook.io/inject';
const HOT = `${run}-hot`;
const COLD = `${run}-cold`;
const CONFIG_NAME = `acr-pull-webhook-doctor-${run}`;
const WRONG_CA_NAME = `acr-pull-webhook-doctor-wrong-ca-${run}`;
const SERVICE_CONFIG_NAME = `acr-pull-webhook-doctor-service-${run}`;
const DOWN_NAME = `acr-pull-webhook-doctor-down-${run}`;
const LEASE_NAMESPACE = `doctor-lease-${run}`;
const pki = testPki({ validityDays: 20, dnsNames: ['localhost', `acr-pull-webhook.${LEASE_NAMESPACE}.svc`] });
let webhook: WebhookProcess;
let watcher: SyncWatcher;
let hotNamespace: string;

writeFileSync(join(dir, 'username'), 'doctor-user\n');
writeFileSync(join(dir, 'password'), 'doctor-password\n');

function writeConfig(value: string): string {
  const file = join(dir, `config-${value}.yaml`);
  const credentials = { usernameFile: join(dir, 'username'), passwordFile: join(dir, 'password') };
  const registries = [{ server: 'myregistry.azurecr.io', secretName: 'acr', credentials }];
  writeFileSync(file, toYaml({ registries, optIn: { label: OPT_IN, value } }));
  return file;
}
const HOT_CONFIG = writeConfig(HOT);
const COLD_CONFIG = writeConfig(COLD);

interface Result {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `acr-pull-webhook doctor ...` as its own process, with only PATH and HOME from outside. */
function doctor(args: readonly string[]): Promise<Result> {
  const child = spawn(process.execPath, [MAIN, 'doctor', '--kubeconfig', ADMIN_KUBECONFIG, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((done) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    }),
  );
}

const cluster = (config: string, name = CONFIG_NAME): Promise<Result> =>
  doctor(['--config', config, '--webhook-configuration', name, '--lease-namespace', LEASE_NAMESPACE]);
const podDoctor = (namespace: string, name: string, ...more: string[]): Promise<Result> =>
  doctor(['pod', `${namespace}/${name}`, '--config', HOT_CONFIG, ...more]);

/** The table row for `subject` (status, subject and detail, spaces squeezed), or undefined. */
function row(stdout: string, subject: string): string | undefined {
  return stdout
    .split('\n')
    .map((line) => line.replaceAll(/ {2,}/g, '  '))
    .find((line) => line.split('  ')[1] === subject);
}

function register(name: string, caPem: string, value: string): Promise<V1MutatingWebhookConfiguration> {
  const body = webhookConfiguration({ name, port: webhook.port, caPem });
  const hook = body.webhooks?.[0];
  if (hook !== undefined)
    hook.namespaceSelector = { matchExpressions: [{ key: OPT_IN, operator: 'In', values: [value] }] };
  return admission.createMutatingWebhookConfiguration({ body });
}

async function createPod(namespace: string, image: string, labels: Record<string, string> = {}): Promise<string> {
  const pod = await core.createNamespacedPod({
    namespace,
    body: { metadata: { generateName: 'app-', labels }, spec: { containers: [{ name: 'app', image }] } },
  });
  return pod.metadata?.name ?? '';
}

async function managedSecret(namespace: string): Promise<boolean> {
  const secret = await core.readNamespacedSecret({ namespace, name: 'acr' });
  return secret.metadata?.labels?.['app.kubernetes.io/managed-by'] === 'acr-pull-webhook';
}

beforeAll(async () => {
  webhook = await startWebhookProcess(
    writeServeFiles(pki, { dir, config: 'registries: [{server: myregistry.azurecr.io, secretName: acr}]' }),
  );
  await createNamespace(kc, LEASE_NAMESPACE);
  await register(CONFIG_NAME, pki.ca.certPem, HOT);
  hotNamespace = unique('doctor-hot');
  await createNamespace(kc, hotNamespace, { [OPT_IN]: HOT });
  watcher = await startSyncWatcher({
    config: HOT_CONFIG,
    kubeconfig: ADMIN_KUBECONFIG,
    leaseNamespace: LEASE_NAMESPACE,
    identity: `doctor-${run}`,
  });
  await timeUntil('sync-secrets wrote the pull secret', () => managedSecret(hotNamespace), 30_000);
  await timeUntil(
    'the webhook patches pods in the opted-in namespace',
    async () => {
      const pod = await core.createNamespacedPod({
        namespace: hotNamespace,
        dryRun: 'All',
        body: {
          metadata: { generateName: 'probe-' },
          spec: { containers: [{ name: 'c', image: 'myregistry.azurecr.io/p' }] },
        },
      });
      return (pod.spec?.imagePullSecrets ?? []).length > 0;
    },
    30_000,
  );
});

afterAll(async () => {
  for (const name of [CONFIG_NAME, WRONG_CA_NAME, SERVICE_CONFIG_NAME, DOWN_NAME])
    await admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
  await watcher?.stop();
  await webhook?.stop();
});

describe('doctor, cluster-wide', () => {
  test('a healthy install: every row ok, "fix: nothing", exit 0', async () => {
    const result = await cluster(HOT_CONFIG);
    expect(result.stderr).toBe('');
    expect(row(result.stdout, `webhook configuration ${CONFIG_NAME}`)).toBe(
      `ok  webhook configuration ${CONFIG_NAME}  1 webhook`,
    );
    expect(row(result.stdout, 'certificate pods.acr-pull-webhook.io')).toMatch(
      new RegExp(
        `^ok  certificate pods\\.acr-pull-webhook\\.io  the caBundle verifies the certificate served at ` +
          `127\\.0\\.0\\.1:${webhook.port} for 127\\.0\\.0\\.1; expires in 19d `,
      ),
    );
    expect(row(result.stdout, `secret ${hotNamespace}/acr`)).toBe(`ok  secret ${hotNamespace}/acr  managed, current`);
    expect(row(result.stdout, `lease ${LEASE_NAMESPACE}/acr-pull-webhook-sync-secrets`)).toMatch(
      new RegExp(
        `^ok  lease ${LEASE_NAMESPACE}/acr-pull-webhook-sync-secrets  held by doctor-${run}, renewed \\d+s ago$`,
      ),
    );
    expect(result.stdout.endsWith('fix: nothing: every check passed\n')).toBe(true);
    expect(result.status).toBe(0);
  });

  test('-o json: healthy, the findings and the fix, for scripts', async () => {
    const result = await doctor([
      '--config',
      HOT_CONFIG,
      '--webhook-configuration',
      CONFIG_NAME,
      '-o',
      'json',
      '--lease-namespace',
      LEASE_NAMESPACE,
    ]);
    const report = JSON.parse(result.stdout) as {
      healthy: boolean;
      findings: { status: string; subject: string }[];
      fix: string;
    };
    expect(report.healthy).toBe(true);
    expect(report.findings).toContainEqual(
      expect.objectContaining({ status: 'ok', subject: `secret ${hotNamespace}/acr` }),
    );
    expect(report.fix).toBe('nothing: every check passed');
    expect(result.status).toBe(0);
  });

  test('a missing webhook configuration is a FAIL row naming it, exit 1', async () => {
    const name = `acr-pull-webhook-absent-${run}`;
    const result = await cluster(HOT_CONFIG, name);
    expect(row(result.stdout, `webhook configuration ${name}`)).toBe(
      `FAIL  webhook configuration ${name}  missing: no pod gets pull secrets`,
    );
    expect(result.stdout).toContain('fix: install the chart, or pass --webhook-configuration');
    expect(result.status).toBe(1);
  });

  test('a caBundle from another CA does not verify the served certificate: FAIL, exit 1', async () => {
    await register(WRONG_CA_NAME, testPki().ca.certPem, `${run}-nobody`);
    const result = await cluster(HOT_CONFIG, WRONG_CA_NAME);
    expect(row(result.stdout, 'certificate pods.acr-pull-webhook.io')).toBe(
      `FAIL  certificate pods.acr-pull-webhook.io  the caBundle does not verify the certificate served at ` +
        `127.0.0.1:${webhook.port}: the certificate is not signed by the caBundle (a CA from another install?)`,
    );
    expect(result.status).toBe(1);
  });

  test('a webhook that no longer listens at its URL: FAIL naming the address, exit 1', async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const body = webhookConfiguration({ name: DOWN_NAME, port: closed, caPem: pki.ca.certPem });
    const hook = body.webhooks?.[0];
    if (hook !== undefined)
      hook.namespaceSelector = { matchExpressions: [{ key: OPT_IN, operator: 'In', values: [`${run}-nobody`] }] };
    await admission.createMutatingWebhookConfiguration({ body });
    const result = await cluster(HOT_CONFIG, DOWN_NAME);
    expect(row(result.stdout, 'certificate pods.acr-pull-webhook.io')).toBe(
      `FAIL  certificate pods.acr-pull-webhook.io  cannot read the served certificate from the certificate served at ` +
        `127.0.0.1:${closed}: cannot connect to 127.0.0.1:${closed}: ECONNREFUSED`,
    );
    expect(result.status).toBe(1);
  });

  test('a service clientConfig: ready endpoints and the TLS Secret their pod mounts; none ready fails', async () => {
    const service = 'acr-pull-webhook';
    await core.createNamespacedSecret({
      namespace: LEASE_NAMESPACE,
      body: {
        metadata: { name: 'webhook-tls' },
        type: 'kubernetes.io/tls',
        data: {
          'tls.crt': Buffer.from(pki.serving.certPem).toString('base64'),
          'tls.key': Buffer.from(pki.serving.keyPem).toString('base64'),
        },
      },
    });
    await core.createNamespacedPod({
      namespace: LEASE_NAMESPACE,
      body: {
        metadata: { name: 'webhook-0' },
        spec: {
          containers: [{ name: 'webhook', image: 'example.com/webhook' }],
          volumes: [{ name: 'tls', secret: { secretName: 'webhook-tls' } }],
        },
      },
    });
    await core.createNamespacedService({
      namespace: LEASE_NAMESPACE,
      body: { metadata: { name: service }, spec: { ports: [{ port: 443, targetPort: 8443 }] } },
    });
    const slice = await discovery.createNamespacedEndpointSlice({
      namespace: LEASE_NAMESPACE,
      body: {
        metadata: { name: `${service}-1`, labels: { 'kubernetes.io/service-name': service } },
        addressType: 'IPv4',
        endpoints: [
          {
            addresses: ['10.0.0.10'],
            conditions: { ready: true },
            targetRef: { kind: 'Pod', namespace: LEASE_NAMESPACE, name: 'webhook-0' },
          },
        ],
        ports: [{ port: 8443 }],
      },
    });
    const body = webhookConfiguration({ name: SERVICE_CONFIG_NAME, port: 443, caPem: pki.ca.certPem });
    const hook = body.webhooks?.[0];
    if (hook !== undefined) {
      hook.clientConfig = {
        service: { namespace: LEASE_NAMESPACE, name: service, path: '/mutate', port: 443 },
        caBundle: Buffer.from(pki.ca.certPem).toString('base64'),
      };
      hook.namespaceSelector = { matchExpressions: [{ key: OPT_IN, operator: 'In', values: [`${run}-nobody`] }] };
    }
    await admission.createMutatingWebhookConfiguration({ body });
    const healthy = await cluster(HOT_CONFIG, SERVICE_CONFIG_NAME);
    expect(row(healthy.stdout, `endpoints ${LEASE_NAMESPACE}/${service}`)).toBe(
      `ok  endpoints ${LEASE_NAMESPACE}/${service}  1 ready`,
    );
    expect(row(healthy.stdout, 'certificate pods.acr-pull-webhook.io')).toMatch(
      new RegExp(
        `^ok  certificate pods\\.acr-pull-webhook\\.io  the caBundle verifies Secret ${LEASE_NAMESPACE}/webhook-tls ` +
          `\\(served by pod webhook-0\\) for ${service}\\.${LEASE_NAMESPACE}\\.svc; expires in 19d `,
      ),
    );
    expect(healthy.status).toBe(0);

    const endpoints = slice.endpoints ?? [];
    await discovery.replaceNamespacedEndpointSlice({
      namespace: LEASE_NAMESPACE,
      name: `${service}-1`,
      body: { ...slice, endpoints: endpoints.map((endpoint) => ({ ...endpoint, conditions: { ready: false } })) },
    });
    const down = await cluster(HOT_CONFIG, SERVICE_CONFIG_NAME);
    expect(row(down.stdout, `endpoints ${LEASE_NAMESPACE}/${service}`)).toBe(
      `FAIL  endpoints ${LEASE_NAMESPACE}/${service}  no ready endpoint (1 not ready): ` +
        'every pod is created without pull secrets (or refused)',
    );
    expect(down.status).toBe(1);
  });

  test.each([
    {
      problem: 'a missing secret',
      make: async (_namespace: string) => {},
      line: 'missing',
    },
    {
      problem: 'a secret not managed by acr-pull-webhook',
      make: async (namespace: string) => {
        await core.createNamespacedSecret({
          namespace,
          body: {
            metadata: { name: 'acr' },
            type: 'kubernetes.io/dockerconfigjson',
            data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') },
          },
        });
      },
      line:
        'not managed by acr-pull-webhook (no app.kubernetes.io/managed-by=acr-pull-webhook): ' +
        'sync-secrets leaves it alone',
    },
    {
      problem: 'a managed secret edited by hand',
      make: async (namespace: string) => {
        const [desired] = desiredSecrets([
          { server: 'myregistry.azurecr.io', secretName: 'acr', username: 'doctor-user', password: 'doctor-password' },
        ]);
        const manifest = secretManifest(desired ?? never(), namespace);
        manifest.data = { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') };
        await core.createNamespacedSecret({ namespace, body: manifest });
      },
      line: 'edited since sync-secrets wrote it (content differs from its content-hash annotation)',
    },
    {
      problem: 'a managed secret with an old password',
      make: async (namespace: string) => {
        const [desired] = desiredSecrets([
          { server: 'myregistry.azurecr.io', secretName: 'acr', username: 'doctor-user', password: 'old-password' },
        ]);
        await core.createNamespacedSecret({ namespace, body: secretManifest(desired ?? never(), namespace) });
      },
      line: 'stale: its content is not what the configured credentials give now',
    },
  ])('$problem in an opted-in namespace is a FAIL row, exit 1', async ({ make, line }) => {
    const namespace = unique('doctor-cold');
    await createNamespace(kc, namespace, { [OPT_IN]: COLD });
    await make(namespace);
    const result = await cluster(COLD_CONFIG);
    expect(row(result.stdout, `secret ${namespace}/acr`)).toBe(`FAIL  secret ${namespace}/acr  ${line}`);
    expect(result.status).toBe(1);
    // Terminating (for good: no namespace controller here), so the next rows' runs leave it out.
    await core.deleteNamespace({ name: namespace });
  });

  test('a Lease whose holder stopped renewing is a FAIL; no Lease at all is only a warning (exit 0)', async () => {
    const namespace = unique('doctor-lease');
    await createNamespace(kc, namespace);
    const args = ['--config', HOT_CONFIG, '--webhook-configuration', CONFIG_NAME, '--lease-namespace', namespace];
    const none = await doctor(args);
    expect(row(none.stdout, `lease ${namespace}/acr-pull-webhook-sync-secrets`)).toBe(
      `WARN  lease ${namespace}/acr-pull-webhook-sync-secrets  no Lease: no sync-secrets --watch has run here`,
    );
    expect(none.status).toBe(0);

    const renewed = new Date(Date.now() - 60_000);
    await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'acr-pull-webhook-sync-secrets' },
        spec: {
          holderIdentity: 'sync-gone',
          leaseDurationSeconds: 15,
          acquireTime: new V1MicroTime(renewed.getTime()),
          renewTime: new V1MicroTime(renewed.getTime()),
        },
      },
    });
    const stale = await doctor(args);
    expect(row(stale.stdout, `lease ${namespace}/acr-pull-webhook-sync-secrets`)).toMatch(
      new RegExp(
        `^FAIL  lease ${namespace}/acr-pull-webhook-sync-secrets  held by sync-gone, last renewed 6\\ds ago ` +
          '\\(over its 15s\\): that replica is gone or stuck$',
      ),
    );
    expect(stale.status).toBe(1);
  });

  test('without a configuration it is a usage error: exit 2, before any cluster call', async () => {
    const result = await doctor([]);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'acr-pull-webhook doctor: --config (or ACR_PULL_WEBHOOK_CONFIG) is required\n' +
        "Run 'acr-pull-webhook doctor --help' for usage.\n",
    );
    expect(result.status).toBe(2);
  });
});

function never(): never {
  throw new Error('no desired secret');
}

describe('doctor pod', () => {
  test('a patched pod in an opted-in namespace with its secret: ok rows, "fix: nothing", exit 0', async () => {
    const name = await createPod(hotNamespace, 'myregistry.azurecr.io/app:1');
    const result = await podDoctor(hotNamespace, name);
    expect(result.stdout.split('\n').map((line) => line.replaceAll(/ {2,}/g, '  '))).toEqual([
      `ok  namespace ${hotNamespace}  opted in (${OPT_IN}=${HOT})`,
      'ok  image myregistry.azurecr.io/app:1  matches myregistry.azurecr.io -> acr',
      `ok  secret ${hotNamespace}/acr  managed, current`,
      'fix: nothing: every check passed',
      '',
    ]);
    expect(result.status).toBe(0);
  });

  test('a namespace not opted in: FAIL, and the fix is the label command', async () => {
    const namespace = unique('doctor-plain');
    await createNamespace(kc, namespace);
    const name = await createPod(namespace, 'myregistry.azurecr.io/app:1');
    const result = await podDoctor(namespace, name);
    expect(row(result.stdout, `namespace ${namespace}`)).toBe(
      `FAIL  namespace ${namespace}  not opted in: no ${OPT_IN}=${HOT}`,
    );
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe(
      `fix: kubectl label namespace ${namespace} ${OPT_IN}=${HOT}, then recreate the pod`,
    );
    expect(result.status).toBe(1);
  });

  test('an opted-out pod whose image needs a secret: FAIL naming the label', async () => {
    const name = await createPod(hotNamespace, 'myregistry.azurecr.io/app:1', {
      'acr-pull-webhook/inject': 'disabled',
    });
    const result = await podDoctor(hotNamespace, name);
    expect(row(result.stdout, `pod ${hotNamespace}/${name}`)).toBe(
      `FAIL  pod ${hotNamespace}/${name}  opted out (acr-pull-webhook/inject=disabled) although its images need acr`,
    );
    expect(result.stdout).toContain('fix: remove the label acr-pull-webhook/inject from the pod (template)');
    expect(result.status).toBe(1);
  });

  test('an image on an Azure registry no entry matches: FAIL, and the fix names the host', async () => {
    const name = await createPod(hotNamespace, 'other.azurecr.io/app:1');
    const result = await podDoctor(hotNamespace, name);
    expect(row(result.stdout, 'image other.azurecr.io/app:1')).toBe(
      'FAIL  image other.azurecr.io/app:1  no registries[] entry matches ' +
        '(not myregistry.azurecr.io: host label 1 "other" does not match "myregistry")',
    );
    expect(result.stdout).toContain('fix: add a registries[] entry for other.azurecr.io, then recreate the pod');
    expect(result.status).toBe(1);
  });

  test("the pod's image pull failure Events are FAIL rows, with their count", async () => {
    const name = await createPod(hotNamespace, 'myregistry.azurecr.io/app:2');
    const pod = await core.readNamespacedPod({ namespace: hotNamespace, name });
    const message = 'Failed to pull image "myregistry.azurecr.io/app:2": 401 Unauthorized';
    await core.createNamespacedEvent({
      namespace: hotNamespace,
      body: {
        metadata: { name: `${name}.failed` },
        involvedObject: { kind: 'Pod', namespace: hotNamespace, name, uid: pod.metadata?.uid ?? '' },
        reason: 'Failed',
        message,
        type: 'Warning',
        count: 3,
        source: { component: 'kubelet' },
      },
    });
    const result = await podDoctor(hotNamespace, name, '-o', 'json');
    const report = JSON.parse(result.stdout) as {
      findings: { status: string; subject: string; detail: string }[];
      fix: string;
    };
    expect(report.findings).toContainEqual(
      expect.objectContaining({ status: 'fail', subject: 'event Failed', detail: `${message} (x3)` }),
    );
    expect(report.fix).toBe(
      'the credentials in the pull secret are refused or the image does not exist: see the secret lines',
    );
    expect(result.status).toBe(1);
  });

  test('a container waiting in ImagePullBackOff (the pod status, as the kubelet writes it) is a FAIL row', async () => {
    const name = await createPod(hotNamespace, 'myregistry.azurecr.io/app:3');
    const pod = await core.readNamespacedPod({ namespace: hotNamespace, name });
    const message = 'Back-off pulling image "myregistry.azurecr.io/app:3"';
    await core.replaceNamespacedPodStatus({
      namespace: hotNamespace,
      name,
      body: {
        ...pod,
        status: {
          phase: 'Pending',
          containerStatuses: [
            {
              name: 'app',
              image: 'myregistry.azurecr.io/app:3',
              imageID: '',
              ready: false,
              restartCount: 0,
              state: { waiting: { reason: 'ImagePullBackOff', message } },
            },
          ],
        },
      },
    });
    const result = await podDoctor(hotNamespace, name);
    expect(row(result.stdout, 'container app')).toBe(`FAIL  container app  ImagePullBackOff: ${message}`);
    expect(result.status).toBe(1);
  });

  test('a pod that does not exist: FAIL, exit 1', async () => {
    const result = await podDoctor(hotNamespace, 'no-such-pod');
    expect(row(result.stdout, `pod ${hotNamespace}/no-such-pod`)).toBe(
      `FAIL  pod ${hotNamespace}/no-such-pod  not found`,
    );
    expect(result.status).toBe(1);
  });
});

/** A Deployment of one container; with no controller-manager here, its pods are only those a test creates. */
async function createDeployment(
  namespace: string,
  image: string,
): Promise<{ name: string; labels: Record<string, string> }> {
  const name = unique('web');
  const labels = { app: name };
  await apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name },
      spec: {
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { containers: [{ name: 'app', image }] } },
      },
    },
  });
  return { name, labels };
}

/** Sets a pod's status as the kubelet does when its container's image cannot be pulled. */
async function pullBackOff(namespace: string, name: string, image: string, message: string): Promise<void> {
  const pod = await core.readNamespacedPod({ namespace, name });
  await core.replaceNamespacedPodStatus({
    namespace,
    name,
    body: {
      ...pod,
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'app',
            image,
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ImagePullBackOff', message } },
          },
        ],
      },
    },
  });
}

const squeezed = (stdout: string): string[] => stdout.split('\n').map((line) => line.replaceAll(/ {2,}/g, '  '));

describe('doctor for a workload (KIND NAMESPACE/NAME)', () => {
  test('a deployment whose older pod is in ImagePullBackOff: that pod is named and checked, FAIL, exit 1', async () => {
    const image = 'myregistry.azurecr.io/web:1';
    const { name, labels } = await createDeployment(hotNamespace, image);
    const broken = await createPod(hotNamespace, image, labels);
    const message = `Back-off pulling image "${image}"`;
    await pullBackOff(hotNamespace, broken, image, message);
    // creationTimestamp counts whole seconds: the healthy pod is then strictly the newest.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await createPod(hotNamespace, image, labels);
    const result = await doctor(['deployment', `${hotNamespace}/${name}`, '--config', HOT_CONFIG]);
    expect(squeezed(result.stdout)).toEqual([
      `ok  deployment ${hotNamespace}/${name}  2 pods; checked pod ${broken} (a container waits in ImagePullBackOff)`,
      `ok  namespace ${hotNamespace}  opted in (${OPT_IN}=${HOT})`,
      `ok  image ${image}  matches myregistry.azurecr.io -> acr`,
      `ok  secret ${hotNamespace}/acr  managed, current`,
      `FAIL  container app  ImagePullBackOff: ${message}`,
      'fix: the credentials in the pull secret are refused or the image does not exist: see the secret lines',
      '',
    ]);
    expect(result.status).toBe(1);
  });

  test('a healthy deployment: its newest pod is checked, every row ok, exit 0', async () => {
    const image = 'myregistry.azurecr.io/web:2';
    const { name, labels } = await createDeployment(hotNamespace, image);
    const pod = await createPod(hotNamespace, image, labels);
    const result = await doctor(['deployment', `${hotNamespace}/${name}`, '--config', HOT_CONFIG]);
    expect(squeezed(result.stdout)).toEqual([
      `ok  deployment ${hotNamespace}/${name}  1 pod; checked pod ${pod} (the newest)`,
      `ok  namespace ${hotNamespace}  opted in (${OPT_IN}=${HOT})`,
      `ok  image ${image}  matches myregistry.azurecr.io -> acr`,
      `ok  secret ${hotNamespace}/acr  managed, current`,
      'fix: nothing: every check passed',
      '',
    ]);
    expect(result.status).toBe(0);
  });

  test('a deployment with no pod yet whose template names an unmatched ACR image: FAIL on the template', async () => {
    const { name } = await createDeployment(hotNamespace, 'other.azurecr.io/web:1');
    const result = await doctor(['deployment', `${hotNamespace}/${name}`, '--config', HOT_CONFIG]);
    expect(squeezed(result.stdout)).toEqual([
      `WARN  deployment ${hotNamespace}/${name}  no pod exists yet: checked its pod template`,
      `ok  namespace ${hotNamespace}  opted in (${OPT_IN}=${HOT})`,
      'FAIL  image other.azurecr.io/web:1  no registries[] entry matches ' +
        '(not myregistry.azurecr.io: host label 1 "other" does not match "myregistry")',
      `fix: add a registries[] entry for other.azurecr.io, then kubectl -n ${hotNamespace} rollout restart ` +
        `deployment/${name}`,
      '',
    ]);
    expect(result.status).toBe(1);
  });

  test('a cronjob between runs: its template is checked, lacking imagePullSecrets is fine there, exit 0', async () => {
    const name = unique('nightly');
    const image = 'myregistry.azurecr.io/batch:1';
    await batch.createNamespacedCronJob({
      namespace: hotNamespace,
      body: {
        metadata: { name },
        spec: {
          schedule: '0 3 * * *',
          jobTemplate: {
            spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'app', image }] } } },
          },
        },
      },
    });
    const result = await doctor(['cronjob', `${hotNamespace}/${name}`, '--config', HOT_CONFIG]);
    expect(squeezed(result.stdout)).toEqual([
      `ok  cronjob ${hotNamespace}/${name}  no pod exists yet: checked its pod template`,
      `ok  namespace ${hotNamespace}  opted in (${OPT_IN}=${HOT})`,
      `ok  image ${image}  matches myregistry.azurecr.io -> acr`,
      `ok  secret ${hotNamespace}/acr  managed, current`,
      'fix: nothing: every check passed',
      '',
    ]);
    expect(result.status).toBe(0);
  });

  test('a deployment that does not exist: FAIL, exit 1', async () => {
    const result = await doctor(['deployment', `${hotNamespace}/no-such-web`, '--config', HOT_CONFIG]);
    expect(row(result.stdout, `deployment ${hotNamespace}/no-such-web`)).toBe(
      `FAIL  deployment ${hotNamespace}/no-such-web  not found`,
    );
    expect(result.status).toBe(1);
  });

  test('an unknown kind is a usage error: exit 2, naming the kinds it knows', async () => {
    const result = await doctor(['replicaset', `${hotNamespace}/web`, '--config', HOT_CONFIG]);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'acr-pull-webhook doctor: unknown kind replicaset: pod, deployment, statefulset, daemonset, job, cronjob\n' +
        "Run 'acr-pull-webhook doctor --help' for usage.\n",
    );
    expect(result.status).toBe(2);
  });
});
