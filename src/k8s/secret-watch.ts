// Drift detection without a read storm: one cluster-wide list+watch of Secrets per configured name
// (fieldSelector=metadata.name=<name>, which RBAC allows with resourceNames and no general read of
// Secrets) keeps a cache of exactly the Secrets sync-secrets owns or would own. A change or deletion
// by anyone is reported at once, and reads come from the cache once it is listed, so a periodic
// resync costs no request at all. A write that loses a race (409) makes the next read of that Secret
// go to the apiserver, as the cache may not have seen the winning write yet.
import type { KubeConfig, V1ObjectMeta } from '@kubernetes/client-node';
import type { Backoff } from './backoff.ts';
import { KubeApiError } from './errors.ts';
import { Interner } from './intern.ts';
import type { RawRequest } from './client.ts';
import { listAll, ListWatcher, rawPager } from './list-watch.ts';
import type { SecretObject } from './secret-object.ts';
import type { SecretStore } from './secrets.ts';

export interface SecretWatchOptions {
  /** Lists go through it (KubeClients.raw); the watches through `kubeConfig`. */
  readonly raw: RawRequest;
  readonly kubeConfig: KubeConfig;
  /** The configured secret names: one watch each (a field selector cannot name two). */
  readonly names: readonly string[];
  /** A Secret of one of the names changed, appeared or disappeared (undefined) in a namespace. */
  readonly onChange: (namespace: string, name: string, secret: SecretObject | undefined) => void;
  readonly onError: (message: string) => void;
  readonly watchTimeoutSeconds: number;
  readonly backoff: Backoff;
}

const key = (namespace: string, name: string): string => `${namespace}/${name}`;

/** Every namespace's Secrets, by name: the collection a field selector on the name narrows to one name's. */
const SECRETS_PATH = '/api/v1/secrets';
const nameSelector = (name: string): string => `metadata.name=${name}`;
const byName = (raw: RawRequest, name: string) => rawPager<SecretObject>(raw, SECRETS_PATH, nameSelector(name));

const interner = new Interner();

const allDefined = <T extends object>(values: T): values is { [K in keyof T]: NonNullable<T[K]> } =>
  Object.values(values).every((value) => value !== undefined);

/**
 * What the plan reads and an update writes back, and nothing the apiserver ignores on a PUT: managedFields (most of a
 * Secret's metadata), creationTimestamp, selfLink, apiVersion and kind (the path says
 * them) are dropped; the name, type, and the label, annotation and data maps most Secrets share are one copy each.
 * Others' labels and annotations, ownerReferences and finalizers stay, so an update keeps them. Exported for its test.
 */
export function cachedSecret(secret: SecretObject): SecretObject {
  const {
    managedFields: _managedFields,
    creationTimestamp: _creationTimestamp,
    selfLink: _selfLink,
    name,
    namespace,
    uid,
    resourceVersion,
    labels,
    annotations,
    ...others
  } = (secret.metadata ?? {}) as V1ObjectMeta;
  const { apiVersion: _apiVersion, kind: _kind, metadata: _metadata, type, data, ...rest } = secret as SecretObject;
  const core = { name, namespace, uid, resourceVersion, labels, annotations, type, data };
  // Ours (every field present) as one object literal, its properties inside the object: added one by one they would
  // need a property array each. Anything else the Secret carries comes after.
  const kept: SecretObject = allDefined(core)
    ? {
        metadata: {
          name: interner.string(core.name),
          namespace: core.namespace,
          uid: core.uid,
          resourceVersion: core.resourceVersion,
          labels: interner.map(core.labels),
          annotations: interner.map(core.annotations),
          ...others,
        },
        type: interner.string(core.type),
        data: interner.map(core.data),
      }
    : {
        metadata: {
          ...(name === undefined ? {} : { name: interner.string(name) }),
          ...(namespace === undefined ? {} : { namespace }),
          ...(uid === undefined ? {} : { uid }),
          ...(resourceVersion === undefined ? {} : { resourceVersion }),
          ...(labels === undefined ? {} : { labels: interner.map(labels) }),
          ...(annotations === undefined ? {} : { annotations: interner.map(annotations) }),
          ...others,
        },
        ...(type === undefined ? {} : { type: interner.string(type) }),
        ...(data === undefined ? {} : { data: interner.map(data) }),
      };
  return Object.keys(rest).length === 0 ? kept : { ...kept, ...rest };
}

/**
 * Reads from `lookup` when it knows the answer ({ secret: undefined } is "absent"), else from `live`; a write that
 * loses a race (409) makes the next read of that Secret go to `live`, as the cache may not show the winner yet.
 */
function cachedStore(
  live: SecretStore,
  readLive: Set<string>,
  lookup: (namespace: string, name: string) => { secret: SecretObject | undefined } | undefined,
): SecretStore {
  const raced = async <T>(namespace: string, name: string, write: () => Promise<T>): Promise<T> => {
    try {
      return await write();
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 409) readLive.add(key(namespace, name));
      throw error;
    }
  };
  return {
    get: async (namespace, name) => {
      const known = lookup(namespace, name);
      if (known === undefined || readLive.delete(key(namespace, name))) return live.get(namespace, name);
      return known.secret;
    },
    create: (namespace, secret) => raced(namespace, secret.metadata?.name ?? '', () => live.create(namespace, secret)),
    replace: (namespace, name, secret) => raced(namespace, name, () => live.replace(namespace, name, secret)),
    delete: (namespace, name, preconditions) =>
      raced(namespace, name, () => live.delete(namespace, name, preconditions)),
  };
}

/**
 * --once: the Secrets of the configured names, listed cluster-wide once (500 a request instead of a GET each), answer
 * the reads. A list the RBAC refuses (a ClusterRole from before list and watch by name) falls back to a GET per
 * Secret, after `onFallback` says why.
 */
export async function listedSecretStore(
  raw: RawRequest,
  names: readonly string[],
  live: SecretStore,
  onFallback: (message: string) => void,
): Promise<SecretStore> {
  const snapshot = new Map<string, SecretObject>();
  try {
    const lists = [...new Set(names)].map(async (name) => {
      const { items } = await listAll(`secrets named ${name}`, byName(raw, name), cachedSecret);
      for (const secret of items) snapshot.set(key(secret.metadata?.namespace ?? '', name), secret);
    });
    await Promise.all(lists);
  } catch (error) {
    if (!(error instanceof KubeApiError && error.status === 403)) throw error;
    onFallback(error.message);
    return live;
  }
  const listed = new Set(names);
  return cachedStore(live, new Set(), (namespace, name) =>
    listed.has(name) ? { secret: snapshot.get(key(namespace, name)) } : undefined,
  );
}

export class SecretWatch {
  private readonly options: SecretWatchOptions;
  private readonly watchers = new Map<string, ListWatcher<SecretObject, SecretObject>>();
  /** Per name: namespace → Secret. */
  private readonly cache = new Map<string, Map<string, SecretObject>>();
  /** Secrets whose next read goes to the apiserver (a write of ours lost a race the cache may not show yet). */
  private readonly readLive = new Set<string>();

  constructor(options: SecretWatchOptions) {
    this.options = options;
    for (const name of new Set(options.names)) {
      const entries = new Map<string, SecretObject>();
      this.cache.set(name, entries);
      const watcher = new ListWatcher<SecretObject, SecretObject>({
        kubeConfig: options.kubeConfig,
        what: `secrets named ${name}`,
        path: SECRETS_PATH,
        fieldSelector: nameSelector(name),
        list: byName(options.raw, name),
        convert: cachedSecret,
        handlers: {
          onList: (secrets) => this.relisted(name, entries, secrets),
          onUpsert: (secret) => this.upsert(name, entries, secret),
          onDelete: (secret) => {
            const namespace = secret.metadata?.namespace ?? '';
            entries.delete(namespace);
            options.onChange(namespace, name, undefined);
          },
          onError: options.onError,
        },
        watchTimeoutSeconds: options.watchTimeoutSeconds,
        backoff: options.backoff,
      });
      this.watchers.set(name, watcher);
    }
  }

  start(): void {
    for (const watcher of this.watchers.values()) watcher.start();
  }

  stop(): void {
    for (const watcher of this.watchers.values()) watcher.stop();
  }

  /** Every name's first list has completed. */
  hasSynced(): boolean {
    return [...this.watchers.values()].every((watcher) => watcher.hasSynced());
  }

  /** The oldest of the watches' last progress (epoch ms), for liveness: one stalled watch is enough to fail. */
  lastProgressAt(): number {
    return Math.min(...[...this.watchers.values()].map((watcher) => watcher.lastProgressAt()));
  }

  /** Secrets held, across names. */
  size(): number {
    let total = 0;
    for (const entries of this.cache.values()) total += entries.size;
    return total;
  }

  /**
   * A SecretStore that reads from the cache once that name is listed, and from `live` before (or
   * after a 409); writes go to `live`.
   */
  store(live: SecretStore): SecretStore {
    return cachedStore(live, this.readLive, (namespace, name) =>
      this.watchers.get(name)?.hasSynced() === true ? { secret: this.cache.get(name)?.get(namespace) } : undefined,
    );
  }

  private upsert(name: string, entries: Map<string, SecretObject>, secret: SecretObject): void {
    const namespace = secret.metadata?.namespace ?? '';
    entries.set(namespace, secret);
    this.options.onChange(namespace, name, secret);
  }

  /** After a (re)list anything may have changed unseen: report what differs from the cache. */
  private relisted(name: string, entries: Map<string, SecretObject>, secrets: readonly SecretObject[]): void {
    const before = new Map(entries);
    entries.clear();
    for (const secret of secrets) {
      const namespace = secret.metadata?.namespace ?? '';
      entries.set(namespace, secret);
      const old = before.get(namespace);
      before.delete(namespace);
      if (old?.metadata?.resourceVersion !== secret.metadata?.resourceVersion)
        this.options.onChange(namespace, name, secret);
    }
    for (const namespace of before.keys()) this.options.onChange(namespace, name, undefined);
  }
}
