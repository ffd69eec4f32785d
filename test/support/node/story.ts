// What the node suite's stories share: the pull secrets the release's sync-secrets writes (release.ts
// configures these names), the private test image in each registry, and waiting for both.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api } from '@kubernetes/client-node';
import { INJECT_ENABLED, INJECT_LABEL } from '../../../src/constants.ts';
import { type NodeCluster, REGISTRY_HOSTS, TEST_IMAGE_PATH } from './cluster.ts';

/** The pull secrets sync-secrets writes, one per registry, in configuration order. */
export const SECRET_NAMES = ['acr-e2etest', 'acr-e2etest2'] as const;
/** The private test image in each registry. */
export const IMAGES = REGISTRY_HOSTS.map((host) => `${host}/${TEST_IMAGE_PATH}`);

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
