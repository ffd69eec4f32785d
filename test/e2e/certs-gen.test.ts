// certs-gen against the real apiserver: `create` and `patch` run as child processes with a
// kubeconfig, a fake kubelet copies the Secret's tls.crt/tls.key into a Secret volume the webhook
// process serves from, and the apiserver calls that webhook by its Service name (an ExternalName
// Service pointing at localhost, so the certificate is checked for SVC.NS.svc). Every webhook
// here has failurePolicy Fail, so a TLS failure is a failed create, never silently ignored.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import {
  AdmissionregistrationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1MutatingWebhook,
  type V1MutatingWebhookConfiguration,
  type V1PolicyRule,
  type V1ResourceRule,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { bundleCas } from '../../certs-gen/bundle.ts';
import { PREVIOUS_CA_UNTIL_ANNOTATION, storedFromSecret, type StoredCertificates } from '../../certs-gen/create.ts';
import {
  generateCa,
  generateServingCertificate,
  inspectCertificate,
  serviceDnsNames,
  verifyServingPair,
} from '../../certs-gen/generate.ts';
import { MUTATE_PATH } from '../../src/constants.ts';
import { certsGen, tokenKubeconfig, type CertsGenRun } from '../support/certs-gen-cli.ts';
import { syncSecretVolume, type SecretVolumeSync } from '../support/certs-gen-kubelet.ts';
import { startPodLoad } from '../support/certs-gen-load.ts';
import { createNamespace } from '../support/control-plane.ts';
import { tempDir } from '../support/temp-dir.ts';
import { webhookConfiguration } from '../support/webhook-configuration.ts';
import { startWebhookProcess, type WebhookProcess } from '../support/webhook-process.ts';

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const run = randomUUID().slice(0, 8);
const OPT_IN_LABEL = 'e2e.acr-pull-webhook/certs-gen';
const SERVICE = 'hook';
const SECRET = 'hook-tls';
const CONFIG = `certs-gen-e2e-${run}`;
const serviceNamespace = `certs-gen-${run}`;
const podNamespace = `certs-gen-pods-${run}`;
const ACR_IMAGE = 'myregistry.azurecr.io/team/app:v1';
const pod = { metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'app', image: ACR_IMAGE }] } };

const adminKubeconfig = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(adminKubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const dir = tempDir('e2e-certs-gen');
const clusterScoped: { kind: string; name: string }[] = [];
let webhook: WebhookProcess;
let kubelet: SecretVolumeSync;
let firstCreate: CertsGenRun;
let firstPatch: CertsGenRun;

const createArgs = (...extra: string[]) => [
  'create',
  '--namespace',
  serviceNamespace,
  '--secret-name',
  SECRET,
  '--service',
  SERVICE,
  '--validity',
  '30',
  ...extra,
];
const patchArgs = ['patch', '--webhook-config', CONFIG, '--namespace', serviceNamespace, '--secret-name', SECRET];
const asAdmin = (args: readonly string[]) => certsGen(args, adminKubeconfig);
const fingerprint = (pem: string | undefined) => inspectCertificate(pem ?? '').fingerprintSha256;

async function stored(name = SECRET): Promise<StoredCertificates> {
  return storedFromSecret(await core.readNamespacedSecret({ namespace: serviceNamespace, name }));
}

async function writeStored(
  changes: Partial<Record<'tls.crt' | 'tls.key' | 'ca.crt' | 'ca.key', string>>,
  annotations?: Record<string, string>,
): Promise<void> {
  const secret = await core.readNamespacedSecret({ namespace: serviceNamespace, name: SECRET });
  for (const [key, value] of Object.entries(changes))
    secret.data = { ...secret.data, [key]: Buffer.from(value).toString('base64') };
  if (annotations)
    secret.metadata = { ...secret.metadata, annotations: { ...secret.metadata?.annotations, ...annotations } };
  await core.replaceNamespacedSecret({ namespace: serviceNamespace, name: SECRET, body: secret });
}

/** Fingerprints of the CAs in each webhook's caBundle, webhook by webhook. */
async function bundles(name = CONFIG): Promise<string[][]> {
  const configuration = await admission.readMutatingWebhookConfiguration({ name });
  return (configuration.webhooks ?? []).map((entry) =>
    bundleCas(entry.clientConfig.caBundle).map((ca) => ca.fingerprintSha256),
  );
}

/** The first webhook's caBundle as PEM text. */
async function publishedBundle(): Promise<string> {
  const configuration = await admission.readMutatingWebhookConfiguration({ name: CONFIG });
  return Buffer.from(configuration.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString('utf8');
}

/** The certificate the webhook hands out right now, asked for by the name the apiserver uses. */
function servedFingerprint(options: tls.ConnectionOptions = { rejectUnauthorized: false }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: '127.0.0.1', port: webhook.port, servername: `${SERVICE}.${serviceNamespace}.svc`, ...options },
      () => {
        const served = socket.getPeerCertificate().fingerprint256;
        socket.end();
        resolve(served);
      },
    );
    socket.on('error', reject);
  });
}

async function waitUntilServed(expected: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await servedFingerprint()) !== expected) {
    if (Date.now() > deadline) throw new Error(`webhook still not serving ${expected} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Dry-run creates until one comes back patched; errors (failurePolicy Fail) count as not yet. */
async function waitUntilPatching(timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const created = await core
      .createNamespacedPod({ namespace: podNamespace, dryRun: 'All', body: pod })
      .catch(() => undefined);
    if ((created?.spec?.imagePullSecrets ?? []).length > 0) return;
    if (Date.now() > deadline) throw new Error(`pods in ${podNamespace} not patched after ${timeoutMs} ms`);
    await sleep(200);
  }
}

function configuration(
  name: string,
  namespaceLabelValue: string,
  webhookNames: readonly string[],
): V1MutatingWebhookConfiguration {
  const base = webhookConfiguration({ name, port: webhook.port, caPem: '', failurePolicy: 'Fail', timeoutSeconds: 10 });
  const template = base.webhooks?.[0];
  if (template === undefined) throw new Error('webhookConfiguration() has no webhook');
  const entry = (webhookName: string): V1MutatingWebhook => ({
    ...template,
    name: webhookName,
    // Service-style: the apiserver resolves the ExternalName Service to localhost:port and checks
    // the certificate for hook.<namespace>.svc. No caBundle until `certs-gen patch` sets it.
    clientConfig: { service: { namespace: serviceNamespace, name: SERVICE, port: webhook.port, path: MUTATE_PATH } },
    namespaceSelector: { matchLabels: { [OPT_IN_LABEL]: namespaceLabelValue } },
  });
  return { ...base, webhooks: webhookNames.map(entry) };
}

async function createClusterScoped(
  kind: 'MutatingWebhookConfiguration',
  body: V1MutatingWebhookConfiguration,
): Promise<void> {
  clusterScoped.push({ kind, name: body.metadata?.name ?? '' });
  await admission.createMutatingWebhookConfiguration({ body });
}

beforeAll(async () => {
  await createNamespace(kc, serviceNamespace);
  await createNamespace(kc, podNamespace, { [OPT_IN_LABEL]: run });
  firstCreate = await asAdmin(createArgs());
  kubelet = await syncSecretVolume(kc, serviceNamespace, SECRET);
  writeFileSync(
    join(dir, 'config.yaml'),
    'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n',
  );
  webhook = await startWebhookProcess({
    config: join(dir, 'config.yaml'),
    certFile: kubelet.volume.path('tls.crt'),
    keyFile: kubelet.volume.path('tls.key'),
    dir,
  });
  await core.createNamespacedService({
    namespace: serviceNamespace,
    body: {
      metadata: { name: SERVICE },
      spec: {
        type: 'ExternalName',
        externalName: 'localhost',
        ports: [{ name: 'https', port: webhook.port, protocol: 'TCP' }],
      },
    },
  });
  // Two webhooks, both called for every pod: patch must set the caBundle of each.
  await createClusterScoped(
    'MutatingWebhookConfiguration',
    configuration(CONFIG, run, ['pods.acr-pull-webhook.io', 'again.acr-pull-webhook.io']),
  );
  firstPatch = await asAdmin(patchArgs);
  await waitUntilPatching();
});

afterAll(async () => {
  const rbac = kc.makeApiClient(KubernetesObjectApi);
  for (const { kind, name } of clusterScoped.reverse()) {
    const apiVersion =
      kind === 'MutatingWebhookConfiguration' ? 'admissionregistration.k8s.io/v1' : 'rbac.authorization.k8s.io/v1';
    await rbac.delete({ apiVersion, kind, metadata: { name } }).catch(() => undefined);
  }
  await webhook?.stop();
  await kubelet?.stop();
});

describe('create, then patch', () => {
  test(
    'create keeps a kubernetes.io/tls Secret with a CA and a serving certificate for the Service ' + 'names',
    async () => {
      expect(firstCreate).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringMatching(new RegExp(`^created Secret ${serviceNamespace}/${SECRET} with a new CA`)),
      });
      const secret = await core.readNamespacedSecret({ namespace: serviceNamespace, name: SECRET });
      expect(secret.type).toBe('kubernetes.io/tls');
      expect(secret.metadata?.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'acr-pull-webhook' });
      expect(Object.keys(secret.data ?? {}).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
      const state = storedFromSecret(secret);
      expect(inspectCertificate(state.servingCertPem ?? '').dnsNames).toEqual([
        SERVICE,
        `${SERVICE}.${serviceNamespace}`,
        `${SERVICE}.${serviceNamespace}.svc`,
        `${SERVICE}.${serviceNamespace}.svc.cluster.local`,
      ]);
      expect(
        verifyServingPair(
          { certPem: state.servingCertPem ?? '', keyPem: state.servingKeyPem ?? '' },
          state.caCertPem ?? '',
          new Date(),
        ),
      ).toEqual({ ok: true });
    },
  );

  test('patch sets the caBundle of every webhook in the configuration to that CA', async () => {
    const { uid } = (await admission.readMutatingWebhookConfiguration({ name: CONFIG })).metadata ?? {};
    expect(firstPatch).toMatchObject({
      code: 0,
      stderr: '',
      stdout:
        `patched the caBundle of 2 of 2 webhooks in MutatingWebhookConfiguration ${CONFIG} ` +
        `to ${fingerprint((await stored()).caCertPem).slice(0, 23)}; ` +
        `Secret ${serviceNamespace}/${SECRET} now has an ownerReference to the configuration (uid ${uid}), ` +
        'so the Secret is garbage-collected with it\n',
    });
    const ca = fingerprint((await stored()).caCertPem);
    expect(await bundles()).toEqual([[ca], [ca]]);
  });

  test(
    'patch makes the configuration the owner of the Secret, with its live uid, so the garbage collector ' +
      'deletes the Secret with it',
    async () => {
      const configuration = await admission.readMutatingWebhookConfiguration({ name: CONFIG });
      const secret = await core.readNamespacedSecret({ namespace: serviceNamespace, name: SECRET });
      // The apiserver accepted a cluster-scoped owner for a namespaced Secret, and stored it as sent.
      expect(secret.metadata?.ownerReferences).toEqual([
        {
          apiVersion: 'admissionregistration.k8s.io/v1',
          kind: 'MutatingWebhookConfiguration',
          name: CONFIG,
          uid: configuration.metadata?.uid,
          controller: false,
        },
      ]);
    },
  );

  test(
    'the apiserver calls the webhook through its Service name, verifying the certificate, and pods are ' + 'patched',
    async () => {
      const state = await stored();
      // What the apiserver checks: the chain to ca.crt and the name SVC.NS.svc.
      expect(await servedFingerprint({ ca: state.caCertPem ?? '' })).toBe(fingerprint(state.servingCertPem));
      const created = await core.createNamespacedPod({ namespace: podNamespace, body: pod });
      expect(created.spec?.imagePullSecrets).toEqual([{ name: 'acr-myregistry' }]);
      await webhook.waitForLogLine((line) => line['msg'] === 'review' && line['namespace'] === podNamespace);
    },
  );

  test('a second create and a second patch change nothing: same resourceVersions', async () => {
    const secretVersion = (await core.readNamespacedSecret({ namespace: serviceNamespace, name: SECRET })).metadata
      ?.resourceVersion;
    const configVersion = (await admission.readMutatingWebhookConfiguration({ name: CONFIG })).metadata
      ?.resourceVersion;
    const again = await asAdmin(createArgs('--webhook-config', CONFIG));
    expect(again).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(new RegExp(`^kept Secret ${serviceNamespace}/${SECRET}: tls.crt is valid until`)),
    });
    expect(await asAdmin(patchArgs)).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^unchanged: every caBundle of the 2 webhooks/),
    });
    expect(
      (await core.readNamespacedSecret({ namespace: serviceNamespace, name: SECRET })).metadata?.resourceVersion,
    ).toBe(secretVersion);
    expect((await admission.readMutatingWebhookConfiguration({ name: CONFIG })).metadata?.resourceVersion).toBe(
      configVersion,
    );
  });

  test('two creates racing for a new Secret both succeed, and the second keeps what the first wrote', async () => {
    const args = ['create', '--namespace', serviceNamespace, '--secret-name', 'race-tls', '--service', SERVICE];
    const results = await Promise.all([asAdmin(args), asAdmin(args)]);
    expect(results.map((result) => result.code)).toEqual([0, 0]);
    expect(results.map((result) => result.stdout.split(' ')[0]).sort()).toEqual(['created', 'kept']);
    const state = await stored('race-tls');
    expect(
      verifyServingPair(
        { certPem: state.servingCertPem ?? '', keyPem: state.servingKeyPem ?? '' },
        state.caCertPem ?? '',
        new Date(),
      ),
    ).toEqual({ ok: true });
  });
});

describe('renewal', () => {
  test(
    'a serving certificate close to expiry is renewed by the same CA, served by the webhook, and the ' +
      'caBundle stays',
    async () => {
      const before = await stored();
      const ca = { certPem: before.caCertPem ?? '', keyPem: before.caKeyPem ?? '' };
      // A one-day certificate issued 20 hours ago: 4 of its 24 hours left, under a third.
      const old = generateServingCertificate(ca, {
        dnsNames: serviceDnsNames(SERVICE, serviceNamespace),
        ipAddresses: [],
        validityDays: 1,
        now: new Date(Date.now() - 20 * HOUR),
      });
      await writeStored({ 'tls.crt': old.certPem, 'tls.key': old.keyPem });
      await waitUntilServed(fingerprint(old.certPem));
      const bundleBefore = await bundles();

      const renewed = await asAdmin(createArgs('--webhook-config', CONFIG));
      expect(renewed).toMatchObject({
        code: 0,
        stdout: expect.stringMatching(
          /^renewed the serving certificate in Secret .* \(less than a third of the validity left/,
        ),
      });
      const after = await stored();
      expect(after.caCertPem).toBe(before.caCertPem);
      expect(inspectCertificate(after.servingCertPem ?? '').notAfter.getTime()).toBeGreaterThan(Date.now() + 29 * DAY);
      await waitUntilServed(fingerprint(after.servingCertPem));
      expect(await asAdmin(patchArgs)).toMatchObject({ code: 0, stdout: expect.stringMatching(/^unchanged/) });
      expect(await bundles()).toEqual(bundleBefore);
      const created = await core.createNamespacedPod({ namespace: podNamespace, body: pod });
      expect(created.spec?.imagePullSecrets).toEqual([{ name: 'acr-myregistry' }]);
    },
  );
});

describe('CA rotation', () => {
  test('replacing the CA while pods are created continuously fails no admission', async () => {
    // Start from a CA with less than a third of its life left (50 of 300 days), served and trusted.
    const agingCa = generateCa({ validityDays: 300, now: new Date(Date.now() - 250 * DAY) });
    const agingServing = generateServingCertificate(agingCa, {
      dnsNames: serviceDnsNames(SERVICE, serviceNamespace),
      ipAddresses: [],
      validityDays: 30,
      now: new Date(),
    });
    await writeStored({
      'ca.crt': agingCa.certPem,
      'ca.key': agingCa.keyPem,
      'tls.crt': agingServing.certPem,
      'tls.key': agingServing.keyPem,
    });
    await waitUntilServed(fingerprint(agingServing.certPem));
    await asAdmin(patchArgs);
    await waitUntilPatching();
    const aging = fingerprint(agingCa.certPem);
    expect(await bundles()).toEqual([[aging], [aging]]);

    const started = Date.now();
    const load = startPodLoad(kc, podNamespace, pod, 8);
    const steps: Record<string, number> = {};
    const mark = (step: string) => (steps[step] = Date.now() - started);
    await sleep(1_500);

    // 1. A new CA is staged; tls.crt stays. A second create before patch must not switch.
    const staged = await asAdmin(createArgs('--webhook-config', CONFIG));
    mark('staged');
    expect(staged).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^staged a new CA in Secret .*less than a third of the CA's validity left/),
    });
    const afterStage = await stored();
    const next = fingerprint(afterStage.caCertPem);
    expect(afterStage).toMatchObject({ previousCaCertPem: agingCa.certPem, servingCertPem: agingServing.certPem });
    expect(await asAdmin(createArgs('--webhook-config', CONFIG))).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^waiting: .*run patch first\)\n$/),
    });
    expect((await stored()).servingCertPem).toBe(agingServing.certPem);

    // 2. The bundle holds both CAs.
    expect(await asAdmin(patchArgs)).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^patched the caBundle of 2 of 2 webhooks/),
    });
    mark('bundle-both');
    expect(await bundles()).toEqual([
      [next, aging],
      [next, aging],
    ]);
    expect(await servedFingerprint({ ca: await publishedBundle() })).toBe(fingerprint(agingServing.certPem));

    // 3. The serving certificate moves to the new CA; the kubelet and the webhook follow.
    const switched = await asAdmin(createArgs('--webhook-config', CONFIG));
    mark('switched');
    expect(switched).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^switched tls.crt in Secret .* to the new CA/),
    });
    const afterSwitch = await stored();
    expect(afterSwitch.previousCaUntil?.getTime()).toBeGreaterThan(Date.now() + 23 * HOUR);
    await waitUntilServed(fingerprint(afterSwitch.servingCertPem));
    mark('new-certificate-served');
    // A fresh handshake, checked as the apiserver checks it, against the bundle as published.
    expect(await servedFingerprint({ ca: await publishedBundle() })).toBe(fingerprint(afterSwitch.servingCertPem));
    await sleep(3_000);

    // 4. A day later (the annotation is moved instead of the clock), the old CA goes from both.
    await writeStored({}, { [PREVIOUS_CA_UNTIL_ANNOTATION]: new Date(Date.now() - 1000).toISOString() });
    expect(await asAdmin(createArgs('--webhook-config', CONFIG))).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^dropped ca-previous.crt from Secret/),
    });
    expect(await asAdmin(patchArgs)).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^patched the caBundle of 2 of 2 webhooks/),
    });
    const droppedAt = Date.now();
    mark('bundle-new-only');
    expect(await bundles()).toEqual([[next], [next]]);
    expect(await servedFingerprint({ ca: await publishedBundle() })).toBe(fingerprint(afterSwitch.servingCertPem));
    await sleep(4_000);
    const admissions = await load.stop();
    mark('done');

    const failed = admissions.filter((entry) => !entry.outcome.ok);
    const afterRotation = admissions.filter((entry) => entry.startedAt > droppedAt + 1_000);
    const summary = {
      admissions: admissions.length,
      failed: failed.length,
      afterRotation: afterRotation.length,
      steps,
      kubeletSwaps: kubelet.updates(),
    };
    console.info(`[certs-gen rotation] ${JSON.stringify(summary)}`);
    expect(failed.map((entry) => (entry.outcome.ok ? '' : entry.outcome.error))).toEqual([]);
    expect(admissions.length).toBeGreaterThan(8 * 5);
    expect(afterRotation.length).toBeGreaterThan(5);
    for (const entry of admissions) expect(entry.outcome).toEqual({ ok: true, pullSecrets: ['acr-myregistry'] });
  });

  test('the count above can fail: a caBundle without the serving CA fails creates, and patch repairs it', async () => {
    const stranger = generateCa({ validityDays: 1, now: new Date() });
    await admission.patchMutatingWebhookConfiguration(
      {
        name: CONFIG,
        body: [
          {
            op: 'replace',
            path: '/webhooks/0/clientConfig/caBundle',
            value: Buffer.from(stranger.certPem).toString('base64'),
          },
        ],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    let rejected = '';
    for (let attempt = 0; attempt < 50 && rejected === ''; attempt++) {
      await core
        .createNamespacedPod({ namespace: podNamespace, dryRun: 'All', body: pod })
        .then(() => sleep(100))
        .catch(
          (error: unknown) =>
            (rejected = (JSON.parse(String((error as { body?: unknown }).body)) as { message: string }).message),
        );
    }
    expect(rejected).toMatch(
      new RegExp(
        '^Internal error occurred: failed calling webhook "pods.acr-pull-webhook.io": ' +
          '.*x509: certificate signed by unknown authority',
      ),
    );
    expect(await asAdmin(patchArgs)).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^patched the caBundle of 1 of 2 webhooks/),
    });
    await waitUntilPatching();
  });
});

describe('RBAC: deploy/rbac/certs-gen.yaml, exactly', () => {
  const namespace = `certs-gen-rbac-${run}`;
  const account = `certs-gen-${run}`;
  const secretName = 'webhook-tls';
  const configName = `certs-gen-rbac-${run}`;
  const otherConfig = `certs-gen-rbac-other-${run}`;
  let documented: V1PolicyRule[];
  let kubeconfig: string;
  /** A ServiceAccount bound to nothing: what every authenticated user may do anyway. */
  let nobodyKubeconfig: string;
  const args = {
    create: ['create', '--namespace', namespace, '--secret-name', secretName, '--service', SERVICE],
    patch: ['patch', '--webhook-config', configName, '--namespace', namespace, '--secret-name', secretName],
  };

  /** The shipped manifests with only names changed: namespace, account, Secret, configuration. */
  function manifests(): KubernetesObject[] {
    const text = readFileSync(join(import.meta.dirname, '../../deploy/rbac/certs-gen.yaml'), 'utf8');
    return parseAllDocuments(text).map((document) => {
      const object = document.toJSON() as KubernetesObject & {
        rules?: V1PolicyRule[];
        subjects?: { name: string; namespace?: string }[];
        roleRef?: { name: string };
      };
      object.metadata = { ...object.metadata, name: account };
      if (object.kind === 'ServiceAccount' || object.kind === 'Role' || object.kind === 'RoleBinding')
        object.metadata.namespace = namespace;
      for (const subject of object.subjects ?? []) Object.assign(subject, { name: account, namespace });
      if (object.roleRef) object.roleRef.name = account;
      for (const rule of object.rules ?? []) {
        if (rule.resourceNames === undefined) continue;
        rule.resourceNames = rule.resources?.includes('secrets') ? [secretName] : [configName];
      }
      return object;
    });
  }

  const ruleKey = (rule: V1PolicyRule | V1ResourceRule) =>
    [rule.apiGroups, rule.resources, rule.resourceNames ?? [], rule.verbs]
      .map((list) => [...(list ?? [])].sort().join(','))
      .join(' | ');

  beforeAll(async () => {
    await createNamespace(kc, namespace);
    const objects = kc.makeApiClient(KubernetesObjectApi);
    const shipped = manifests();
    documented = shipped.flatMap((object) => (object as { rules?: V1PolicyRule[] }).rules ?? []);
    for (const object of shipped) {
      if (object.kind === 'ClusterRole' || object.kind === 'ClusterRoleBinding')
        clusterScoped.push({ kind: object.kind, name: account });
      await objects.create(object);
    }
    for (const name of [configName, otherConfig]) {
      // Selects no namespace: these only have to exist.
      await createClusterScoped(
        'MutatingWebhookConfiguration',
        configuration(name, `none-${run}`, ['pods.acr-pull-webhook.io']),
      );
    }
    // Ours by label, so a refusal below can only come from RBAC.
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: 'other-tls', labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' } },
        type: 'kubernetes.io/tls',
        data: { 'tls.crt': '', 'tls.key': '' },
      },
    });
    const tokenFor = async (name: string) => {
      const request = await core.createNamespacedServiceAccountToken({
        namespace,
        name,
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      return tokenKubeconfig(dir, inject('server'), inject('caPem'), request.status?.token ?? '');
    };
    kubeconfig = await tokenFor(account);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: `nobody-${run}` } } });
    nobodyKubeconfig = await tokenFor(`nobody-${run}`);
  });

  test(
    'with a ServiceAccount token bound to exactly these rules, create and patch work and are ' + 'idempotent',
    async () => {
      expect(await certsGen(args.create, kubeconfig)).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringMatching(/^created Secret/),
      });
      expect(await certsGen([...args.create, '--webhook-config', configName], kubeconfig)).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringMatching(/^kept Secret/),
      });
      expect(await certsGen(args.patch, kubeconfig)).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringMatching(
          /^patched the caBundle of 1 of 1 webhooks .*; Secret .* now has an ownerReference to the configuration/,
        ),
      });
      // Setting the ownerReference took `update` on the Secret alone (no blockOwnerDeletion, so no
      // update on the configuration's finalizers).
      const uid = (await admission.readMutatingWebhookConfiguration({ name: configName })).metadata?.uid;
      const owners = (await core.readNamespacedSecret({ namespace, name: secretName })).metadata?.ownerReferences;
      expect(owners?.map((owner) => [owner.kind, owner.name, owner.uid])).toEqual([
        ['MutatingWebhookConfiguration', configName, uid],
      ]);
      expect(await certsGen(args.patch, kubeconfig)).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringMatching(
          /^unchanged: every caBundle of the 1 webhooks in MutatingWebhookConfiguration \S+ holds \S+\n$/,
        ),
      });
    },
  );

  test(
    'after the configuration is deleted and created again, patch replaces the stale ownerReference with ' +
      'the new uid',
    async () => {
      const before = (await admission.readMutatingWebhookConfiguration({ name: configName })).metadata?.uid;
      await admission.deleteMutatingWebhookConfiguration({ name: configName });
      // No controller-manager here, so no garbage collector: the Secret outlives its owner.
      await admission.createMutatingWebhookConfiguration({
        body: configuration(configName, `none-${run}`, ['pods.acr-pull-webhook.io']),
      });
      const after = (await admission.readMutatingWebhookConfiguration({ name: configName })).metadata?.uid;
      expect(after).not.toBe(before);
      expect(await certsGen(args.patch, kubeconfig)).toMatchObject({
        code: 0,
        stderr: '',
        stdout: expect.stringContaining(
          `now has an ownerReference to the configuration (uid ${after}, replacing stale uid ${before})`,
        ),
      });
      const owners = (await core.readNamespacedSecret({ namespace, name: secretName })).metadata?.ownerReferences;
      expect(owners?.map((owner) => owner.uid)).toEqual([after]);
    },
  );

  test(
    'the same token may not read another Secret or patch another webhook configuration, and says so in ' + 'one line',
    async () => {
      const user = `system:serviceaccount:${namespace}:${account}`;
      expect(
        await certsGen(
          ['create', '--namespace', namespace, '--secret-name', 'other-tls', '--service', SERVICE],
          kubeconfig,
        ),
      ).toMatchObject({
        code: 1,
        stdout: '',
        stderr:
          `certs-gen: forbidden (403): "${user}" may not get secrets "other-tls" in namespace "${namespace}"; ` +
          'grant verb "get" on secrets (see deploy/rbac/certs-gen.yaml)\n',
      });
      expect(
        await certsGen(
          ['patch', '--webhook-config', otherConfig, '--namespace', namespace, '--secret-name', secretName],
          kubeconfig,
        ),
      ).toMatchObject({
        code: 1,
        stdout: '',
        stderr:
          `certs-gen: forbidden (403): "${user}" may not get mutatingwebhookconfigurations "${otherConfig}"; ` +
          'grant verb "get" on mutatingwebhookconfigurations (see deploy/rbac/certs-gen.yaml)\n',
      });
    },
  );

  test.each([
    [
      'in its own namespace: the documented Role and ClusterRole rules, nothing more',
      () => namespace,
      () => documented,
    ],
    [
      'in another namespace: only the ClusterRole rule',
      () => podNamespace,
      () => documented.filter((rule) => rule.resources?.includes('mutatingwebhookconfigurations')),
    ],
  ])('what the token may do %s', async (_case, where, expected) => {
    const rulesOf = async (file: string) => {
      const asAccount = new KubeConfig();
      asAccount.loadFromFile(file);
      const review = await asAccount
        .makeApiClient(AuthorizationV1Api)
        .createSelfSubjectRulesReview({ body: { spec: { namespace: where() } } });
      return (review.status?.resourceRules ?? []).map(ruleKey);
    };
    // Every authenticated user may review itself, read ClusterTrustBundles and so on (which rules
    // depends on the Kubernetes version): those are subtracted, what is left was granted by us.
    const everyone = new Set(await rulesOf(nobodyKubeconfig));
    expect(everyone.size).toBeGreaterThan(0);
    const ours = (await rulesOf(kubeconfig)).filter((rule) => !everyone.has(rule));
    expect(ours.sort()).toEqual(expected().map(ruleKey).sort());
  });
});
