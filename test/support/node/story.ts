// The project installed on the one-node cluster as a user would have it: sync-secrets writing the pull
// secrets, the webhook inside the cluster's network namespace behind a Service the apiserver resolves
// (kube-proxy carries the call), and its MutatingWebhookConfiguration. Shared by the node suite and
// `npm start` (scripts/demo.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdmissionregistrationV1Api, CoreV1Api, DiscoveryV1Api } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { INJECT_ENABLED, INJECT_LABEL, MUTATE_PATH } from '../../../src/constants.ts';
import { SecretVolume } from '../secret-volume.ts';
import { startSyncWatcher, type SyncWatcher } from '../sync-process.ts';
import { webhookConfiguration } from '../webhook-configuration.ts';
import { MAIN } from '../webhook-process.ts';
import { NODE_IP, type NodeCluster, REGISTRY_HOSTS, TEST_IMAGE_PATH } from './cluster.ts';

/** The pull secrets sync-secrets writes, one per registry, in configuration order. */
export const SECRET_NAMES = ['acr-e2etest', 'acr-e2etest2'] as const;
/** The private test image in each registry. */
export const IMAGES = REGISTRY_HOSTS.map((host) => `${host}/${TEST_IMAGE_PATH}`);
export const WEBHOOK = { namespace: 'acr-system', service: 'acr-pull-webhook', port: 8443 } as const;

export interface Story {
  /** The credentials sync-secrets reads, one mounted-Secret-like volume per registry. */
  readonly volumes: readonly SecretVolume[];
  readonly configPath: string;
  readonly webhookLogPath: string;
  /** Stops sync-secrets (idempotent); the webhook dies with the cluster. */
  stopSync(): Promise<void>;
  /** stopSync() and removes the credential volumes. */
  stop(): Promise<void>;
}

/** Polls `check` every 250 ms until it returns true; throws with the last error after timeoutMs. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last = '';
  for (;;) {
    try {
      if (await check()) return Date.now() - started;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms ${last.slice(0, 500)}`);
    await sleep(250);
  }
}

/** Creates a namespace labelled for injection and waits until sync-secrets has written both secrets
 *  (the webhook only adds secrets that exist). */
export async function createOptedInNamespace(cluster: NodeCluster, name: string): Promise<void> {
  const core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, labels: { [INJECT_LABEL]: INJECT_ENABLED } } } });
  await until(
    `pull secrets in ${name}`,
    async () => {
      for (const secret of SECRET_NAMES) await core.readNamespacedSecret({ name: secret, namespace: name });
      return true;
    },
    30_000,
  );
}

export async function startStory(cluster: NodeCluster, log: (line: string) => void = () => {}): Promise<Story> {
  const kc = cluster.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  const volumes: SecretVolume[] = [];
  let sync: SyncWatcher | undefined;
  const stopSync = async (): Promise<void> => {
    const running = sync;
    sync = undefined;
    await running?.stop();
  };
  const stop = async (): Promise<void> => {
    await stopSync();
    for (const volume of volumes.splice(0)) volume.remove();
  };

  try {
    // Credentials as sync-secrets reads them from its mounted Secret, one pair per registry.
    for (const registry of cluster.registries)
      volumes.push(new SecretVolume({ username: registry.username, password: registry.password }));
    const configPath = join(cluster.dir, 'acr-pull-webhook.yaml');
    writeFileSync(
      configPath,
      toYaml({
        registries: REGISTRY_HOSTS.map((server, i) => ({
          server,
          secretName: SECRET_NAMES[i],
          credentials: { usernameFile: volumes[i]?.path('username'), passwordFile: volumes[i]?.path('password') },
        })),
      }),
    );

    // The webhook inside the cluster's network namespace, behind a Service the apiserver resolves.
    const pair = cluster.servingPair([
      `${WEBHOOK.service}.${WEBHOOK.namespace}.svc`,
      `${WEBHOOK.service}.${WEBHOOK.namespace}.svc.cluster.local`,
    ]);
    const webhookDir = join(cluster.dir, 'webhook');
    mkdirSync(webhookDir);
    writeFileSync(join(webhookDir, 'tls.crt'), pair.certPem);
    writeFileSync(join(webhookDir, 'tls.key'), pair.keyPem);
    const webhook = cluster.spawnInside('webhook', [
      process.execPath,
      MAIN,
      'serve',
      '--config',
      configPath,
      '--tls-cert',
      join(webhookDir, 'tls.crt'),
      '--tls-key',
      join(webhookDir, 'tls.key'),
      '--host',
      NODE_IP,
      '--port',
      String(WEBHOOK.port),
      '--health-port',
      '8080',
      '--drain-delay',
      '0',
    ]);
    await until(
      'the webhook listening',
      async () => {
        if (webhook.child.exitCode !== null) throw new Error(readFileSync(webhook.logPath, 'utf8').slice(-2000));
        return readFileSync(webhook.logPath, 'utf8').includes('"listening"');
      },
      30_000,
    );
    log(`webhook listening on ${NODE_IP}:${WEBHOOK.port} inside the cluster's network namespace`);

    await core.createNamespace({ body: { metadata: { name: WEBHOOK.namespace } } });
    await core.createNamespacedService({
      namespace: WEBHOOK.namespace,
      body: {
        metadata: { name: WEBHOOK.service },
        spec: { ports: [{ name: 'https', port: 443, targetPort: WEBHOOK.port as never }] },
      },
    });
    // No selector: the webhook is not a pod here, so its endpoint is written by hand, as for any
    // backend outside the cluster's pods.
    await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace: WEBHOOK.namespace,
      body: {
        metadata: { name: WEBHOOK.service, labels: { 'kubernetes.io/service-name': WEBHOOK.service } },
        addressType: 'IPv4',
        endpoints: [{ addresses: [NODE_IP], conditions: { ready: true } }],
        ports: [{ name: 'https', port: WEBHOOK.port, protocol: 'TCP' }],
      },
    });
    const configuration = webhookConfiguration({
      name: 'acr-pull-webhook',
      port: 0,
      caPem: cluster.caPem,
      failurePolicy: 'Fail',
    });
    for (const hook of configuration.webhooks ?? []) {
      hook.clientConfig = {
        service: { namespace: WEBHOOK.namespace, name: WEBHOOK.service, path: MUTATE_PATH, port: 443 },
        caBundle: Buffer.from(cluster.caPem).toString('base64'),
      };
    }
    await kc.makeApiClient(AdmissionregistrationV1Api).createMutatingWebhookConfiguration({ body: configuration });
    log(`Service ${WEBHOOK.namespace}/${WEBHOOK.service} and the MutatingWebhookConfiguration registered`);

    sync = await startSyncWatcher({
      config: configPath,
      kubeconfig: cluster.kubeconfigPath,
      leaseNamespace: WEBHOOK.namespace,
      identity: 'node-e2e',
      args: ['--resync-period', '30'],
    });
    log('sync-secrets --watch running');

    // Failure policy Fail: once a dry-run pod comes back patched, the whole path works.
    const probe = `probe-${Date.now().toString(36)}`;
    await createOptedInNamespace(cluster, probe);
    await until(
      'the webhook patching pods through its Service',
      async () => {
        const pod = await core.createNamespacedPod({
          namespace: probe,
          dryRun: 'All',
          body: {
            metadata: { generateName: 'probe-' },
            spec: { containers: [{ name: 'c', image: IMAGES[0] as string }] },
          },
        });
        return (pod.spec?.imagePullSecrets ?? []).length > 0;
      },
      60_000,
    );
    await core.deleteNamespace({ name: probe });
    log('the apiserver calls the webhook through its Service');
    return { volumes, configPath, webhookLogPath: webhook.logPath, stopSync, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
