// The MutatingWebhookConfiguration the tests and the demo register against a webhook listening on
// loopback (url-style clientConfig), with the same selectors and policies the chart uses.
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1MutatingWebhookConfiguration,
} from '@kubernetes/client-node';
import { INJECT_DISABLED, INJECT_ENABLED, INJECT_LABEL, MUTATE_PATH } from '../../src/constants.ts';

export interface WebhookConfigurationOptions {
  readonly name: string;
  readonly port: number;
  readonly caPem: string;
  readonly failurePolicy?: 'Ignore' | 'Fail';
  readonly timeoutSeconds?: number;
  readonly reinvocationPolicy?: 'Never' | 'IfNeeded';
}

export function webhookConfiguration(options: WebhookConfigurationOptions): V1MutatingWebhookConfiguration {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: options.name },
    webhooks: [
      {
        name: 'pods.acr-pull-webhook.io',
        clientConfig: {
          url: `https://127.0.0.1:${options.port}${MUTATE_PATH}`,
          caBundle: Buffer.from(options.caPem).toString('base64'),
        },
        rules: [
          { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' },
        ],
        namespaceSelector: {
          matchExpressions: [
            { key: INJECT_LABEL, operator: 'In', values: [INJECT_ENABLED] },
            { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system'] },
          ],
        },
        objectSelector: { matchExpressions: [{ key: INJECT_LABEL, operator: 'NotIn', values: [INJECT_DISABLED] }] },
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        failurePolicy: options.failurePolicy ?? 'Ignore',
        timeoutSeconds: options.timeoutSeconds ?? 3,
        reinvocationPolicy: options.reinvocationPolicy ?? 'IfNeeded',
        matchPolicy: 'Equivalent',
      },
    ],
  };
}

/** Creates (or replaces) the configuration, then waits until the apiserver really calls the webhook. */
export async function registerWebhook(
  kc: KubeConfig,
  options: WebhookConfigurationOptions & { probeNamespace: string },
): Promise<void> {
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  const body = webhookConfiguration(options);
  try {
    await api.deleteMutatingWebhookConfiguration({ name: options.name });
  } catch {
    // not there yet
  }
  await api.createMutatingWebhookConfiguration({ body });
  await waitUntilLive(kc, options.probeNamespace);
}

/** Polls a dry-run pod create until it comes back patched: the configuration is being honoured. */
export async function waitUntilLive(kc: KubeConfig, namespace: string, timeoutMs = 30_000): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pod = await core.createNamespacedPod({
      namespace,
      dryRun: 'All',
      body: {
        metadata: { generateName: 'probe-' },
        spec: { containers: [{ name: 'probe', image: 'myregistry.azurecr.io/probe' }] },
      },
    });
    if ((pod.spec?.imagePullSecrets ?? []).length > 0) return;
    if (Date.now() > deadline)
      throw new Error(`webhook not live after ${timeoutMs} ms (probe pod not patched in ${namespace})`);
    await sleep(250);
  }
}
