// Admission warnings end to end: the real apiserver calls the real `serve`, and the real kubectl prints what the
// webhook's response.warnings said, as the user sees it.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { createNamespace } from '../support/control-plane.ts';
import { tempDir } from '../support/temp-dir.ts';
import { registerWebhook } from '../support/webhook-configuration.ts';
import { startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';

const CONFIG_NAME = 'acr-pull-webhook-e2e-warnings';
const kubeconfigPath = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const pki = testPki();
const dir = tempDir('e2e-warnings');
let webhook: WebhookProcess;

const run = promisify(execFile);

/** Runs kubectl against the test apiserver; its stderr is where `Warning: ...` lines go. */
async function kubectl(args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  const child = run('kubectl', ['--kubeconfig', kubeconfigPath, ...args], { encoding: 'utf8' });
  if (input !== undefined) child.child.stdin?.end(input);
  return child;
}

const warningLines = (stderr: string): string[] => stderr.split('\n').filter((line) => line.startsWith('Warning: '));

const warned = (image: string, server: string): string =>
  `Warning: acr-pull-webhook: no registries[] entry matches image "${image}": it will be pulled without ` +
  `credentials from this webhook (add an entry for server ${server})`;

async function optedInNamespace(): Promise<string> {
  const name = `warn-${randomUUID().slice(0, 8)}`;
  await createNamespace(kc, name, { 'acr-pull-webhook/inject': 'enabled' });
  return name;
}

function podYaml(namespace: string, images: string[], labels: Record<string, string> = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace, labels },
    spec: { containers: images.map((image, index) => ({ name: `c${index}`, image })) },
  });
}

async function warningsMetric(): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${webhook.healthPort}/metrics`)).text();
  return text.split('\n').find((line) => line.startsWith('acr_pull_webhook_admission_warnings_total{')) ?? '';
}

beforeAll(async () => {
  const config =
    'registries:\n' +
    '  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
    'acrHostSuffixes: [acr.example.com]\n';
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir, config }));
  await registerWebhook(kc, {
    name: CONFIG_NAME,
    port: webhook.port,
    caPem: pki.ca.certPem,
    probeNamespace: await optedInNamespace(),
  });
});

afterAll(async () => {
  await admission.deleteMutatingWebhookConfiguration({ name: CONFIG_NAME }).catch(() => undefined);
  await webhook?.stop();
});

describe('kubectl shows a warning', () => {
  test('for `kubectl run` of an image on an Azure registry that no entry matches, and the pod is created', async () => {
    const namespace = await optedInNamespace();
    const before = await warningsMetric();
    const { stdout, stderr } = await kubectl(['run', 'web', '-n', namespace, '--image=other.azurecr.io/team/app:v1']);
    expect(stdout).toBe('pod/web created\n');
    expect(warningLines(stderr)).toEqual([warned('other.azurecr.io/team/app:v1', 'other.azurecr.io')]);
    expect(before).toBe('acr_pull_webhook_admission_warnings_total{reason="unmatched_acr_host"} 0');
    expect(await warningsMetric()).toBe('acr_pull_webhook_admission_warnings_total{reason="unmatched_acr_host"} 1');
  });

  test('for `kubectl apply` of a host under a configured suffix, beside the secret for the matched image', async () => {
    const namespace = await optedInNamespace();
    const images = ['myregistry.azurecr.io/app:v1', 'team.acr.example.com/tool:2', 'nginx:1.27'];
    const { stderr } = await kubectl(['apply', '-f', '-'], podYaml(namespace, images));
    expect(warningLines(stderr)).toEqual([warned('team.acr.example.com/tool:2', 'team.acr.example.com')]);
    const stored = await core.readNamespacedPod({ namespace, name: 'web' });
    expect(stored.spec?.imagePullSecrets).toEqual([{ name: 'acr-myregistry' }]);
  });

  test('for a server-side dry run too, and nothing is stored', async () => {
    const namespace = await optedInNamespace();
    const { stderr } = await kubectl(['run', 'dry', '-n', namespace, '--image=x.azurecr.cn/a', '--dry-run=server']);
    expect(warningLines(stderr)).toEqual([warned('x.azurecr.cn/a', 'x.azurecr.cn')]);
    expect((await core.listNamespacedPod({ namespace })).items).toEqual([]);
  });
});

describe('kubectl shows no warning', () => {
  test.each([
    { when: 'every ACR image matches an entry', images: ['myregistry.azurecr.io/app:v1'], labels: {} },
    { when: 'the images are not on Azure registries', images: ['nginx:1.27', 'ghcr.io/org/tool:1'], labels: {} },
    {
      when: 'the pod is labelled acr-pull-webhook/inject=disabled',
      images: ['other.azurecr.io/app'],
      labels: { 'acr-pull-webhook/inject': 'disabled' },
    },
  ])('when $when', async ({ images, labels }) => {
    const namespace = await optedInNamespace();
    const { stdout, stderr } = await kubectl(['apply', '-f', '-'], podYaml(namespace, images, labels));
    expect(stdout).toBe('pod/web created\n');
    expect(stderr).toBe('');
  });
});

describe("within the apiserver's limits", () => {
  test('ten unmatched images of the longest kind: seven warnings and a count, each shown whole', async () => {
    const namespace = await optedInNamespace();
    // 520 characters: a 255-character name, a 128-character tag and a sha512 digest.
    const images = Array.from({ length: 10 }, (_, i) => {
      const host = `r${i}${'h'.repeat(58)}.${'g'.repeat(60)}.${'f'.repeat(60)}.azurecr.us:5000`;
      return `${host}/${'c'.repeat(254 - host.length)}:${'t'.repeat(128)}@sha512:${'a'.repeat(128)}`;
    });
    const { stderr } = await kubectl(['apply', '-f', '-'], podYaml(namespace, images));
    const lines = warningLines(stderr);
    expect(lines).toHaveLength(8);
    lines.slice(0, 7).forEach((line, i) => {
      expect(line).toHaveLength('Warning: '.length + 256);
      expect(line).toMatch(
        new RegExp(
          `^Warning: acr-pull-webhook: no registries\\[\\] entry matches image "r${i}h+\\.\\.\\.a+": it will be ` +
            'pulled without credentials from this webhook ' +
            `\\(add an entry for server r${i}h+\\.\\.\\.f+\\.azurecr\\.us:5000\\)$`,
        ),
      );
    });
    expect(lines[7]).toBe(
      'Warning: acr-pull-webhook: and 3 more images on Azure container registries match no registries[] entry: ' +
        'they will be pulled without credentials from this webhook',
    );
  });
});
