// Cluster I/O for the create and patch verbs, over @kubernetes/client-node: the four calls they
// make, each bounded in time, and every failure turned into one line that names what was being
// done (verb, resource, name) and what went wrong. Nothing here decides anything.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  KubeConfig,
  Observable,
  PatchStrategy,
  setHeaderOptions,
  type ConfigurationOptions,
  type ObservableMiddleware,
  type V1MutatingWebhookConfiguration,
  type V1Secret,
} from '@kubernetes/client-node';

/** One API call must not hang a CronJob run forever on a black-holed connection. */
export const REQUEST_TIMEOUT_MS = 15_000;

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** The object changed since it was read (HTTP 409): read again and decide again. */
export class ConflictError extends Error {
  override name = 'ConflictError';
}

/** A failed API call, described in one line. */
export class ClusterError extends Error {
  override name = 'ClusterError';
}

/** The named MutatingWebhookConfiguration does not exist. */
export class WebhookConfigurationNotFound extends ClusterError {
  override name = 'WebhookConfigurationNotFound';
}

export interface CaBundleChange {
  readonly webhook: string;
  readonly caBundle: string;
}

export interface Cluster {
  /** The API server URL, for messages. */
  readonly server: string;
  /** undefined when there is no such Secret. */
  readSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
  /** ConflictError when it exists already (another run created it first). */
  createSecret(secret: V1Secret): Promise<V1Secret>;
  /** ConflictError when its resourceVersion is no longer current. */
  replaceSecret(secret: V1Secret): Promise<V1Secret>;
  /** WebhookConfigurationNotFound naming the configuration when there is none. */
  readWebhookConfiguration(name: string): Promise<V1MutatingWebhookConfiguration>;
  /** Sets caBundle of the named webhooks; ConflictError when resourceVersion is no longer current. */
  patchCaBundles(
    name: string,
    resourceVersion: string,
    changes: readonly CaBundleChange[],
  ): Promise<V1MutatingWebhookConfiguration>;
}

export interface KubeConfigSource {
  readonly kubeConfig: KubeConfig;
  /** Where the credentials came from, for messages. */
  readonly source: string;
}

/**
 * --kubeconfig when given; otherwise the pod's ServiceAccount when running in a cluster; otherwise
 * KUBECONFIG, then ~/.kube/config.
 */
export function loadKubeConfig(
  kubeconfigFlag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): KubeConfigSource {
  const kubeConfig = new KubeConfig();
  const fromFile = (file: string, source: string): KubeConfigSource => {
    try {
      kubeConfig.loadFromFile(file);
    } catch (error) {
      throw new ClusterError(`cannot load kubeconfig ${file}: ${oneLine(error)}`);
    }
    if (kubeConfig.getCurrentCluster() === null)
      throw new ClusterError(`kubeconfig ${file} has no current context with a cluster`);
    return { kubeConfig, source };
  };
  if (kubeconfigFlag !== undefined) return fromFile(kubeconfigFlag, `kubeconfig ${kubeconfigFlag}`);
  if (env['KUBERNETES_SERVICE_HOST'] !== undefined && existsSync(SERVICE_ACCOUNT_TOKEN)) {
    kubeConfig.loadFromCluster();
    return { kubeConfig, source: 'the in-cluster ServiceAccount' };
  }
  const fromEnv = env['KUBECONFIG']?.split(':').find((file) => file !== '');
  if (fromEnv !== undefined) return fromFile(fromEnv, `kubeconfig ${fromEnv} (KUBECONFIG)`);
  const home = join(env['HOME'] ?? homedir(), '.kube', 'config');
  if (existsSync(home)) return fromFile(home, `kubeconfig ${home}`);
  throw new ClusterError(
    'no cluster credentials: not running in a cluster, and neither --kubeconfig, KUBECONFIG nor ~/.kube/config',
  );
}

export function connect(source: KubeConfigSource): Cluster {
  const { kubeConfig } = source;
  const server = kubeConfig.getCurrentCluster()?.server ?? '(no server)';
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const call = async <T>(
    what: Request,
    run: (options: ConfigurationOptions<ObservableMiddleware>) => Promise<T>,
    options = timeoutOptions(),
  ): Promise<T> => {
    try {
      return await run(options);
    } catch (error) {
      throw describeFailure(error, what, server, source.source);
    }
  };
  return {
    server,
    async readSecret(namespace, name) {
      try {
        return await call({ verb: 'get', resource: 'secrets', name, namespace }, (options) =>
          core.readNamespacedSecret({ namespace, name }, options),
        );
      } catch (error) {
        if (error instanceof NotFound) return undefined;
        throw error;
      }
    },
    async createSecret(secret) {
      const namespace = secret.metadata?.namespace ?? '';
      try {
        return await call(
          { verb: 'create', resource: 'secrets', name: secret.metadata?.name ?? '', namespace },
          (options) => core.createNamespacedSecret({ namespace, body: secret }, options),
        );
      } catch (error) {
        if (error instanceof NotFound) throw new ClusterError(`namespace "${namespace}" not found at ${server}`);
        throw error;
      }
    },
    replaceSecret(secret) {
      const namespace = secret.metadata?.namespace ?? '';
      const name = secret.metadata?.name ?? '';
      return call({ verb: 'update', resource: 'secrets', name, namespace }, (options) =>
        core.replaceNamespacedSecret({ namespace, name, body: secret }, options),
      );
    },
    async readWebhookConfiguration(name) {
      try {
        return await call({ verb: 'get', resource: 'mutatingwebhookconfigurations', name }, (options) =>
          admission.readMutatingWebhookConfiguration({ name }, options),
        );
      } catch (error) {
        if (error instanceof NotFound)
          throw new WebhookConfigurationNotFound(`MutatingWebhookConfiguration "${name}" not found at ${server}`);
        throw error;
      }
    },
    patchCaBundles(name, resourceVersion, changes) {
      // Strategic merge: webhooks merge by name, so only caBundle changes and nothing is addressed by
      // index; resourceVersion makes it conditional (409 if the configuration changed since it was read).
      const body = {
        metadata: { resourceVersion },
        webhooks: changes.map((change) => ({ name: change.webhook, clientConfig: { caBundle: change.caBundle } })),
      };
      return call(
        { verb: 'patch', resource: 'mutatingwebhookconfigurations', name },
        (options) => admission.patchMutatingWebhookConfiguration({ name, body }, options),
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch, timeoutOptions()),
      );
    },
  };
}

interface Request {
  readonly verb: string;
  readonly resource: string;
  readonly name: string;
  readonly namespace?: string;
}

/** 404, kept apart so callers can turn it into "absent" or into their own message. */
class NotFound extends ClusterError {}

/** One line for a failed call: unreachable server, 401, 403 (naming the verb and resource), 404, 409, others. */
export function describeFailure(error: unknown, request: Request, server: string, credentials: string): Error {
  const target = `${request.resource} "${request.name}"${request.namespace === undefined ? '' : ` in namespace "${request.namespace}"`}`;
  if (!(error instanceof ApiException)) {
    return new ClusterError(
      `cannot reach the Kubernetes API at ${server} (${request.verb} ${target}): ${transportReason(error)}`,
    );
  }
  const status = error.code;
  const message = apiMessage(error.body);
  if (status === 409) return new ConflictError(`${request.verb} ${target}: conflict: ${message}`);
  if (status === 404) return new NotFound(`${request.verb} ${target}: not found`);
  if (status === 401)
    return new ClusterError(
      `the Kubernetes API at ${server} rejected the credentials from ${credentials} (401 Unauthorized)`,
    );
  if (status === 403) {
    const user = /User "([^"]*)"/.exec(message)?.[1];
    const who = user === undefined ? 'these credentials' : `"${user}"`;
    // The OwnerReferencesPermissionEnforcement admission plugin (off by default; on in OpenShift)
    // lets only whoever may delete an object set its ownerReferences.
    if (message.includes('cannot set an ownerRef')) {
      return new ClusterError(
        `forbidden (403): ${who} may not set the ownerReferences of ${target}: the OwnerReferencesPermissionEnforcement admission plugin also requires verb "delete" on ${request.resource} (see certs-gen/README.md, RBAC)`,
      );
    }
    return new ClusterError(
      `forbidden (403): ${who} may not ${request.verb} ${target}; grant verb "${request.verb}" on ${request.resource} (see deploy/rbac/certs-gen.yaml)`,
    );
  }
  return new ClusterError(`${request.verb} ${target}: HTTP ${status}: ${message}`);
}

function apiMessage(body: unknown): string {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body) as unknown;
    } catch {
      return oneLine(body);
    }
  }
  const message = (parsed as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? oneLine(message) : oneLine(JSON.stringify(parsed));
}

// undici reports "fetch failed" and hides the reason in `cause` (ECONNREFUSED, ENOTFOUND, a TLS error).
function transportReason(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = error instanceof Error ? (error.cause as (Error & { code?: string }) | undefined) : undefined;
  if (cause instanceof Error)
    return oneLine(
      cause.code !== undefined && !cause.message.includes(cause.code)
        ? `${cause.code}: ${cause.message}`
        : cause.message,
    );
  return oneLine(error);
}

function timeoutOptions(): ConfigurationOptions<ObservableMiddleware> {
  const timeout: ObservableMiddleware = {
    pre: (context) => {
      context.setSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS));
      return new Observable(Promise.resolve(context));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [timeout], middlewareMergeStrategy: 'append' };
}

function oneLine(value: unknown): string {
  return (value instanceof Error ? value.message : String(value)).replaceAll(/\s*\n\s*/g, ' ');
}
