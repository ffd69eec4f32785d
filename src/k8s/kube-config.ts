// Where the API credentials come from, for sync-secrets and certs-gen alike, in controller-runtime's
// order: --kubeconfig, then every file of $KUBECONFIG merged as kubectl merges them, then the pod's
// ServiceAccount (in-cluster), then ~/.kube/config. client-node's loadFromDefault is not used: it
// throws on a name two files define, lets the last file's current-context win, and fails on a missing
// file, where kubectl keeps the first definition and current-context and skips missing files.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { isIPv6 } from 'node:net';
import { KubeConfig, type Cluster, type Context, type User } from '@kubernetes/client-node';
import { SYNC_ENV } from '../constants.ts';
import { oneLine } from './errors.ts';

/** Files the kubelet mounts for a pod's ServiceAccount (projected token, CA, namespace). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeConfigError extends Error {
  override name = 'KubeConfigError';
}

export interface KubeConfigSource {
  readonly kubeConfig: KubeConfig;
  /** Where the credentials came from, for messages: "kubeconfig FILE", "the in-cluster ServiceAccount". */
  readonly source: string;
}

export interface KubeConfigInputs {
  /** --kubeconfig, when given. */
  readonly flag: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** Where the ServiceAccount files are; tests point it elsewhere. */
  readonly serviceAccountDir?: string;
}

export function loadKubeConfig(inputs: KubeConfigInputs): KubeConfigSource {
  const { flag, env } = inputs;
  const serviceAccountDir = inputs.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const loaded = ((): KubeConfigSource => {
    if (flag !== undefined) return { kubeConfig: readFile(flag), source: `kubeconfig ${flag}` };
    const list = (env[SYNC_ENV.kubeconfig] ?? '').split(delimiter).filter((file) => file !== '');
    if (list.length > 0) return { kubeConfig: merge(list), source: `kubeconfig ${list.join(delimiter)} (KUBECONFIG)` };
    if (
      env['KUBERNETES_SERVICE_HOST'] &&
      env['KUBERNETES_SERVICE_PORT'] &&
      existsSync(join(serviceAccountDir, 'token'))
    )
      return { kubeConfig: inCluster(env, serviceAccountDir), source: 'the in-cluster ServiceAccount' };
    const home = join(env['HOME'] ?? homedir(), '.kube', 'config');
    if (existsSync(home)) return { kubeConfig: readFile(home), source: `kubeconfig ${home}` };
    throw new KubeConfigError(
      'no cluster credentials: not running in a cluster, and neither --kubeconfig, KUBECONFIG nor ~/.kube/config',
    );
  })();
  const cluster = loaded.kubeConfig.getCurrentCluster();
  if (cluster === null || cluster.server === '')
    throw new KubeConfigError(`${loaded.source} has no current context with a cluster`);
  return loaded;
}

/** One file; relative certificate paths resolve against its directory. */
function readFile(file: string): KubeConfig {
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromFile(file);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new KubeConfigError(`cannot load kubeconfig ${file}: ${oneLine(message)}`);
  }
  return kubeConfig;
}

/**
 * kubectl's merge of a KUBECONFIG list: files that do not exist are skipped; for clusters, users and
 * contexts the first file to define a name wins; current-context comes from the first file that sets it.
 */
function merge(files: readonly string[]): KubeConfig {
  const present = files.filter((file) => existsSync(file));
  if (present.length === 0)
    throw new KubeConfigError(`cannot load kubeconfig: no file in KUBECONFIG exists (${files.join(delimiter)})`);
  const clusters = new Map<string, Cluster>();
  const users = new Map<string, User>();
  const contexts = new Map<string, Context>();
  let currentContext = '';
  for (const file of present) {
    const one = readFile(file);
    for (const cluster of one.getClusters()) if (!clusters.has(cluster.name)) clusters.set(cluster.name, cluster);
    for (const user of one.getUsers()) if (!users.has(user.name)) users.set(user.name, user);
    for (const context of one.getContexts()) if (!contexts.has(context.name)) contexts.set(context.name, context);
    if (currentContext === '') currentContext = one.getCurrentContext() ?? '';
  }
  const merged = new KubeConfig();
  merged.loadFromOptions({
    clusters: [...clusters.values()],
    users: [...users.values()],
    contexts: [...contexts.values()],
    currentContext,
  });
  return merged;
}

/** As client-node's loadFromCluster, but from the environment given (a test's, not the process's). */
function inCluster(env: NodeJS.ProcessEnv, dir: string): KubeConfig {
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [
      {
        name: 'inCluster',
        server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
        caFile: join(dir, 'ca.crt'),
        skipTLSVerify: false,
      },
    ],
    // Re-read as the kubelet rotates the projected token.
    users: [{ name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile: join(dir, 'token') } } }],
    contexts: [{ name: 'inClusterContext', cluster: 'inCluster', user: 'inClusterUser' }],
    currentContext: 'inClusterContext',
  });
  return kubeConfig;
}

/** The pod's own namespace when running in a cluster (the default home of the Lease). */
export function inClusterNamespace(serviceAccountDir: string = SERVICE_ACCOUNT_DIR): string | undefined {
  try {
    return readFileSync(join(serviceAccountDir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
