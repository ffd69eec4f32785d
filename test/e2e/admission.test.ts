// The product end to end: the real apiserver calls the real webhook process (started by the CLI),
// applies its patches and stores the pods.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  KubeConfig,
  type V1Pod,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { createNamespace } from '../support/control-plane.ts';
import { SIDECAR_IMAGE, SIDECAR_LABEL, startReviewRecorder, type ReviewRecorder } from '../support/review-recorder.ts';
import { tempDir } from '../support/temp-dir.ts';
import { registerWebhook, waitUntilLive } from '../support/webhook-configuration.ts';
import { startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';

const CONFIG_NAME = 'acr-pull-webhook-e2e';
const RECORDER_NAME = 'zz-e2e-review-recorder';
const RECORDER_NAMESPACE_LABEL = 'e2e.acr-pull-webhook/recorder';
const FIXTURE = join(import.meta.dirname, '../fixtures/apiserver-pod-create-review.json');

const kc = new KubeConfig();
kc.loadFromFile(inject('kubeconfigPath'));
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const pki = testPki();
const dir = tempDir('e2e-admission');
let webhook: WebhookProcess;
let recorder: ReviewRecorder;

const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

async function optedInNamespace(extraLabels: Record<string, string> = {}): Promise<string> {
  const name = unique('in');
  await createNamespace(kc, name, { 'acr-pull-webhook/inject': 'enabled', ...extraLabels });
  return name;
}

function podSpec(images: { containers: string[]; initContainers?: string[] }): V1PodSpec {
  return {
    containers: images.containers.map((image, index) => ({ name: `c${index}`, image })),
    ...(images.initContainers
      ? { initContainers: images.initContainers.map((image, index) => ({ name: `i${index}`, image })) }
      : {}),
  };
}

async function createPod(namespace: string, pod: V1Pod): Promise<V1Pod> {
  await core.createNamespacedPod({ namespace, body: pod });
  return core.readNamespacedPod({ namespace, name: pod.metadata?.name ?? '' });
}

const pullSecretNames = (pod: V1Pod): string[] => (pod.spec?.imagePullSecrets ?? []).map((entry) => entry.name ?? '');

beforeAll(async () => {
  const config =
    'registries:\n' +
    '  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
    '  - server: "*.azurecr.cn"\n    secretName: acr-china\n';
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir, config }));
  recorder = await startReviewRecorder(pki.serving);
  await admission.createMutatingWebhookConfiguration({
    body: {
      metadata: { name: RECORDER_NAME },
      webhooks: [
        {
          name: 'recorder.e2e.acr-pull-webhook.io',
          clientConfig: {
            url: `https://127.0.0.1:${recorder.port}/record`,
            caBundle: Buffer.from(pki.ca.certPem).toString('base64'),
          },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          namespaceSelector: { matchLabels: { [RECORDER_NAMESPACE_LABEL]: 'true' } },
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          failurePolicy: 'Fail',
          timeoutSeconds: 5,
          reinvocationPolicy: 'Never',
        },
      ],
    },
  });
  const probe = await optedInNamespace();
  await registerWebhook(kc, { name: CONFIG_NAME, port: webhook.port, caPem: pki.ca.certPem, probeNamespace: probe });
});

afterAll(async () => {
  for (const name of [CONFIG_NAME, RECORDER_NAME]) {
    await admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
  }
  await webhook?.stop();
  await recorder?.close();
});

describe('in an opted-in namespace', () => {
  test(
    'pods with ACR images in containers and init containers are stored with the matching secrets, in ' + 'config order',
    async () => {
      const namespace = await optedInNamespace();
      const stored = await createPod(namespace, {
        metadata: { name: 'web' },
        spec: podSpec({
          initContainers: ['contoso.azurecr.cn/tools/migrate:2.1'],
          containers: ['myregistry.azurecr.io/team/app:v1', 'nginx:1.27'],
        }),
      });
      expect(stored.spec?.imagePullSecrets).toEqual([{ name: 'acr-myregistry' }, { name: 'acr-china' }]);
      expect(stored.spec?.containers.map((c) => c.image)).toEqual(['myregistry.azurecr.io/team/app:v1', 'nginx:1.27']);
    },
  );

  test('entries the pod already lists are kept first, and a name already listed is not added again', async () => {
    const namespace = await optedInNamespace();
    const stored = await createPod(namespace, {
      metadata: { name: 'web' },
      spec: {
        ...podSpec({ containers: ['myregistry.azurecr.io/app', 'x.azurecr.cn/b'] }),
        imagePullSecrets: [{ name: 'mine' }, { name: 'acr-china' }],
      },
    });
    expect(pullSecretNames(stored)).toEqual(['mine', 'acr-china', 'acr-myregistry']);
  });

  test('a pod created by generateName is patched too', async () => {
    const namespace = await optedInNamespace();
    const created = await core.createNamespacedPod({
      namespace,
      body: { metadata: { generateName: 'web-' }, spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }) },
    });
    expect(pullSecretNames(created)).toEqual(['acr-myregistry']);
  });

  test("the ServiceAccount's own imagePullSecrets and ours are both stored, once each", async () => {
    const namespace = await optedInNamespace();
    await core.replaceNamespacedServiceAccount({
      namespace,
      name: 'default',
      body: {
        metadata: { name: 'default' },
        imagePullSecrets: [{ name: 'from-serviceaccount' }, { name: 'acr-myregistry' }],
      },
    });
    const stored = await createPod(namespace, {
      metadata: { name: 'web' },
      spec: podSpec({ containers: ['myregistry.azurecr.io/app', 'x.azurecr.cn/b'] }),
    });
    expect(pullSecretNames(stored)).toEqual(['from-serviceaccount', 'acr-myregistry', 'acr-china']);
  });

  test('a dryRun=All create returns the patched pod and stores nothing', async () => {
    const namespace = await optedInNamespace();
    const returned = await core.createNamespacedPod({
      namespace,
      dryRun: 'All',
      body: { metadata: { name: 'dry' }, spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }) },
    });
    expect(pullSecretNames(returned)).toEqual(['acr-myregistry']);
    const error = await core.readNamespacedPod({ namespace, name: 'dry' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiException);
    expect((error as ApiException<unknown>).code).toBe(404);
  });

  test('an ACR sidecar added by a later webhook still gets its secret (reinvocationPolicy IfNeeded)', async () => {
    const namespace = await optedInNamespace({ [RECORDER_NAMESPACE_LABEL]: 'true' });
    const stored = await createPod(namespace, {
      metadata: { name: 'meshed', labels: { [SIDECAR_LABEL]: 'true' } },
      spec: podSpec({ containers: ['nginx:1.27'] }),
    });
    expect(stored.spec?.containers.map((c) => c.image)).toEqual(['nginx:1.27', SIDECAR_IMAGE]);
    expect(pullSecretNames(stored)).toEqual(['acr-myregistry']);
  });
});

describe('pods that are left unchanged', () => {
  test('in a namespace without the opt-in label', async () => {
    const namespace = unique('out');
    await createNamespace(kc, namespace);
    const stored = await createPod(namespace, {
      metadata: { name: 'web' },
      spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }),
    });
    expect(stored.spec?.imagePullSecrets).toBeUndefined();
  });

  test('a pod labelled acr-pull-webhook/inject=disabled', async () => {
    const namespace = await optedInNamespace();
    const stored = await createPod(namespace, {
      metadata: { name: 'web', labels: { 'acr-pull-webhook/inject': 'disabled' } },
      spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }),
    });
    expect(stored.spec?.imagePullSecrets).toBeUndefined();
  });

  test('a pod with only Docker Hub images', async () => {
    const namespace = await optedInNamespace();
    const stored = await createPod(namespace, {
      metadata: { name: 'web' },
      spec: podSpec({ containers: ['nginx:1.27', 'bitnami/redis:7'] }),
    });
    expect(stored.spec?.imagePullSecrets).toBeUndefined();
  });

  test(
    'a pod in kube-system, even when kube-system carries the opt-in label, is never sent to the ' + 'webhook',
    async () => {
      await core
        .patchNamespace(
          { name: 'kube-system', body: { metadata: { labels: { 'acr-pull-webhook/inject': 'enabled' } } } },
          { headers: { 'Content-Type': 'application/merge-patch+json' } } as never,
        )
        .catch(async () => {
          const ns = await core.readNamespace({ name: 'kube-system' });
          ns.metadata = { ...ns.metadata, labels: { ...ns.metadata?.labels, 'acr-pull-webhook/inject': 'enabled' } };
          await core.replaceNamespace({ name: 'kube-system', body: ns });
        });
      await core
        .createNamespacedServiceAccount({ namespace: 'kube-system', body: { metadata: { name: 'default' } } })
        .catch(() => undefined);
      const name = unique('sys');
      const reviewsBefore = (await webhook.settledLogLines()).filter((line) => line['msg'] === 'review').length;
      const stored = await createPod('kube-system', {
        metadata: { name },
        spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }),
      });
      expect(stored.spec?.imagePullSecrets).toBeUndefined();
      const after = await webhook.settledLogLines();
      expect(after.filter((line) => line['msg'] === 'review' && line['namespace'] === 'kube-system')).toEqual([]);
      expect(after.filter((line) => line['msg'] === 'review').length).toBe(reviewsBefore);
    },
  );
});

describe('the review the apiserver really sends', () => {
  test('has the shape of the committed fixture, which the unit tests replay', async () => {
    // Recorded in a namespace that only the recorder watches, so the pod is exactly as the
    // apiserver sends it to a mutating webhook (ServiceAccount defaults in, no patch of ours).
    const namespace = unique('capture');
    await createNamespace(kc, namespace, { [RECORDER_NAMESPACE_LABEL]: 'true' });
    const before = recorder.reviews.length;
    await createPod(namespace, {
      metadata: { name: 'captured' },
      spec: podSpec({
        containers: ['myregistry.azurecr.io/team/app:v1'],
        initContainers: ['contoso.azurecr.cn/init:1'],
      }),
    });
    const captured = JSON.parse(recorder.reviews[before] ?? '{}') as {
      request: Record<string, unknown> & { object: Record<string, unknown> };
    };
    if (process.env['UPDATE_FIXTURES'] === '1') writeFileSync(FIXTURE, `${JSON.stringify(captured, null, 2)}\n`);
    const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8')) as typeof captured;
    expect(Object.keys(captured).sort()).toEqual(Object.keys(fixture).sort());
    expect(Object.keys(captured.request).sort()).toEqual(Object.keys(fixture.request).sort());
    expect(Object.keys(captured.request.object).sort()).toEqual(Object.keys(fixture.request.object).sort());
    expect(captured.request['operation']).toBe('CREATE');
    expect((captured.request.object['spec'] as V1Pod['spec'])?.imagePullSecrets).toBeUndefined();
  });
});

describe('fail-safe', () => {
  test(
    'with the webhook process killed, Ignore lets pods through within the timeout and Fail rejects ' + 'them',
    async () => {
      const namespace = await optedInNamespace();
      await webhook.kill();
      try {
        const started = Date.now();
        const stored = await createPod(namespace, {
          metadata: { name: 'while-down' },
          spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }),
        });
        expect(stored.spec?.imagePullSecrets).toBeUndefined();
        expect(Date.now() - started).toBeLessThan(3_000 + 2_000);

        await admission.patchMutatingWebhookConfiguration(
          { name: CONFIG_NAME, body: [{ op: 'replace', path: '/webhooks/0/failurePolicy', value: 'Fail' }] },
          { headers: { 'Content-Type': 'application/json-patch+json' } } as never,
        );
        let rejected: unknown;
        for (let attempt = 0; attempt < 40 && rejected === undefined; attempt++) {
          await core
            .createNamespacedPod({
              namespace,
              dryRun: 'All',
              body: {
                metadata: { generateName: 'fail-' },
                spec: podSpec({ containers: ['myregistry.azurecr.io/app'] }),
              },
            })
            .then(() => new Promise((r) => setTimeout(r, 250)))
            .catch((error: unknown) => (rejected = error));
        }
        expect(rejected).toBeInstanceOf(ApiException);
        expect(String((rejected as ApiException<unknown>).body)).toContain('failed calling webhook');
      } finally {
        webhook = await startWebhookProcess({
          config: join(dir, 'config.yaml'),
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
          dir,
        });
        await registerWebhook(kc, {
          name: CONFIG_NAME,
          port: webhook.port,
          caPem: pki.ca.certPem,
          probeNamespace: namespace,
        });
        await waitUntilLive(kc, namespace);
      }
    },
  );
});
