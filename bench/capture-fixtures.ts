// Captures the benchmark's "typical pod" AdmissionReview from a real kube-apiserver and writes it,
// byte for byte as the apiserver sent it, to bench/fixtures/typical-pod-create-review.json.
//
//   node bench/capture-fixtures.ts      (needs .tools/bin from tools/build.sh; about 15 s)
//
// It starts etcd + kube-apiserver on loopback, registers a recording webhook (the e2e tests'
// review recorder) with the same rules and selectors as the real webhook, creates the pod of
// bench/lib/pods.ts as the ReplicaSet controller would (field manager
// kube-controller-manager) in an opted-in namespace, and stops everything again.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { INJECT_ENABLED, INJECT_LABEL } from '../src/constants.ts';
import { testPki } from '../test/support/certificates.ts';
import { createNamespace, startControlPlane } from '../test/support/control-plane.ts';
import { startReviewRecorder } from '../test/support/review-recorder.ts';
import { webhookConfiguration } from '../test/support/webhook-configuration.ts';
import { typicalPod } from './lib/pods.ts';

export const TYPICAL_FIXTURE = join(import.meta.dirname, 'fixtures', 'typical-pod-create-review.json');
const NAMESPACE = 'shop';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

const controlPlane = await startControlPlane({ log: (line) => say(`  ${line}`) });
const pki = testPki();
const recorder = await startReviewRecorder(pki.serving);
try {
  const kc = controlPlane.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  await createNamespace(kc, NAMESPACE, { [INJECT_LABEL]: INJECT_ENABLED });
  await kc.makeApiClient(AdmissionregistrationV1Api).createMutatingWebhookConfiguration({
    body: webhookConfiguration({ name: 'bench-recorder', port: recorder.port, caPem: pki.ca.certPem }),
  });

  // The apiserver picks the configuration up asynchronously: probe with dry runs until it calls.
  const deadline = Date.now() + 30_000;
  while (recorder.reviews.length === 0) {
    if (Date.now() > deadline) throw new Error('the apiserver never called the recording webhook');
    await core.createNamespacedPod({
      namespace: NAMESPACE,
      dryRun: 'All',
      body: { metadata: { generateName: 'probe-' }, spec: { containers: [{ name: 'p', image: 'busybox' }] } },
    });
    await sleep(200);
  }

  const before = recorder.reviews.length;
  const created = await core.createNamespacedPod({
    namespace: NAMESPACE,
    fieldManager: 'kube-controller-manager',
    body: typicalPod(),
  });
  const raw = recorder.reviews[before];
  if (raw === undefined) throw new Error('no review recorded for the typical pod');
  const review = JSON.parse(raw) as { request: { name?: string; object: { metadata: { generateName?: string } } } };
  if (review.request.object.metadata.generateName !== typicalPod().metadata?.generateName)
    throw new Error('recorded review is not the typical pod');
  writeFileSync(TYPICAL_FIXTURE, raw);
  say(
    `captured the review of pod ${NAMESPACE}/${created.metadata?.name ?? '?'}: ` +
      `${Buffer.byteLength(raw)} bytes -> ${TYPICAL_FIXTURE}`,
  );
} finally {
  await recorder.close();
  await controlPlane.stop();
}
