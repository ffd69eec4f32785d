// Creates pods at a steady rate and records every outcome, so a rotation can be judged by its
// failed admissions. Creates are fired on a clock, not one after another, so a slow answer does not
// lower the rate (in-flight creates are capped so a stuck apiserver cannot pile up thousands).
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';

export interface Admission {
  readonly startedAt: number;
  readonly endedAt: number;
  /** The imagePullSecrets names of the stored pod, or the error that failed the create. */
  readonly outcome:
    | { readonly ok: true; readonly pullSecrets: readonly string[] }
    | { readonly ok: false; readonly error: string };
}

export interface PodLoad {
  /** Outcomes so far, in completion order. */
  readonly admissions: readonly Admission[];
  /** Stops creating and waits for the creates in flight. */
  stop(): Promise<readonly Admission[]>;
}

export function startPodLoad(
  kc: KubeConfig,
  namespace: string,
  pod: V1Pod,
  perSecond: number,
  maxInFlight = 20,
): PodLoad {
  const core = kc.makeApiClient(CoreV1Api);
  const admissions: Admission[] = [];
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  const createOne = async (): Promise<void> => {
    const startedAt = Date.now();
    try {
      const stored = await core.createNamespacedPod({ namespace, body: pod });
      const pullSecrets = (stored.spec?.imagePullSecrets ?? []).map((entry) => entry.name ?? '');
      admissions.push({ startedAt, endedAt: Date.now(), outcome: { ok: true, pullSecrets } });
    } catch (error) {
      const body = (error as { body?: unknown }).body;
      admissions.push({
        startedAt,
        endedAt: Date.now(),
        outcome: { ok: false, error: typeof body === 'string' ? body : String(error) },
      });
    }
  };
  const loop = (async () => {
    const period = 1000 / perSecond;
    let next = Date.now();
    while (!stopped) {
      if (inFlight.size < maxInFlight) {
        const created = createOne();
        inFlight.add(created);
        void created.finally(() => inFlight.delete(created));
      }
      next += period;
      await sleep(Math.max(0, next - Date.now()));
    }
  })();
  return {
    admissions,
    async stop() {
      stopped = true;
      await loop;
      await Promise.all(inFlight);
      return admissions;
    },
  };
}
