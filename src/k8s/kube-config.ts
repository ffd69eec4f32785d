// Where the API credentials come from, in controller-runtime's order: an explicit --kubeconfig,
// then $KUBECONFIG, then the pod's ServiceAccount (in-cluster), then ~/.kube/config.
import { existsSync, readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { SYNC_ENV } from '../constants.ts';

/** Files the kubelet mounts for a pod's ServiceAccount (projected token, CA, namespace). */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

function inCluster(env: NodeJS.ProcessEnv): boolean {
  return (
    Boolean(env['KUBERNETES_SERVICE_HOST']) &&
    Boolean(env['KUBERNETES_SERVICE_PORT']) &&
    existsSync(`${SERVICE_ACCOUNT_DIR}/token`)
  );
}

export function loadKubeConfig(
  kubeconfigFile: string | undefined,
  env: NodeJS.ProcessEnv,
): { kubeConfig: KubeConfig; source: string } {
  const kubeConfig = new KubeConfig();
  let source: string;
  try {
    if (kubeconfigFile !== undefined) {
      kubeConfig.loadFromFile(kubeconfigFile);
      source = kubeconfigFile;
    } else if (env[SYNC_ENV.kubeconfig]) {
      kubeConfig.loadFromDefault();
      source = `$${SYNC_ENV.kubeconfig} (${env[SYNC_ENV.kubeconfig]})`;
    } else if (inCluster(env)) {
      kubeConfig.loadFromCluster();
      source = 'in-cluster ServiceAccount';
    } else {
      kubeConfig.loadFromDefault();
      source = '~/.kube/config';
    }
  } catch (error) {
    throw new KubeConfigError(`kubeconfig: cannot be loaded: ${(error as Error).message.split('\n')[0] ?? 'error'}`);
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (
    cluster === null ||
    cluster.server === '' ||
    (source === '~/.kube/config' && cluster.server === 'http://localhost:8080')
  ) {
    throw new KubeConfigError(
      'kubeconfig: no cluster to talk to: run in a pod, set KUBECONFIG or pass --kubeconfig FILE',
    );
  }
  return { kubeConfig, source };
}

/** The pod's own namespace when running in a cluster (the default home of the Lease). */
export function inClusterNamespace(): string | undefined {
  try {
    return readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
