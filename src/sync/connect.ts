// sync-secrets' connection to the cluster: the one kubeconfig precedence and the shared clients.
import { makeClients, type KubeClients } from '../k8s/client.ts';
import { loadKubeConfig } from '../k8s/kube-config.ts';

export interface SyncCluster {
  readonly clients: KubeClients;
  /** Where the credentials came from, for logs. */
  readonly source: string;
}

export function connect(kubeconfigFlag: string | undefined, env: NodeJS.ProcessEnv): SyncCluster {
  const { kubeConfig, source } = loadKubeConfig({ flag: kubeconfigFlag, env });
  return {
    clients: makeClients(kubeConfig, { userAgent: `acr-pull-webhook-sync-secrets/${process.version}` }),
    source,
  };
}
