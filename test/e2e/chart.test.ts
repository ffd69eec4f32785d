// The Helm chart on the real apiserver: install, upgrade, uninstall; Pod Security "restricted"
// admitting every pod the chart would run; the CEL matchCondition deciding which pods are sent; and
// the hook and controller programs run as local processes with the tokens of the ServiceAccounts the
// chart created, to show the RBAC is enough, and a SubjectAccessReview table to show it is not more.
//
// There is no controller-manager, scheduler or kubelet: Deployments make no pods and hook Jobs never
// run. So helm runs with --no-hooks, the hook objects helm would create are created from
// `helm get hooks`, pod templates are created as bare Pods (they stay Pending) for PodSecurity to
// judge, and the programs in them run here, with the containers' own arguments.
//
// Tests in this file run in order and build on each other (install → hooks → controllers → upgrade
// → uninstall). Nor is there a garbage collector: that uninstall would delete the TLS Secret is
// shown by its ownerReference to the release's MutatingWebhookConfiguration, with the live uid.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  ApiException,
  AppsV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  type V1CronJob,
  type V1Deployment,
  type V1Job,
  type V1OwnerReference,
  type V1PodSpec,
  type V1ResourceAttributes,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createNamespace } from '../support/control-plane.ts';
import {
  localCommand,
  materializeVolume,
  runProgram,
  serviceAccountKubeconfig,
  startProgram,
  type RunningProgram,
} from '../support/chart-programs.ts';
import { CHART_DIR, helmAsync, helmOk, parseManifests, valuesFile, type Manifest } from '../support/helm.ts';

const KUBECONFIG = inject('kubeconfigPath');
const CLUSTER = { server: inject('server'), caPem: inject('caPem') };
const kc = new KubeConfig();
kc.loadFromFile(KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const authorization = kc.makeApiClient(AuthorizationV1Api);
const objects = KubernetesObjectApi.makeApiClient(kc);

const suffix = randomUUID().slice(0, 6);
const RELEASE = `chart-${suffix}`;
const NAMESPACE = `acr-chart-${suffix}`;
const FULLNAME = `${RELEASE}-acr-pull-webhook`;
const TLS_SECRET = `${FULLNAME}-tls`;
const LEASE = 'acr-pull-webhook-sync-secrets';
const OPT_IN = { 'acr-pull-webhook/inject': 'enabled' };

const BASE_VALUES = {
  registries: [
    {
      server: 'myregistry.azurecr.io',
      secretName: 'acr-myregistry',
      credentials: { token: { name: 'e2e-token', password: 'e2e-token-password' } },
    },
    {
      server: '*.azurecr.cn',
      secretName: 'acr-china',
      credentials: { existingSecret: { name: 'china-pull-credentials' } },
    },
  ],
};
const UPGRADE_VALUES = { ...BASE_VALUES, webhook: { failurePolicy: 'Fail', replicas: 1 } };

const scratch = mkdtempSync(join(tmpdir(), 'e2e-chart-'));
const running: RunningProgram[] = [];
let manifest: Manifest[] = [];
let hooks: Manifest[] = [];
/** A namespace opted in before the controllers ran. */
let optedIn = '';

const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;
const named = <T = Manifest>(list: readonly Manifest[], kind: string, name: string): T => {
  const found = list.find((object) => object.kind === kind && object.metadata.name === name);
  if (found === undefined) throw new Error(`${kind}/${name} is not rendered`);
  return found as T;
};
const helmArgs = (...args: string[]): string[] => [...args, '--namespace', NAMESPACE];

/** The apiserver's message in a failed call (the Status body), or the error itself. */
function messageOf(error: unknown): string {
  if (!(error instanceof ApiException)) return String(error);
  try {
    return String((JSON.parse(String(error.body)) as { message?: string }).message);
  } catch {
    return String(error.body);
  }
}

async function status(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

function podSpecOf(object: Manifest): V1PodSpec {
  if (object.kind === 'Deployment') return (object as unknown as V1Deployment).spec?.template.spec as V1PodSpec;
  if (object.kind === 'Job') return (object as unknown as V1Job).spec?.template.spec as V1PodSpec;
  if (object.kind === 'CronJob')
    return (object as unknown as V1CronJob).spec?.jobTemplate.spec?.template.spec as V1PodSpec;
  throw new Error(`${object.kind} has no pod template`);
}

/** What KubernetesObjectApi needs to find an object. */
function header(object: Manifest): {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
} {
  const { name, namespace } = object.metadata;
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: namespace === undefined ? { name } : { name, namespace },
  };
}

async function readTls(): Promise<Record<string, string>> {
  return (await core.readNamespacedSecret({ namespace: NAMESPACE, name: TLS_SECRET })).data ?? {};
}

async function tlsOwners(): Promise<V1OwnerReference[] | undefined> {
  return (await core.readNamespacedSecret({ namespace: NAMESPACE, name: TLS_SECRET })).metadata?.ownerReferences;
}

async function caBundle(): Promise<string | undefined> {
  const configuration = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
  return configuration.webhooks?.[0]?.clientConfig.caBundle;
}

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

beforeAll(async () => {
  await createNamespace(kc, NAMESPACE, {
    'pod-security.kubernetes.io/enforce': 'restricted',
    'pod-security.kubernetes.io/enforce-version': 'latest',
  });
  // The credentials a user keeps in a Secret of their own (existingSecret).
  await core.createNamespacedSecret({
    namespace: NAMESPACE,
    body: {
      metadata: { name: 'china-pull-credentials' },
      stringData: { username: 'china-user', password: 'china-password' },
    },
  });
  optedIn = unique('chart-in');
  await createNamespace(kc, optedIn, OPT_IN);
});

afterAll(async () => {
  for (const program of running) await program.stop();
  // Whatever a failed run left: the release, then cluster-scoped objects by name (other files share the apiserver).
  await helmAsync(helmArgs('uninstall', RELEASE, '--no-hooks'), { kubeconfig: KUBECONFIG });
  for (const object of [...manifest, ...hooks].filter((candidate) => candidate.metadata.namespace === undefined)) {
    await objects.delete(object as KubernetesObject).catch(() => undefined);
  }
});

describe('helm install', () => {
  test('creates every object of the chart; the apiserver takes the CEL matchCondition as rendered', async () => {
    await helmOk(helmArgs('install', RELEASE, CHART_DIR, '-f', valuesFile(BASE_VALUES), '--no-hooks'), {
      kubeconfig: KUBECONFIG,
    });
    manifest = parseManifests(await helmOk(helmArgs('get', 'manifest', RELEASE), { kubeconfig: KUBECONFIG }));
    hooks = parseManifests(await helmOk(helmArgs('get', 'hooks', RELEASE), { kubeconfig: KUBECONFIG }));
    expect(manifest.length).toBeGreaterThan(15);
    for (const object of manifest) {
      expect(await status(objects.read(header(object))), `${object.kind}/${object.metadata.name}`).toBe(200);
    }
    const stored = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    const rendered = named<{ webhooks: { matchConditions: unknown }[] }>(
      manifest,
      'MutatingWebhookConfiguration',
      FULLNAME,
    );
    expect(stored.webhooks?.[0]?.matchConditions).toEqual(rendered.webhooks[0]?.matchConditions);
    expect(stored.webhooks?.[0]?.failurePolicy).toBe('Ignore');
    expect(hooks.map((object) => `${object.kind}/${object.metadata.name}`).sort()).toEqual(
      [
        `ClusterRole/${FULLNAME}-certs-gen-create`,
        `ClusterRoleBinding/${FULLNAME}-certs-gen-create`,
        `Job/${FULLNAME}-certs-gen-create`,
        `Job/${FULLNAME}-certs-gen-patch`,
        `Job/${FULLNAME}-sync-secrets-once`,
        `Role/${FULLNAME}-certs-gen-create`,
        `RoleBinding/${FULLNAME}-certs-gen-create`,
        `ServiceAccount/${FULLNAME}-certs-gen-create`,
      ].sort(),
    );
  });
});

describe('Pod Security "restricted" on the release namespace', () => {
  test('admits the pod of every Deployment, Job and CronJob of the chart, hooks included', async () => {
    // The pre-install hook's ServiceAccount must exist for its pod to be admitted at all.
    for (const object of hooks.filter((candidate) => candidate.kind !== 'Job'))
      await objects.create(object as KubernetesObject);
    const owners = [...manifest, ...hooks].filter((object) => ['Deployment', 'Job', 'CronJob'].includes(object.kind));
    expect(owners.length).toBe(6);
    for (const [index, owner] of owners.entries()) {
      const name = `psa-${index}`;
      const created = await core
        .createNamespacedPod({
          namespace: NAMESPACE,
          body: { metadata: { name, labels: { 'e2e.acr-pull-webhook/psa': 'true' } }, spec: podSpecOf(owner) },
        })
        .catch((error: unknown) => error);
      expect(
        created instanceof ApiException ? messageOf(created) : 'admitted',
        `${owner.kind}/${owner.metadata.name}`,
      ).toBe('admitted');
      await core.deleteNamespacedPod({ namespace: NAMESPACE, name, gracePeriodSeconds: 0 });
    }
  });

  test('is enforced: a pod without the security settings is refused', async () => {
    const refused = await core
      .createNamespacedPod({
        namespace: NAMESPACE,
        body: {
          metadata: { name: 'psa-plain' },
          spec: { containers: [{ name: 'c', image: 'myregistry.azurecr.io/app' }] },
        },
      })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiException);
    expect(messageOf(refused)).toContain('violates PodSecurity "restricted:latest"');
  });
});

describe('the hooks, run here with the tokens of the ServiceAccounts the chart made', () => {
  test('certs-gen create (pre-install) writes the TLS Secret with the hook account', async () => {
    const job = named<Manifest>(hooks, 'Job', `${FULLNAME}-certs-gen-create`);
    const spec = podSpecOf(job);
    const kubeconfig = await serviceAccountKubeconfig(kc, CLUSTER, NAMESPACE, spec.serviceAccountName ?? '');
    for (const container of spec.containers) {
      const result = await runProgram([...localCommand(container), `--kubeconfig=${kubeconfig}`]);
      expect(result.stderr).toBe('');
      expect(result.status, result.stderr).toBe(0);
    }
    const secret = await core.readNamespacedSecret({ namespace: NAMESPACE, name: TLS_SECRET });
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(Object.keys(secret.data ?? {})).toEqual(expect.arrayContaining(['tls.crt', 'tls.key', 'ca.crt']));
  });

  test('certs-gen patch (post-install) sets the caBundle with the lasting certs-gen account', async () => {
    const spec = podSpecOf(named(hooks, 'Job', `${FULLNAME}-certs-gen-patch`));
    const kubeconfig = await serviceAccountKubeconfig(kc, CLUSTER, NAMESPACE, spec.serviceAccountName ?? '');
    for (const container of spec.containers) {
      const result = await runProgram([...localCommand(container), `--kubeconfig=${kubeconfig}`]);
      expect(result.status, result.stderr).toBe(0);
    }
    // PEM line endings may differ (the bundle is re-assembled); the certificate is the same.
    const pem = (base64: string | undefined): string =>
      Buffer.from(base64 ?? '', 'base64')
        .toString()
        .replaceAll('\r\n', '\n')
        .trim();
    expect(pem(await caBundle())).toBe(pem((await readTls())['ca.crt']));
  });

  test('certs-gen patch: the webhook configuration (live uid) owns the TLS Secret; uninstall deletes it', async () => {
    const configuration = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    expect(configuration.metadata?.labels?.['app.kubernetes.io/instance']).toBe(RELEASE);
    expect(await tlsOwners()).toEqual([
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        name: FULLNAME,
        uid: configuration.metadata?.uid,
        controller: false,
      },
    ]);
  });

  test('the renewal CronJob runs as the lasting account (no Secret create); not due, nothing changes', async () => {
    const spec = podSpecOf(named(manifest, 'CronJob', `${FULLNAME}-certs-gen`));
    const kubeconfig = await serviceAccountKubeconfig(kc, CLUSTER, NAMESPACE, spec.serviceAccountName ?? '');
    const before = { tls: await readTls(), caBundle: await caBundle() };
    for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
      const result = await runProgram([...localCommand(container), `--kubeconfig=${kubeconfig}`]);
      expect(result.status, `${container.name}: ${result.stderr}`).toBe(0);
    }
    expect({ tls: await readTls(), caBundle: await caBundle() }).toEqual(before);
  });

  test("helm deletes the hook's ServiceAccount and RBAC once the phase is over (hook-succeeded)", async () => {
    for (const object of hooks.filter((candidate) => candidate.kind !== 'Job')) {
      expect(object.metadata.annotations?.['helm.sh/hook-delete-policy']).toContain('hook-succeeded');
      await objects.delete(object as KubernetesObject);
    }
  });

  test('sync-secrets --once (post-install), as its account, writes every pull secret where opted in', async () => {
    const spec = podSpecOf(named(hooks, 'Job', `${FULLNAME}-sync-secrets-once`));
    const { config, kubeconfig } = await syncSetup(spec);
    const result = await runProgram([
      ...localCommand(spec.containers[0] ?? { name: '?' }, config),
      `--kubeconfig=${kubeconfig}`,
    ]);
    expect(result.status, result.stderr).toBe(0);
    for (const name of ['acr-myregistry', 'acr-china']) {
      const secret = await core.readNamespacedSecret({ namespace: optedIn, name });
      expect(secret.type).toBe('kubernetes.io/dockerconfigjson');
    }
    const auths = (name: string) =>
      core.readNamespacedSecret({ namespace: optedIn, name }).then(
        (secret) =>
          JSON.parse(Buffer.from(secret.data?.['.dockerconfigjson'] ?? '', 'base64').toString()) as {
            auths: Record<string, { username: string }>;
          },
      );
    expect((await auths('acr-myregistry')).auths['myregistry.azurecr.io']?.username).toBe('e2e-token');
    expect((await auths('acr-china')).auths['*.azurecr.cn']?.username).toBe('china-user');
  });

  test("sync-secrets --watch leads through the chart's Lease and covers a namespace labelled later", async () => {
    const spec = podSpecOf(named(manifest, 'Deployment', `${FULLNAME}-sync-secrets`));
    const { config, kubeconfig } = await syncSetup(spec);
    const container = spec.containers[0] ?? { name: '?' };
    const rewrite = (argument: string): string =>
      argument.startsWith('--health-port=') ? '--health-port=0' : config(argument);
    // The downward API values the Deployment sets; the health port binds loopback here.
    const watcher = startProgram(
      [...localCommand(container, rewrite), `--kubeconfig=${kubeconfig}`, '--host=127.0.0.1'],
      {
        ACR_PULL_WEBHOOK_LEASE_NAMESPACE: NAMESPACE,
        ACR_PULL_WEBHOOK_LEASE_IDENTITY: `${FULLNAME}-sync-secrets-e2e`,
      },
    );
    running.push(watcher);
    await eventually('the watcher holds the Lease', async () => {
      const lease = await coordination.readNamespacedLease({ namespace: NAMESPACE, name: LEASE });
      return lease.spec?.holderIdentity === `${FULLNAME}-sync-secrets-e2e` ? true : undefined;
    });
    const later = unique('chart-later');
    await createNamespace(kc, later, OPT_IN);
    await eventually('a namespace labelled after the start gets its pull secrets', async () =>
      (await status(core.readNamespacedSecret({ namespace: later, name: 'acr-china' }))) === 200 ? true : undefined,
    );
    expect(await watcher.stop(), watcher.output()).toBe(0);
    expect(watcher.output()).not.toContain('forbidden');
  });
});

/** The sync-secrets pod's config file and credentials volume, made local; and its account's kubeconfig. */
async function syncSetup(spec: V1PodSpec): Promise<{ config: (argument: string) => string; kubeconfig: string }> {
  const credentials = await materializeVolume(kc, NAMESPACE, spec, 'credentials');
  const mountPath = spec.containers[0]?.volumeMounts?.find((mount) => mount.name === 'credentials')?.mountPath ?? '?';
  const configMap = await core.readNamespacedConfigMap({ namespace: NAMESPACE, name: `${FULLNAME}-config` });
  const file = join(mkdtempSync(join(scratch, 'config-')), 'config.yaml');
  writeFileSync(file, (configMap.data?.['config.yaml'] ?? '').replaceAll(mountPath, credentials));
  const kubeconfig = await serviceAccountKubeconfig(kc, CLUSTER, NAMESPACE, spec.serviceAccountName ?? '');
  return { config: (argument) => (argument.startsWith('--config=') ? `--config=${file}` : argument), kubeconfig };
}

describe('each ServiceAccount may do what its program needs and nothing more', () => {
  type Check = Partial<V1ResourceAttributes> & { readonly allowed: boolean };
  const secret = (verb: string, name: string | undefined, namespace: string | undefined, allowed: boolean): Check => ({
    verb,
    resource: 'secrets',
    ...(name === undefined ? {} : { name }),
    ...(namespace === undefined ? {} : { namespace }),
    allowed,
  });
  const webhookConfigurationCheck = (verb: string, name: string | undefined, allowed: boolean): Check => ({
    verb,
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    ...(name === undefined ? {} : { name }),
    allowed,
  });
  const lease = (verb: string, name: string | undefined, namespace: string, allowed: boolean): Check => ({
    verb,
    group: 'coordination.k8s.io',
    resource: 'leases',
    ...(name === undefined ? {} : { name }),
    namespace,
    allowed,
  });

  const accounts = (): { account: string; checks: Check[] }[] => [
    {
      account: FULLNAME,
      checks: [
        secret('get', TLS_SECRET, NAMESPACE, false),
        { verb: 'get', resource: 'configmaps', name: `${FULLNAME}-config`, namespace: NAMESPACE, allowed: false },
        { verb: 'list', resource: 'pods', allowed: false },
      ],
    },
    {
      account: `${FULLNAME}-certs-gen`,
      checks: [
        secret('get', TLS_SECRET, NAMESPACE, true),
        secret('update', TLS_SECRET, NAMESPACE, true),
        webhookConfigurationCheck('get', FULLNAME, true),
        webhookConfigurationCheck('patch', FULLNAME, true),
        secret('create', undefined, NAMESPACE, false),
        secret('delete', TLS_SECRET, NAMESPACE, false),
        secret('get', `${FULLNAME}-credentials`, NAMESPACE, false),
        secret('list', undefined, NAMESPACE, false),
        secret('watch', undefined, NAMESPACE, false),
        secret('get', TLS_SECRET, 'kube-system', false),
        webhookConfigurationCheck('update', FULLNAME, false),
        webhookConfigurationCheck('delete', FULLNAME, false),
        webhookConfigurationCheck('get', 'some-other-webhook', false),
        webhookConfigurationCheck('list', undefined, false),
      ],
    },
    {
      account: `${FULLNAME}-sync-secrets`,
      checks: [
        { verb: 'list', resource: 'namespaces', allowed: true },
        { verb: 'watch', resource: 'namespaces', allowed: true },
        secret('get', 'acr-myregistry', optedIn, true),
        secret('update', 'acr-china', 'any-namespace', true),
        secret('create', undefined, optedIn, true),
        lease('get', LEASE, NAMESPACE, true),
        lease('update', LEASE, NAMESPACE, true),
        { verb: 'get', resource: 'namespaces', name: optedIn, allowed: false },
        { verb: 'update', resource: 'namespaces', name: optedIn, allowed: false },
        secret('get', TLS_SECRET, NAMESPACE, false),
        secret('get', `${FULLNAME}-credentials`, NAMESPACE, false),
        secret('list', undefined, optedIn, false),
        secret('watch', undefined, undefined, false),
        secret('delete', 'acr-myregistry', optedIn, false),
        secret('patch', 'acr-myregistry', optedIn, false),
        lease('create', undefined, NAMESPACE, false),
        lease('get', 'another-lease', NAMESPACE, false),
        lease('update', LEASE, 'kube-system', false),
        { verb: 'create', resource: 'pods', namespace: optedIn, allowed: false },
      ],
    },
  ];

  test('by SubjectAccessReview, for the webhook, certs-gen and sync-secrets accounts', async () => {
    const wrong: string[] = [];
    for (const { account, checks } of accounts()) {
      for (const { allowed, ...attributes } of checks) {
        const review = await authorization.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${NAMESPACE}:${account}`,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
              resourceAttributes: attributes,
            },
          },
        });
        if ((review.status?.allowed ?? false) !== allowed)
          wrong.push(`${account}: ${JSON.stringify(attributes)} should be ${allowed ? 'allowed' : 'denied'}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test("the chart's ValidatingAdmissionPolicy stops sync-secrets creating other Secrets RBAC allows", async () => {
    const spec = podSpecOf(named(manifest, 'Deployment', `${FULLNAME}-sync-secrets`));
    const tokenKc = new KubeConfig();
    tokenKc.loadFromFile(await serviceAccountKubeconfig(kc, CLUSTER, NAMESPACE, spec.serviceAccountName ?? ''));
    const asSync = tokenKc.makeApiClient(CoreV1Api);
    const attempt = (name: string, type: string): Promise<unknown> =>
      asSync
        .createNamespacedSecret({
          namespace: optedIn,
          body: {
            metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' } },
            type,
            data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') },
          },
        })
        .catch((error: unknown) => error);
    const otherName = await attempt('not-configured', 'kubernetes.io/dockerconfigjson');
    expect(otherName).toBeInstanceOf(ApiException);
    expect(messageOf(otherName)).toContain('sync-secrets may write only the configured pull secrets');
    const tokenType = await attempt('acr-myregistry-token', 'kubernetes.io/service-account-token');
    expect(tokenType).toBeInstanceOf(ApiException);
  });
});

describe('helm upgrade with changed values', () => {
  test('applies them (failurePolicy Fail, one replica: no PDB), keeping what the jobs wrote', async () => {
    const before = {
      tls: await readTls(),
      owners: await tlsOwners(),
      caBundle: await caBundle(),
      lease: (await coordination.readNamespacedLease({ namespace: NAMESPACE, name: LEASE })).spec,
    };
    expect(
      await status(
        objects.read({
          apiVersion: 'policy/v1',
          kind: 'PodDisruptionBudget',
          metadata: { name: FULLNAME, namespace: NAMESPACE },
        }),
      ),
    ).toBe(200);
    await helmOk(helmArgs('upgrade', RELEASE, CHART_DIR, '-f', valuesFile(UPGRADE_VALUES), '--no-hooks'), {
      kubeconfig: KUBECONFIG,
    });
    manifest = parseManifests(await helmOk(helmArgs('get', 'manifest', RELEASE), { kubeconfig: KUBECONFIG }));
    const configuration = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    expect(configuration.webhooks?.[0]?.failurePolicy).toBe('Fail');
    expect((await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: FULLNAME })).spec?.replicas).toBe(1);
    expect(
      await status(
        objects.read({
          apiVersion: 'policy/v1',
          kind: 'PodDisruptionBudget',
          metadata: { name: FULLNAME, namespace: NAMESPACE },
        }),
      ),
    ).toBe(404);
    // The configuration is updated in place, not re-created: its uid, the Secret's owner, stays.
    expect({
      tls: await readTls(),
      owners: await tlsOwners(),
      caBundle: await caBundle(),
      lease: (await coordination.readNamespacedLease({ namespace: NAMESPACE, name: LEASE })).spec,
    }).toEqual(before);
  });
});

describe('the CEL matchCondition on the apiserver (failurePolicy Fail, no webhook pod: a sent pod is refused)', () => {
  const create = (namespace: string, spec: V1PodSpec, labels: Record<string, string> = {}): Promise<string> =>
    core.createNamespacedPod({ namespace, body: { metadata: { generateName: 'cel-', labels }, spec } }).then(
      () => 'created',
      (error: unknown) => {
        const message = messageOf(error);
        return message.includes('failed calling webhook "pods.acr-pull-webhook.io"') ? 'sent' : message;
      },
    );
  const containers = (...images: string[]) => images.map((image, index) => ({ name: `c${index}`, image }));

  test.each([
    {
      why: "a pod with only Docker Hub and other registries' images is not sent",
      spec: { containers: containers('nginx:1.27', 'docker.io/library/busybox', 'quay.io/prometheus/prometheus') },
      outcome: 'created',
    },
    {
      why: 'a pod with an image of another ACR is not sent',
      spec: { containers: containers('other.azurecr.io/app') },
      outcome: 'created',
    },
    {
      why: 'a pod with an image of the configured ACR is sent',
      spec: { containers: containers('nginx:1.27', 'myregistry.azurecr.io/team/app:v1') },
      outcome: 'sent',
    },
    {
      why: 'a pod with the ACR image only in an init container is sent',
      spec: { initContainers: containers('myregistry.azurecr.io/migrate'), containers: containers('nginx') },
      outcome: 'sent',
    },
    {
      why: 'a pod with an image a glob entry matches (*.azurecr.cn) is sent',
      spec: { containers: containers(`contoso.azurecr.cn/app@sha256:${'b'.repeat(64)}`) },
      outcome: 'sent',
    },
    {
      why: 'a pod with a lookalike host (another port, another label count) is not sent',
      spec: { containers: containers('myregistry.azurecr.io:443/app', 'a.b.azurecr.cn/app') },
      outcome: 'created',
    },
  ])('$why', async ({ spec, outcome }) => {
    expect(await create(optedIn, spec as V1PodSpec)).toBe(outcome);
  });

  test('pods labelled acr-pull-webhook/inject=disabled, or not opted in, are not sent, ACR image or not', async () => {
    expect(
      await create(
        optedIn,
        { containers: containers('myregistry.azurecr.io/app') },
        { 'acr-pull-webhook/inject': 'disabled' },
      ),
    ).toBe('created');
    const outside = unique('chart-out');
    await createNamespace(kc, outside);
    expect(await create(outside, { containers: containers('myregistry.azurecr.io/app') })).toBe('created');
  });
});

describe('helm uninstall', () => {
  test("leaves no object of the release behind; the TLS Secret's owner is gone; the pull secrets stay", async () => {
    const released = [...manifest];
    const owner = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    await helmOk(helmArgs('uninstall', RELEASE), { kubeconfig: KUBECONFIG });
    for (const object of [...released, ...hooks]) {
      expect(await status(objects.read(header(object))), `${object.kind}/${object.metadata.name}`).toBe(404);
    }
    const selector = `app.kubernetes.io/instance=${RELEASE}`;
    const left: string[] = [];
    const kinds: [string, string, string | undefined][] = [
      ['v1', 'ConfigMap', NAMESPACE],
      ['v1', 'Secret', NAMESPACE],
      ['v1', 'ServiceAccount', NAMESPACE],
      ['v1', 'Service', NAMESPACE],
      ['apps/v1', 'Deployment', NAMESPACE],
      ['batch/v1', 'Job', NAMESPACE],
      ['batch/v1', 'CronJob', NAMESPACE],
      ['policy/v1', 'PodDisruptionBudget', NAMESPACE],
      ['rbac.authorization.k8s.io/v1', 'Role', NAMESPACE],
      ['rbac.authorization.k8s.io/v1', 'RoleBinding', NAMESPACE],
      ['coordination.k8s.io/v1', 'Lease', NAMESPACE],
      ['rbac.authorization.k8s.io/v1', 'ClusterRole', undefined],
      ['rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', undefined],
      ['admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', undefined],
      ['admissionregistration.k8s.io/v1', 'ValidatingAdmissionPolicy', undefined],
      ['admissionregistration.k8s.io/v1', 'ValidatingAdmissionPolicyBinding', undefined],
    ];
    for (const [apiVersion, kind, namespace] of kinds) {
      const list = await objects.list(
        apiVersion,
        kind,
        namespace,
        undefined,
        undefined,
        undefined,
        undefined,
        selector,
      );
      left.push(...list.items.map((item) => `${kind}/${item.metadata?.name ?? ''}`));
    }
    expect(left).toEqual([]);
    // helm's own release records are gone too.
    const records = await core.listNamespacedSecret({
      namespace: NAMESPACE,
      labelSelector: `owner=helm,name=${RELEASE}`,
    });
    expect(records.items).toEqual([]);
    // Not release objects, and kept on purpose: the pull secrets running pods pull with.
    expect(await status(core.readNamespacedSecret({ namespace: optedIn, name: 'acr-myregistry' }))).toBe(200);
    // The TLS Secret certs-gen made is not a release object either, but names the configuration as
    // its owner. This control plane has no controller-manager, so no garbage collector, and the
    // Secret is still here; in a cluster the collector deletes it now, because every owner it names
    // (by uid) is gone.
    const remaining = await core.listNamespacedSecret({ namespace: NAMESPACE });
    expect(remaining.items.map((item) => item.metadata?.name).sort()).toEqual(
      ['china-pull-credentials', TLS_SECRET].sort(),
    );
    const owners = await tlsOwners();
    expect(owners?.map((reference) => reference.uid)).toEqual([owner.metadata?.uid]);
    expect(await status(admission.readMutatingWebhookConfiguration({ name: FULLNAME }))).toBe(404);
    await core.deleteNamespacedSecret({ namespace: NAMESPACE, name: TLS_SECRET });
    await core.deleteNamespacedSecret({ namespace: NAMESPACE, name: 'china-pull-credentials' });
  });

  test('nothing intercepts pods any more: an ACR pod in an opted-in namespace is created unchanged', async () => {
    const pod = await core.createNamespacedPod({
      namespace: optedIn,
      body: {
        metadata: { generateName: 'after-' },
        spec: { containers: [{ name: 'c', image: 'myregistry.azurecr.io/app' }] },
      },
    });
    expect(pod.spec?.imagePullSecrets).toBeUndefined();
  });
});
