// A webhook that is slow, a black hole, or refused, registered with failurePolicy Ignore: every pod
// is still created, and the time each create loses is bounded by timeoutSeconds.
import { randomUUID } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { apiserverMetrics, sampleSum } from '../support/apiserver-metrics.ts';
import { createNamespace } from '../support/control-plane.ts';
import { webhookConfiguration } from '../support/webhook-configuration.ts';

const kc = new KubeConfig();
kc.loadFromFile(inject('kubeconfigPath'));
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const pki = testPki();
const CONFIG_NAME = 'acr-pull-webhook-fail-open';
const TIMEOUT_SECONDS = 2;

let slow: HttpsServer;
let blackHole: TcpServer;
const heldSockets: Socket[] = [];
let refusedPort: number;

const portOf = (server: { address(): unknown }): number => (server.address() as AddressInfo).port;

beforeAll(async () => {
  // Answers correctly, but only after the apiserver has given up.
  slow = createHttpsServer({ cert: pki.serving.certPem, key: pki.serving.keyPem }, (req, res) => {
    req.resume();
    setTimeout(() => res.end('{}'), (TIMEOUT_SECONDS + 3) * 1000).unref();
  });
  // Accepts TCP and never says a word: the TLS handshake never completes.
  blackHole = createTcpServer((socket) => void heldSockets.push(socket));
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
  // A port that was free a moment ago: nothing listens there.
  const probe = createTcpServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  refusedPort = portOf(probe);
  await new Promise<void>((r) => probe.close(() => r()));
});

afterAll(async () => {
  await admission.deleteMutatingWebhookConfiguration({ name: CONFIG_NAME }).catch(() => undefined);
  slow.closeAllConnections();
  slow.close();
  for (const socket of heldSockets) socket.destroy();
  blackHole.close();
});

describe('with failurePolicy Ignore and timeoutSeconds 2, a webhook that', () => {
  test.each([
    { what: 'answers after the timeout', port: () => portOf(slow), boundMs: TIMEOUT_SECONDS * 1000 + 1_500 },
    {
      what: 'accepts connections and never answers',
      port: () => portOf(blackHole),
      boundMs: TIMEOUT_SECONDS * 1000 + 1_500,
    },
    { what: 'refuses connections', port: () => refusedPort, boundMs: 1_000 },
  ])(
    '$what lets every pod through, each within the bound',
    async ({ port, boundMs }) => {
      await admission.deleteMutatingWebhookConfiguration({ name: CONFIG_NAME }).catch(() => undefined);
      const body = webhookConfiguration({
        name: CONFIG_NAME,
        port: port(),
        caPem: pki.ca.certPem,
        failurePolicy: 'Ignore',
        timeoutSeconds: TIMEOUT_SECONDS,
      });
      await admission.createMutatingWebhookConfiguration({ body });
      const namespace = `fail-open-${randomUUID().slice(0, 8)}`;
      await createNamespace(kc, namespace, { 'acr-pull-webhook/inject': 'enabled' });
      // Give the apiserver's webhook informer time to see the configuration (it is not observable
      // here otherwise: the call fails open either way).
      await new Promise((r) => setTimeout(r, 2_000));
      const failOpen = async (): Promise<number> =>
        sampleSum(await apiserverMetrics(kc), 'apiserver_admission_webhook_fail_open_count', {
          name: 'pods.acr-pull-webhook.io',
        });
      const failOpenBefore = await failOpen();
      const durations: number[] = [];
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        const pod = await core.createNamespacedPod({
          namespace,
          body: {
            metadata: { name: `p${i}` },
            spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/app' }] },
          },
        });
        durations.push(Date.now() - started);
        expect(pod.spec?.imagePullSecrets).toBeUndefined();
      }
      const stored = await core.listNamespacedPod({ namespace });
      expect(stored.items).toHaveLength(3);
      for (const duration of durations) expect(duration).toBeLessThan(boundMs);
      // The apiserver did call the webhook and failed open each time (not skipped it).
      expect((await failOpen()) - failOpenBefore).toBe(3);
      process.stderr.write(`fail-open (${port()}): create durations ms ${durations.join(', ')}\n`);
    },
    30_000,
  );
});
