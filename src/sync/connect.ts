// sync-secrets' connection to the cluster: the one kubeconfig precedence and the shared clients.
import { makeClients, type KubeClients } from '../k8s/client.ts';
import { loadKubeConfig } from '../k8s/kube-config.ts';
import type { RateLimit } from '../k8s/rate-limit.ts';
import { SYNC_DEFAULTS } from '../constants.ts';

export interface SyncCluster {
  readonly clients: KubeClients;
  /** Where the credentials came from, for logs. */
  readonly source: string;
}

/** `rateLimit`: --kube-api-qps and --kube-api-burst; none (tests): unlimited. */
export function connect(
  kubeconfigFlag: string | undefined,
  env: NodeJS.ProcessEnv,
  rateLimit?: RateLimit,
): SyncCluster {
  const { kubeConfig, source } = loadKubeConfig({ flag: kubeconfigFlag, env });
  const userAgent = `acr-pull-webhook-sync-secrets/${process.version}`;
  const eventsRateLimit = { qps: SYNC_DEFAULTS.eventsQps, burst: SYNC_DEFAULTS.eventsBurst };
  return {
    clients: makeClients(kubeConfig, { userAgent, eventsRateLimit, ...(rateLimit === undefined ? {} : { rateLimit }) }),
    source,
  };
}
