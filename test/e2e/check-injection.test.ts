// `acr-pull-webhook check-injection` (what the chart's `helm test` runs) as a process against the real
// apiserver and a real `serve` process: it passes where the webhook injects and the Secrets are there, and
// fails, saying what to fix, where a Secret is missing, the namespace is not opted in, no webhook is
// registered or the webhook cannot be called. Then the chart's test-hook RBAC and policy, applied as
// rendered: enough for the check, and no real pod.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { tokenKubeconfig } from '../support/certs-gen-cli.ts';
import { createNamespace } from '../support/control-plane.ts';
import { findObject, renderChart, type Manifest } from '../support/helm.ts';
import { timeUntil } from '../support/sync-process.ts';
import { tempDir } from '../support/temp-dir.ts';
import { webhookConfiguration } from '../support/webhook-configuration.ts';
import { MAIN, startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';

const ADMIN_KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(ADMIN_KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const objects = KubernetesObjectApi.makeApiClient(kc);
const dir = tempDir('e2e-check-injection');
const run = randomUUID().slice(0, 8);
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

/** Only this file's namespaces carry this label key; each configuration below opts in with its own value. */
const OPT_IN = 'check-e2e.acr-pull-webhook.io/inject';
const CONFIG_NAME = `acr-pull-webhook-check-e2e-${run}`;
const DEAD_CONFIG_NAME = `acr-pull-webhook-check-e2e-dead-${run}`;
const REGISTRIES = [
  { server: 'myregistry.azurecr.io', secretName: 'acr-myregistry' },
  { server: '*.azurecr.cn', secretName: 'acr-china' },
  { server: 'registry.internal.example:5000/team/', secretName: 'internal-team' },
];
const SECRET_NAMES = REGISTRIES.map((entry) => entry.secretName);
const pki = testPki();
let webhook: WebhookProcess;

/** A configuration whose namespaces are those labelled OPT_IN=value; entries with credentials, as the chart's. */
function writeConfig(value: string): string {
  const file = join(dir, `config-${value}.yaml`);
  const registries = REGISTRIES.map((entry) => ({
    ...entry,
    credentials: { usernameFile: '/nonexistent/username', passwordFile: '/nonexistent/password' },
  }));
  writeFileSync(file, toYaml({ registries, optIn: { label: OPT_IN, value } }));
  return file;
}

async function namespace(value: string | undefined, secrets: readonly string[] = SECRET_NAMES): Promise<string> {
  const name = unique('check');
  await createNamespace(kc, name, value === undefined ? undefined : { [OPT_IN]: value });
  for (const secret of secrets)
    await core.createNamespacedSecret({
      namespace: name,
      body: {
        metadata: { name: secret },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') },
      },
    });
  return name;
}

interface CheckResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `acr-pull-webhook check-injection ...` as its own process, with only PATH and HOME from outside. */
function check(args: readonly string[], kubeconfig = ADMIN_KUBECONFIG): Promise<CheckResult> {
  const child = spawn(process.execPath, [MAIN, 'check-injection', '--kubeconfig', kubeconfig, ...args], {
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

/** A dry-run create in `namespace` comes back with imagePullSecrets: the webhook is being called there. */
async function injects(namespace: string): Promise<boolean> {
  const pod = await core.createNamespacedPod({
    namespace,
    dryRun: 'All',
    body: {
      metadata: { generateName: 'probe-' },
      spec: { containers: [{ name: 'c', image: 'myregistry.azurecr.io/p' }] },
    },
  });
  return (pod.spec?.imagePullSecrets ?? []).length > 0;
}

/** The test support's configuration, selecting namespaces by OPT_IN instead of the product's label. */
async function register(name: string, port: number, failurePolicy: 'Ignore' | 'Fail', value?: string): Promise<void> {
  const body = webhookConfiguration({ name, port, caPem: pki.ca.certPem, failurePolicy });
  const selector =
    value === undefined ? { key: OPT_IN, operator: 'Exists' } : { key: OPT_IN, operator: 'In', values: [value] };
  const hook = body.webhooks?.[0];
  if (hook !== undefined) hook.namespaceSelector = { matchExpressions: [selector] };
  await admission.createMutatingWebhookConfiguration({ body });
}

beforeAll(async () => {
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir, config: toYaml({ registries: REGISTRIES }) }));
  await register(CONFIG_NAME, webhook.port, 'Ignore');
  const probe = await namespace(`${run}-probe`, []);
  await timeUntil('the webhook configuration is live', () => injects(probe), 30_000);
});

afterAll(async () => {
  for (const name of [CONFIG_NAME, DEAD_CONFIG_NAME])
    await admission.deleteMutatingWebhookConfiguration({ name }).catch(() => undefined);
  await webhook?.stop();
});

describe('check-injection on a live webhook', () => {
  test('an opted-in namespace with every Secret passes: one ok line per registry, then PASS', async () => {
    const config = writeConfig(`${run}-good`);
    const target = await namespace(`${run}-good`);
    const result = await check(['--config', config, '--namespace', target]);
    expect(result.stderr).toBe('');
    expect(result.stdout.split('\n')).toEqual([
      `namespace ${target} (as asked)`,
      'ok   registries[0] myregistry.azurecr.io -> acr-myregistry: injected for ' +
        'myregistry.azurecr.io/acr-pull-webhook-check:dry-run; Secret acr-myregistry is there',
      'ok   registries[1] *.azurecr.cn -> acr-china: injected for ' +
        'check.azurecr.cn/acr-pull-webhook-check:dry-run; Secret acr-china is there',
      'ok   registries[2] registry.internal.example:5000/team/ -> internal-team: injected for ' +
        'registry.internal.example:5000/team/acr-pull-webhook-check:dry-run; Secret internal-team is there',
      `PASS ${target}: every registry's pull secret is injected and present`,
      '',
    ]);
    expect(result.status).toBe(0);
    // A dry run: nothing was stored.
    expect((await core.listNamespacedPod({ namespace: target })).items).toEqual([]);
  });

  test('without --namespace it checks the first opted-in namespace by name, skipping --exclude-namespace', async () => {
    const value = `${run}-auto`;
    const config = writeConfig(value);
    const names = [await namespace(value), await namespace(value)].sort();
    const first = await check(['--config', config]);
    expect(first.stdout.split('\n')[0]).toBe(`namespace ${names[0]} (the first labelled ${OPT_IN}=${value})`);
    expect(first.status).toBe(0);
    const second = await check(['--config', config, '--exclude-namespace', names[0] ?? '']);
    expect(second.stdout.split('\n')[0]).toBe(`namespace ${names[1]} (the first labelled ${OPT_IN}=${value})`);
    expect(second.status).toBe(0);
  });

  test('a missing Secret fails the check, naming the Secret and sync-secrets', async () => {
    const config = writeConfig(`${run}-missing`);
    const target = await namespace(`${run}-missing`, ['acr-myregistry', 'internal-team']);
    const result = await check(['--config', config, '--namespace', target]);
    expect(result.stdout).toContain(
      `FAIL registries[1] *.azurecr.cn -> acr-china: Secret acr-china is missing from ${target}: ` +
        'sync-secrets writes it, see its logs',
    );
    expect(result.stdout).toContain(`FAIL ${target}: 1 of 3 registries have a problem\n`);
    expect(result.status).toBe(1);
  });

  test('a namespace without the opt-in label fails the check, saying how to label it', async () => {
    const config = writeConfig(`${run}-plain`);
    const target = await namespace(undefined);
    const result = await check(['--config', config, '--namespace', target]);
    expect(result.stdout).toBe(
      `FAIL namespace ${target} is not opted in: kubectl label namespace ${target} ${OPT_IN}=${run}-plain\n`,
    );
    expect(result.status).toBe(1);
  });

  test('without a configuration it is a usage error: exit 2, before any cluster call', async () => {
    const result = await check(['--namespace', 'team-a']);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'acr-pull-webhook check-injection: --config (or ACR_PULL_WEBHOOK_CONFIG) is required\n' +
        "Run 'acr-pull-webhook check-injection --help' for usage.\n",
    );
    expect(result.status).toBe(2);
  });

  test('with no opted-in namespace at all, it fails saying to label one', async () => {
    const result = await check(['--config', writeConfig(`${run}-nobody`)]);
    expect(result.stdout).toBe(
      `FAIL no namespace is opted in: label one with kubectl label namespace NS ${OPT_IN}=${run}-nobody\n`,
    );
    expect(result.status).toBe(1);
  });

  test('an uncallable webhook (failurePolicy Fail) fails the check, pointing at caBundle and endpoints', async () => {
    const value = `${run}-dead`;
    await register(DEAD_CONFIG_NAME, 1, 'Fail', value);
    const target = await namespace(value);
    const refused = async (): Promise<boolean> =>
      injects(target).then(
        () => false,
        () => true,
      );
    await timeUntil('the failing webhook configuration is live', refused, 30_000);
    const result = await check(['--config', writeConfig(value), '--namespace', target]);
    expect(result.stdout).toContain(
      `FAIL ${target}: the dry-run Pod was refused: the apiserver could not call the webhook: check that the ` +
        'MutatingWebhookConfiguration has a caBundle and that the webhook Service has ready endpoints (',
    );
    expect(result.status).toBe(1);
    await admission.deleteMutatingWebhookConfiguration({ name: DEAD_CONFIG_NAME });
  });

  test('with no webhook configuration, nothing is injected: it fails, pointing at caBundle and endpoints', async () => {
    const value = `${run}-unregistered`;
    const target = await namespace(value);
    await admission.deleteMutatingWebhookConfiguration({ name: CONFIG_NAME });
    try {
      await timeUntil('the apiserver stops calling the webhook', async () => !(await injects(target)), 30_000);
      const result = await check(['--config', writeConfig(value), '--namespace', target]);
      expect(result.stdout).toContain(
        `FAIL registries[0] myregistry.azurecr.io -> acr-myregistry: not injected for ` +
          'myregistry.azurecr.io/acr-pull-webhook-check:dry-run; Secret acr-myregistry is there\n',
      );
      expect(result.stdout).toContain(
        `FAIL ${target}: 3 of 3 registries have a problem; the webhook injected nothing: check that the ` +
          'MutatingWebhookConfiguration has a caBundle and that the webhook Service has ready endpoints\n',
      );
      expect(result.status).toBe(1);
    } finally {
      await register(CONFIG_NAME, webhook.port, 'Ignore');
      await timeUntil('the webhook configuration is live again', () => injects(target), 30_000);
    }
  });
});

describe("the chart's test hook RBAC and policy", () => {
  const release = `check-rel-${run}`;
  const value = `${run}-chart`;
  const rendered = (): Manifest[] =>
    renderChart({
      release: 'acr',
      namespace: release,
      values: { registries: REGISTRIES, optIn: { label: OPT_IN, value }, syncSecrets: { enabled: false } },
    });
  const hookObjects = (all: readonly Manifest[]): Manifest[] =>
    all.filter((object) => object.metadata.labels?.['app.kubernetes.io/component'] === 'check-injection');
  const created: Manifest[] = [];

  afterAll(async () => {
    for (const object of created.reverse()) await objects.delete(object as KubernetesObject).catch(() => undefined);
  });

  test('let the rendered pod do the check, and refuse any pod its ServiceAccount creates for real', async () => {
    const all = rendered();
    await createNamespace(kc, release);
    const target = await namespace(value);
    const hooks = hookObjects(all);
    expect(hooks.map((object) => object.kind).sort()).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'Pod',
      'ServiceAccount',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
    ]);
    for (const object of hooks.filter((object) => object.kind !== 'Pod')) {
      await objects.create(object as KubernetesObject);
      created.push(object);
    }
    const pod = findObject<V1Pod>(hooks, 'Pod');
    const account = pod.spec?.serviceAccountName ?? '';
    const token = await core.createNamespacedServiceAccountToken({
      namespace: release,
      name: account,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const kubeconfig = tokenKubeconfig(dir, inject('server'), inject('caPem'), token.status?.token ?? '');
    const asAccount = (() => {
      const config = new KubeConfig();
      config.loadFromFile(kubeconfig);
      return config.makeApiClient(CoreV1Api);
    })();

    // The policy is compiled asynchronously: wait until it refuses a real pod, which RBAC alone allows.
    const realPod = async (): Promise<string> => {
      const name = unique('real');
      try {
        await asAccount.createNamespacedPod({
          namespace: target,
          body: { metadata: { name }, spec: { containers: [{ name: 'c', image: 'myregistry.azurecr.io/p' }] } },
        });
      } catch (error) {
        if (error instanceof ApiException) return `${error.code} ${String(error.body)}`;
        throw error;
      }
      await core.deleteNamespacedPod({ namespace: target, name });
      return 'created';
    };
    await timeUntil('the policy refuses real pods', async () => (await realPod()) !== 'created', 30_000);
    expect(await realPod()).toMatch(/^403 .*check-injection may create pods only as a dry run/);

    // The container's own arguments, with the ConfigMap's file where the pod mounts it.
    const configFile = join(dir, 'chart-config.yaml');
    const configMap = findObject(all, 'ConfigMap') as unknown as { data: Record<string, string> };
    writeFileSync(configFile, configMap.data['config.yaml'] ?? '');
    const args = (pod.spec?.containers[0]?.args ?? []).map((argument) =>
      argument === '--config=/etc/acr-pull-webhook/config.yaml' ? `--config=${configFile}` : argument,
    );
    expect(args[0]).toBe('check-injection');
    const result = await check(args.slice(1), kubeconfig);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`PASS ${target}: every registry's pull secret is injected and present`);
    expect(result.status).toBe(0);
  });
});
