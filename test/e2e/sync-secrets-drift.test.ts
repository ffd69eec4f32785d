// Drift detection on the real apiserver (issue #17): sync-secrets --watch watches the configured
// Secrets cluster-wide by name (fieldSelector=metadata.name=<name>), repairs one edited or deleted by
// hand within seconds without waiting for the resync, and its resync reads the watch's cache instead
// of GETting every Secret. The RBAC that allows the watch (list and watch with resourceNames) is
// checked to allow exactly that and no general read of Secrets.
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  FlowcontrolApiserverV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  Watch,
  type V1Secret,
} from '@kubernetes/client-node';
import { afterAll, describe, expect, inject, test } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { apiserverMetrics, sampleSum } from '../support/apiserver-metrics.ts';
import { tokenKubeconfig } from '../support/certs-gen-cli.ts';
import { createNamespace } from '../support/control-plane.ts';
import { SecretVolume } from '../support/secret-volume.ts';
import { scrapeMetrics } from '../support/sync-metrics.ts';
import { runSync, startSyncWatcher, timeUntil, type SyncWatcher } from '../support/sync-process.ts';
import { tempDir } from '../support/temp-dir.ts';

const ADMIN_KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(ADMIN_KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
const dir = tempDir('e2e-sync-drift');
const run = randomUUID().slice(0, 8);
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;
/** Repaired "within seconds": far below any resync period these tests configure. */
const REPAIR_MS = 5_000;

const NAME = `acr-drift-${run}`;
const OPT_IN = `e2e.acr-pull-webhook/drift-${run}`;
const credentials = new SecretVolume({ username: 'drift-user', password: randomBytes(24).toString('base64url') });
const CONFIG = join(dir, 'config.yaml');
writeFileSync(
  CONFIG,
  toYaml({
    registries: [
      {
        server: 'drift.azurecr.io',
        secretName: NAME,
        credentials: { usernameFile: credentials.path('username'), passwordFile: credentials.path('password') },
      },
    ],
    optIn: { label: OPT_IN, value: 'enabled' },
  }),
);

const watchers: SyncWatcher[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  await Promise.all(watchers.map((w) => w.kill()));
  for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  credentials.remove();
});

async function readSecret(namespace: string, name = NAME): Promise<V1Secret | undefined> {
  try {
    return await core.readNamespacedSecret({ namespace, name });
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return undefined;
    throw error;
  }
}

/** HTTP status of a call: 200 when it succeeded, the apiserver's code when it refused. */
async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

/** Opens a watch and resolves with the first event's type and object, or with the refusal's status code. */
function firstWatchEvent(
  config: KubeConfig,
  query: Record<string, string>,
  trigger: () => Promise<unknown>,
): Promise<{ type: string; name: string | undefined; namespace: string | undefined } | { refused: number }> {
  return new Promise((resolve, reject) => {
    let abort: AbortController | undefined;
    const timer = setTimeout(() => reject(new Error('no watch event within 10 s')), 10_000);
    new Watch(config)
      .watch(
        '/api/v1/secrets',
        query,
        (type, object: V1Secret) => {
          clearTimeout(timer);
          abort?.abort();
          resolve({ type, name: object.metadata?.name, namespace: object.metadata?.namespace });
        },
        (error: unknown) => {
          const status = (error as { statusCode?: number } | null)?.statusCode;
          if (status !== undefined) {
            clearTimeout(timer);
            resolve({ refused: status });
          }
        },
      )
      .then(
        async (controller) => {
          abort = controller;
          await trigger();
        },
        (error: unknown) => {
          const status = (error as { statusCode?: number } | null)?.statusCode;
          clearTimeout(timer);
          if (status === undefined) reject(error);
          else resolve({ refused: status });
        },
      );
  });
}

describe('the RBAC of the drift watch: list and watch on Secrets with resourceNames', () => {
  test('allow the configured name in every namespace with its field selector, and no other read', async () => {
    const home = unique('drift-rbac');
    const [a, b, c] = [unique('drift-rbac-a'), unique('drift-rbac-b'), unique('drift-rbac-c')];
    for (const namespace of [home, a, b, c]) await createNamespace(kc, namespace);
    const role = `e2e-drift-watch-${run}`;
    await rbac.createClusterRole({
      body: {
        metadata: { name: role },
        rules: [{ apiGroups: [''], resources: ['secrets'], resourceNames: [NAME], verbs: ['list', 'watch'] }],
      },
    });
    cleanups.push(() => rbac.deleteClusterRole({ name: role }));
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: role },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [{ kind: 'ServiceAccount', name: 'watcher', namespace: home }],
      },
    });
    cleanups.push(() => rbac.deleteClusterRoleBinding({ name: role }));
    for (const account of ['watcher', 'bystander']) {
      await core.createNamespacedServiceAccount({ namespace: home, body: { metadata: { name: account } } });
    }
    const opaque = (name: string): V1Secret => ({ metadata: { name }, stringData: { value: 'x' } });
    for (const namespace of [a, b]) await core.createNamespacedSecret({ namespace, body: opaque(NAME) });
    await core.createNamespacedSecret({ namespace: a, body: opaque('someone-elses') });

    const clientFor = async (account: string): Promise<{ config: KubeConfig; api: CoreV1Api }> => {
      const token = await core.createNamespacedServiceAccountToken({
        namespace: home,
        name: account,
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      const config = new KubeConfig();
      config.loadFromFile(tokenKubeconfig(dir, inject('server'), inject('caPem'), token.status?.token ?? ''));
      return { config, api: config.makeApiClient(CoreV1Api) };
    };
    const watcher = await clientFor('watcher');
    const bystander = await clientFor('bystander');
    const byName = { fieldSelector: `metadata.name=${NAME}` };

    // RBAC is evaluated per request; a fresh binding may take a moment to reach the authorizer's cache.
    await timeUntil(
      'the binding is in force',
      async () => (await statusOf(() => watcher.api.listSecretForAllNamespaces(byName))) === 200,
    );
    const listed = await watcher.api.listSecretForAllNamespaces(byName);
    expect(listed.items.map((secret) => `${secret.metadata?.namespace}/${secret.metadata?.name}`).sort()).toEqual(
      [`${a}/${NAME}`, `${b}/${NAME}`].sort(),
    );
    const created = await firstWatchEvent(
      watcher.config,
      { ...byName, resourceVersion: listed.metadata?.resourceVersion ?? '' },
      () => core.createNamespacedSecret({ namespace: c, body: opaque(NAME) }),
    );
    expect(created).toEqual({ type: 'ADDED', name: NAME, namespace: c });

    // Without the selector, with another name, in one namespace or by get: refused.
    expect(await statusOf(() => watcher.api.listSecretForAllNamespaces())).toBe(403);
    expect(
      await statusOf(() => watcher.api.listSecretForAllNamespaces({ fieldSelector: 'metadata.name=someone-elses' })),
    ).toBe(403);
    expect(await statusOf(() => watcher.api.listNamespacedSecret({ namespace: a }))).toBe(403);
    expect(await statusOf(() => watcher.api.readNamespacedSecret({ namespace: a, name: 'someone-elses' }))).toBe(403);
    expect(await firstWatchEvent(watcher.config, {}, async () => undefined)).toEqual({ refused: 403 });
    // And a ServiceAccount without the rule may not even list the name.
    expect(await statusOf(() => bystander.api.listSecretForAllNamespaces(byName))).toBe(403);
    expect(await firstWatchEvent(bystander.config, byName, async () => undefined)).toEqual({ refused: 403 });
  });
});

describe('sync-secrets --watch with the secret watch', () => {
  const inA = unique('drift-in');
  const inB = unique('drift-in');
  let w: SyncWatcher;
  let want = '';

  test('a managed Secret deleted or edited by hand is repaired within seconds, long before the resync', async () => {
    await createNamespace(kc, inA, { [OPT_IN]: 'enabled' });
    await createNamespace(kc, inB, { [OPT_IN]: 'enabled' });
    w = await startSyncWatcher({
      config: CONFIG,
      kubeconfig: ADMIN_KUBECONFIG,
      leaseNamespace: inA,
      identity: `drift-${run}`,
      args: ['--resync-period', '3600'],
    });
    watchers.push(w);
    await timeUntil(
      'first secrets',
      async () => (await readSecret(inA)) !== undefined && (await readSecret(inB)) !== undefined,
    );
    want = (await readSecret(inA))?.data?.['.dockerconfigjson'] ?? '';
    expect(want).not.toBe('');

    await core.deleteNamespacedSecret({ namespace: inA, name: NAME });
    const recreated = await timeUntil('the deleted secret is back', async () => (await readSecret(inA)) !== undefined);
    expect(recreated).toBeLessThanOrEqual(REPAIR_MS);
    expect((await readSecret(inA))?.data?.['.dockerconfigjson']).toBe(want);

    const edited = await readSecret(inB);
    if (edited === undefined) throw new Error('no secret to edit');
    edited.data = { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') };
    await core.replaceNamespacedSecret({ namespace: inB, name: NAME, body: edited });
    const repaired = await timeUntil(
      'the edited secret is repaired',
      async () => (await readSecret(inB))?.data?.['.dockerconfigjson'] === want,
    );
    expect(repaired).toBeLessThanOrEqual(REPAIR_MS);
    const drifted = w.logLines().filter((line) => line['msg'] === 'secret drifted; reconciling its namespace');
    expect(drifted.map((line) => `${line['namespace']} ${line['change']}`)).toEqual(
      expect.arrayContaining([`${inA} deleted`, `${inB} changed`]),
    );
  });

  test('a resync reads the cache: full passes go by with no GET of a Secret', async () => {
    await w.stop();
    const fast = await startSyncWatcher({
      config: CONFIG,
      kubeconfig: ADMIN_KUBECONFIG,
      leaseNamespace: inB,
      identity: `drift-fast-${run}`,
      args: ['--resync-period', '1'],
    });
    watchers.push(fast);
    await fast.waitForLog((line) => line['msg'] === 'leading: this replica writes');
    const PASSES = 'acr_pull_webhook_sync_passes_total{result="success"}';
    // Settled: the first pass after leading is done, and the watch has listed.
    await timeUntil('a first full pass', async () => (await scrapeMetrics(fast.healthUrl)).value(PASSES) >= 1);
    const getsOfSecrets = async (): Promise<number> =>
      sampleSum(await apiserverMetrics(kc), 'apiserver_request_total', { verb: 'GET', resource: 'secrets' });
    const passesBefore = (await scrapeMetrics(fast.healthUrl)).value(PASSES);
    const getsBefore = await getsOfSecrets();
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    const passes = (await scrapeMetrics(fast.healthUrl)).value(PASSES) - passesBefore;
    const gets = (await getsOfSecrets()) - getsBefore;
    // Two opted-in namespaces, one secret each, resynced every second: reading them would be 2 GETs a pass.
    expect(passes).toBeGreaterThanOrEqual(2);
    expect(gets).toBe(0);
    for (const namespace of [inA, inB]) expect((await readSecret(namespace))?.data?.['.dockerconfigjson']).toBe(want);
    expect(await fast.stop()).toBe(0);
  });

  test('--once reads with one list per configured name, no GET each, and a warm run writes nothing', async () => {
    const requests = async (verb: string): Promise<number> =>
      sampleSum(await apiserverMetrics(kc), 'apiserver_request_total', { verb, resource: 'secrets' });
    const writes = async (): Promise<number> =>
      (await Promise.all(['POST', 'PUT', 'PATCH', 'DELETE'].map(requests))).reduce((a, b) => a + b, 0);
    const [getsBefore, listsBefore, writesBefore] = [await requests('GET'), await requests('LIST'), await writes()];
    const result = await runSync(['--config', CONFIG, '--once', '--kubeconfig', ADMIN_KUBECONFIG]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe('namespaces=2 created=0 updated=0 unchanged=2 skipped=0 failed=0\n');
    expect((await requests('GET')) - getsBefore).toBe(0);
    expect((await requests('LIST')) - listsBefore).toBe(1);
    expect((await writes()) - writesBefore).toBe(0);
  });
});

describe('sync-secrets under API Priority and Fairness throttling', () => {
  test('429s with Retry-After from a full priority level are waited out, and every secret arrives', async () => {
    const home = unique('drift-apf');
    await createNamespace(kc, home);
    await core.createNamespacedServiceAccount({ namespace: home, body: { metadata: { name: 'throttled' } } });
    const name = `e2e-apf-${run}`;
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ kind: 'ServiceAccount', name: 'throttled', namespace: home }],
      },
    });
    cleanups.push(() => rbac.deleteClusterRoleBinding({ name }));
    // One seat, no queue, nothing borrowed: requests of this ServiceAccount beyond one at a time get 429.
    const flow = kc.makeApiClient(FlowcontrolApiserverV1Api);
    await flow.createPriorityLevelConfiguration({
      body: {
        metadata: { name },
        spec: {
          type: 'Limited',
          limited: {
            nominalConcurrencyShares: 0,
            lendablePercent: 0,
            borrowingLimitPercent: 0,
            limitResponse: { type: 'Reject' },
          },
        },
      },
    });
    cleanups.push(() => flow.deletePriorityLevelConfiguration({ name }));
    await flow.createFlowSchema({
      body: {
        metadata: { name },
        spec: {
          priorityLevelConfiguration: { name },
          matchingPrecedence: 500,
          rules: [
            {
              subjects: [{ kind: 'ServiceAccount', serviceAccount: { name: 'throttled', namespace: home } }],
              resourceRules: [
                { verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*'], clusterScope: true },
              ],
            },
          ],
        },
      },
    });
    cleanups.push(() => flow.deleteFlowSchema({ name }));
    const token = await core.createNamespacedServiceAccountToken({
      namespace: home,
      name: 'throttled',
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const kubeconfig = tokenKubeconfig(dir, inject('server'), inject('caPem'), token.status?.token ?? '');
    const targets = Array.from({ length: 8 }, () => unique('drift-apf-in'));
    for (const namespace of targets) await createNamespace(kc, namespace, { [OPT_IN]: 'enabled' });
    const rejected = async (): Promise<number> =>
      sampleSum(await apiserverMetrics(kc), 'apiserver_flowcontrol_rejected_requests_total', { priority_level: name });

    const throttled = await startSyncWatcher({
      config: CONFIG,
      kubeconfig,
      leaseNamespace: home,
      identity: `drift-apf-${run}`,
      // No client-side limit: four namespaces at a time against one seat.
      args: ['--kube-api-qps', '0', '--log-level', 'debug'],
    });
    watchers.push(throttled);
    await timeUntil(
      'every secret under throttling',
      async () => (await Promise.all(targets.map((namespace) => readSecret(namespace)))).every(Boolean),
      60_000,
    );
    expect(await rejected()).toBeGreaterThan(0);
    const retries = throttled
      .logLines()
      .filter((line) => line['msg'] === 'retrying' && line['status'] === 429)
      .map((line) => Number(line['delayMs']));
    expect(retries.length).toBeGreaterThan(0);
    // The apiserver asks for Retry-After: 1; the first backoff delay alone would be 250 ms.
    for (const delay of retries) expect(delay).toBeGreaterThanOrEqual(1_000);
    expect(await throttled.stop()).toBe(0);
  }, 120_000);
});
