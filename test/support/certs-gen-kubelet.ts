// Plays the kubelet for a Secret volume that mounts only tls.crt and tls.key (`items`, as the
// webhook's Deployment does): polls the Secret and, when those bytes change, swaps them into a
// SecretVolume in one atomic `..data` symlink swap. The real kubelet takes up to about a minute;
// this one takes at most `intervalMs`, which only makes a wrong order of operations show sooner.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { SecretVolume } from './secret-volume.ts';

export interface SecretVolumeSync {
  readonly volume: SecretVolume;
  /** Swaps done after the first write. */
  updates(): number;
  /** Resolves once the volume holds the Secret's current tls.crt. */
  caughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function syncSecretVolume(
  kc: KubeConfig,
  namespace: string,
  name: string,
  intervalMs = 250,
): Promise<SecretVolumeSync> {
  const core = kc.makeApiClient(CoreV1Api);
  const read = async (): Promise<Record<'tls.crt' | 'tls.key', string>> => {
    const secret = await core.readNamespacedSecret({ namespace, name });
    const text = (key: string) => Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
    return { 'tls.crt': text('tls.crt'), 'tls.key': text('tls.key') };
  };
  let current = await read();
  const volume = new SecretVolume(current);
  let updates = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sleep(intervalMs);
      const next = await read().catch(() => current);
      if (next['tls.crt'] !== current['tls.crt'] || next['tls.key'] !== current['tls.key']) {
        volume.update(next);
        current = next;
        updates++;
      }
    }
  })();
  return {
    volume,
    updates: () => updates,
    async caughtUp(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const wanted = await read();
        if (wanted['tls.crt'] === current['tls.crt']) return;
        if (Date.now() > deadline)
          throw new Error(`Secret volume for ${namespace}/${name} not updated within ${timeoutMs} ms`);
        await sleep(intervalMs / 2);
      }
    },
    async stop() {
      stopped = true;
      await loop;
      volume.remove();
    },
  };
}
