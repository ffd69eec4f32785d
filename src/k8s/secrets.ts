// Secret reads and writes, one object by name at a time: sync-secrets is allowed to get, update
// and delete only the configured names (RBAC resourceNames); it lists and watches them by name
// only (secret-watch.ts), whose cache answers get() in --watch.
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import type { SecretObject } from './secret-object.ts';
import { toKubeApiError } from './errors.ts';

export interface SecretStore {
  /** The Secret, or undefined when it does not exist. */
  get(namespace: string, name: string): Promise<SecretObject | undefined>;
  create(namespace: string, secret: SecretObject): Promise<void>;
  /** PUT with the resourceVersion the object carries: a concurrent change makes it fail with 409. */
  replace(namespace: string, name: string, secret: SecretObject): Promise<void>;
  /** Deletes only the exact object that was read (uid and resourceVersion preconditions). */
  delete(namespace: string, name: string, preconditions: { uid: string; resourceVersion: string }): Promise<void>;
}

export function secretStore(core: CoreV1Api): SecretStore {
  return {
    async get(namespace, name) {
      try {
        return (await core.readNamespacedSecret({ namespace, name })) as SecretObject;
      } catch (error) {
        const failure = toKubeApiError(error, `get secret ${namespace}/${name}`);
        if (failure.status === 404) return undefined;
        throw failure;
      }
    },
    async create(namespace, secret) {
      try {
        await core.createNamespacedSecret({ namespace, body: secret as V1Secret });
      } catch (error) {
        throw toKubeApiError(error, `create secret ${namespace}/${secret.metadata?.name ?? ''}`);
      }
    },
    async replace(namespace, name, secret) {
      try {
        await core.replaceNamespacedSecret({ namespace, name, body: secret as V1Secret });
      } catch (error) {
        throw toKubeApiError(error, `update secret ${namespace}/${name}`);
      }
    },
    async delete(namespace, name, preconditions) {
      try {
        await core.deleteNamespacedSecret({ namespace, name, body: { preconditions } });
      } catch (error) {
        const failure = toKubeApiError(error, `delete secret ${namespace}/${name}`);
        if (failure.status === 404) return;
        throw failure;
      }
    },
  };
}
