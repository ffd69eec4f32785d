// List + watch of Namespaces (list-watch.ts does the listing, watching and recovering): the view of
// which namespaces are opted in, for sync-secrets, check-injection and doctor.
import type { CoreV1Api, KubeConfig, V1Namespace } from '@kubernetes/client-node';
import type { Backoff } from './backoff.ts';
import { Interner } from './intern.ts';
import { listAll, ListWatcher } from './list-watch.ts';

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
  readonly core: CoreV1Api;
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
export function namespaceInfo(namespace: V1Namespace): NamespaceInfo {
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

/** Every namespace, page by page (a continue token that expires restarts the list). */
export async function listNamespaces(
  core: CoreV1Api,
): Promise<{ namespaces: NamespaceInfo[]; resourceVersion: string }> {
  const { items, resourceVersion } = await listAll('namespaces', (page) => core.listNamespace(page), namespaceInfo);
  return { namespaces: items, resourceVersion };
}

export class NamespaceWatcher extends ListWatcher<V1Namespace, NamespaceInfo> {
  constructor(options: NamespaceWatcherOptions) {
    const { handlers } = options;
    super({
      kubeConfig: options.kubeConfig,
      what: 'namespaces',
      path: '/api/v1/namespaces',
      list: (page) => options.core.listNamespace(page),
      convert: namespaceInfo,
      handlers: { ...handlers, onDelete: (namespace) => handlers.onDelete(namespace.name) },
      watchTimeoutSeconds: options.watchTimeoutSeconds,
      backoff: options.backoff,
    });
  }
}
