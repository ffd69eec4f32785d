// Secret reads and writes, one object by name at a time: sync-secrets is allowed to get, update
// and delete only the configured names (RBAC resourceNames); it lists and watches them by name
// only (secret-watch.ts), whose cache answers get() in --watch.
import type { RawRequest } from './client.ts';
import type { SecretObject } from './secret-object.ts';
import { rawFailure, toKubeApiError } from './errors.ts';

export interface SecretStore {
  /** The Secret, or undefined when it does not exist. */
  get(namespace: string, name: string): Promise<SecretObject | undefined>;
  create(namespace: string, secret: SecretObject): Promise<void>;
  /** PUT with the resourceVersion the object carries: a concurrent change makes it fail with 409. */
  replace(namespace: string, name: string, secret: SecretObject): Promise<void>;
  /** Deletes only the exact object that was read (uid and resourceVersion preconditions). */
  delete(namespace: string, name: string, preconditions: { uid: string; resourceVersion: string }): Promise<void>;
}

/**
 * The store on `raw` (KubeClients.raw): our JSON out, only the status read back on a write (the Secret the
 * apiserver returns is not used), a plain object on a read, without client-node's ObjectSerializer (about 13 % of
 * a cold --once's CPU).
 */
export function secretStore(raw: RawRequest): SecretStore {
  return rawSecretStore(raw);
}

const secretPath = (namespace: string, name?: string): string => {
  const collection = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
  return name === undefined ? collection : `${collection}/${encodeURIComponent(name)}`;
};

function rawSecretStore(raw: RawRequest): SecretStore {
  const write = async (
    what: string,
    method: 'POST' | 'PUT' | 'DELETE',
    path: string,
    body: unknown,
    tolerate404: boolean,
  ): Promise<void> => {
    try {
      const response = await raw(method, path, JSON.stringify(body));
      if (response.status >= 200 && response.status < 300) return;
      if (tolerate404 && response.status === 404) return;
      throw rawFailure(response);
    } catch (error) {
      throw toKubeApiError(error, what);
    }
  };
  return {
    async get(namespace, name) {
      try {
        const response = await raw('GET', secretPath(namespace, name));
        if (response.status === 404) return undefined;
        if (response.status !== 200) throw rawFailure(response);
        return JSON.parse(response.body.toString('utf8')) as SecretObject;
      } catch (error) {
        throw toKubeApiError(error, `get secret ${namespace}/${name}`);
      }
    },
    create: (namespace, secret) =>
      write(`create secret ${namespace}/${secret.metadata?.name ?? ''}`, 'POST', secretPath(namespace), secret, false),
    replace: (namespace, name, secret) =>
      write(`update secret ${namespace}/${name}`, 'PUT', secretPath(namespace, name), secret, false),
    delete: (namespace, name, preconditions) =>
      write(`delete secret ${namespace}/${name}`, 'DELETE', secretPath(namespace, name), { preconditions }, true),
  };
}
