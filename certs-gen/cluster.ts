// Cluster I/O for the create and patch verbs, over the shared Kubernetes access layer (src/k8s: one
// kubeconfig loader, one client, one request timeout, one error type): the four calls they make,
// each failure turned into one line that names what was being done (verb, resource, name) and what
// went wrong. Nothing here decides anything.
import {
  PatchStrategy,
  setHeaderOptions,
  type V1MutatingWebhookConfiguration,
  type V1Secret,
} from '@kubernetes/client-node';
import { makeClients, REQUEST_TIMEOUT_MS } from '../src/k8s/client.ts';
import { toKubeApiError, type KubeApiError } from '../src/k8s/errors.ts';
import type { KubeConfigSource } from '../src/k8s/kube-config.ts';

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

export function connect(source: KubeConfigSource): Cluster {
  const { core, admission, server } = makeClients(source.kubeConfig, { userAgent: `certs-gen/${process.version}` });
  const call = async <T>(what: Request, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (error) {
      throw describeFailure(error, what, server, source.source);
    }
  };
  return {
    server,
    async readSecret(namespace, name) {
      try {
        return await call({ verb: 'get', resource: 'secrets', name, namespace }, () =>
          core.readNamespacedSecret({ namespace, name }),
        );
      } catch (error) {
        if (error instanceof NotFound) return undefined;
        throw error;
      }
    },
    async createSecret(secret) {
      const namespace = secret.metadata?.namespace ?? '';
      try {
        return await call({ verb: 'create', resource: 'secrets', name: secret.metadata?.name ?? '', namespace }, () =>
          core.createNamespacedSecret({ namespace, body: secret }),
        );
      } catch (error) {
        if (error instanceof NotFound) throw new ClusterError(`namespace "${namespace}" not found at ${server}`);
        throw error;
      }
    },
    replaceSecret(secret) {
      const namespace = secret.metadata?.namespace ?? '';
      const name = secret.metadata?.name ?? '';
      return call({ verb: 'update', resource: 'secrets', name, namespace }, () =>
        core.replaceNamespacedSecret({ namespace, name, body: secret }),
      );
    },
    async readWebhookConfiguration(name) {
      try {
        return await call({ verb: 'get', resource: 'mutatingwebhookconfigurations', name }, () =>
          admission.readMutatingWebhookConfiguration({ name }),
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
      return call({ verb: 'patch', resource: 'mutatingwebhookconfigurations', name }, () =>
        admission.patchMutatingWebhookConfiguration(
          { name, body },
          setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
        ),
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
  const where = request.namespace === undefined ? '' : ` in namespace "${request.namespace}"`;
  const target = `${request.resource} "${request.name}"${where}`;
  const failure: KubeApiError = toKubeApiError(error, `${request.verb} ${target}`);
  const status = failure.status;
  if (status === undefined) {
    const why = failure.timedOut
      ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
      : (failure.transport ?? failure.message);
    return new ClusterError(`cannot reach the Kubernetes API at ${server} (${request.verb} ${target}): ${why}`, {
      cause: failure,
    });
  }
  const message = failure.apiMessage ?? failure.reason ?? 'no message';
  if (status === 409) return new ConflictError(`${request.verb} ${target}: conflict: ${message}`, { cause: failure });
  if (status === 404) return new NotFound(`${request.verb} ${target}: not found`, { cause: failure });
  if (status === 401)
    return new ClusterError(
      `the Kubernetes API at ${server} rejected the credentials from ${credentials} (401 Unauthorized)`,
      { cause: failure },
    );
  if (status === 403) {
    const user = /User "([^"]*)"/.exec(message)?.[1];
    const who = user === undefined ? 'these credentials' : `"${user}"`;
    // The OwnerReferencesPermissionEnforcement admission plugin (off by default; on in OpenShift)
    // lets only whoever may delete an object set its ownerReferences.
    if (message.includes('cannot set an ownerRef')) {
      return new ClusterError(
        `forbidden (403): ${who} may not set the ownerReferences of ${target}: ` +
          `the OwnerReferencesPermissionEnforcement admission plugin also requires verb "delete" on ` +
          `${request.resource} (see certs-gen/README.md, RBAC)`,
        { cause: failure },
      );
    }
    return new ClusterError(
      `forbidden (403): ${who} may not ${request.verb} ${target}; ` +
        `grant verb "${request.verb}" on ${request.resource} (see deploy/rbac/certs-gen.yaml)`,
      { cause: failure },
    );
  }
  return new ClusterError(`${request.verb} ${target}: HTTP ${status}: ${message}`, { cause: failure });
}
