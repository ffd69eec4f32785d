// List + watch of Namespaces (list-watch.ts does the listing, watching and recovering): the view of
// which namespaces are opted in, for sync-secrets, check-injection and doctor.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Backoff } from './backoff.ts';
import type { RawRequest } from './client.ts';
import { Interner } from './intern.ts';
import { listAll, listEach, type ListPager, ListWatcher, rawPager } from './list-watch.ts';

/** What is read of a core/v1 Namespace, as the apiserver's JSON has it (lists and watch events alike). */
export interface NamespaceObject {
  readonly metadata?: {
    readonly name?: string;
    readonly uid?: string;
    readonly resourceVersion?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly deletionTimestamp?: string;
    readonly [other: string]: unknown;
  };
  readonly status?: { readonly phase?: string };
}

const NAMESPACES_PATH = '/api/v1/namespaces';

export interface NamespaceInfo {
  readonly name: string;
  /** For references to the Namespace object (Events' regarding); absent in hand-made test values. */
  readonly uid?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Being deleted: nothing new can be created in it. */
  readonly terminating: boolean;
}

export interface NamespaceWatchHandlers {
  /** The complete set after every (re)list. */
  onList(namespaces: readonly NamespaceInfo[]): void;
  onUpsert(namespace: NamespaceInfo): void;
  onDelete(name: string): void;
  /** A list or watch failed; the watcher retries by itself. */
  onError(message: string): void;
}

export interface NamespaceWatcherOptions {
  /** Lists go through it (KubeClients.raw); the watch through `kubeConfig`. */
  readonly raw: RawRequest;
  readonly kubeConfig: KubeConfig;
  readonly handlers: NamespaceWatchHandlers;
  /** Server-side timeout of one watch request, jittered up to +20%. */
  readonly watchTimeoutSeconds: number;
  /** Delays before a failed list or watch is retried; back to the first after any progress. */
  readonly backoff: Backoff;
}

const interner = new Interner();

/**
 * Kept for every namespace in the cluster, so only what is read: a label value equal to the name (the apiserver's
 * own name label) is the name's string, and values many namespaces share (the opt-in's) are one copy.
 */
export function namespaceInfo(namespace: NamespaceObject): NamespaceInfo {
  const name = namespace.metadata?.name ?? '';
  // A copy of the same shape (a spread), whose values are then swapped in place.
  const labels: Record<string, string> = { ...namespace.metadata?.labels };
  for (const [key, value] of Object.entries(labels)) labels[key] = value === name ? name : interner.string(value);
  return {
    name,
    ...(namespace.metadata?.uid === undefined ? {} : { uid: namespace.metadata.uid }),
    labels,
    terminating: namespace.metadata?.deletionTimestamp !== undefined || namespace.status?.phase === 'Terminating',
  };
}

/** Runs one request: as is, or with retries around it (--once: the write backoff). */
export type Attempt = <T>(request: () => Promise<T>) => Promise<T>;

const namespacePager = (raw: RawRequest, attempt: Attempt): ListPager<NamespaceObject> => {
  const pager = rawPager<NamespaceObject>(raw, NAMESPACES_PATH);
  return (page) => attempt(() => pager(page));
};

/** Every namespace, page by page (a continue token that expires restarts the list), each page by `attempt`. */
export async function listNamespaces(
  raw: RawRequest,
  attempt: Attempt = (request) => request(),
): Promise<{ namespaces: NamespaceInfo[]; resourceVersion: string }> {
  const { items, resourceVersion } = await listAll('namespaces', namespacePager(raw, attempt), namespaceInfo);
  return { namespaces: items, resourceVersion };
}

/** Every namespace as its page arrives (listEach: after an expired continue token some come again). */
export function eachNamespace(
  raw: RawRequest,
  attempt: Attempt = (request) => request(),
): AsyncGenerator<NamespaceInfo> {
  return listEach('namespaces', namespacePager(raw, attempt), namespaceInfo);
}

export class NamespaceWatcher extends ListWatcher<NamespaceObject, NamespaceInfo> {
  constructor(options: NamespaceWatcherOptions) {
    const { handlers } = options;
    super({
      kubeConfig: options.kubeConfig,
      what: 'namespaces',
      path: NAMESPACES_PATH,
      list: rawPager<NamespaceObject>(options.raw, NAMESPACES_PATH),
      convert: namespaceInfo,
      handlers: { ...handlers, onDelete: (namespace) => handlers.onDelete(namespace.name) },
      watchTimeoutSeconds: options.watchTimeoutSeconds,
      backoff: options.backoff,
    });
  }
}
