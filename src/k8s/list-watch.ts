// List + watch of one kind of object (client-go's reflector), shared by the namespace watch and the
// secret watch. It keeps going whatever happens: a watch that ends normally is resumed from the last
// resourceVersion; one that expires (410 Gone, after an apiserver restart or compaction) is replaced
// by a fresh list; errors back off and retry. Every sign of life (a list, an event, a bookmark, a watch
// that ended normally) is recorded, so a liveness probe can tell a quiet cluster from a stopped watch.
import { KubeConfig, Watch, type RequestContext } from '@kubernetes/client-node';
import { BackoffTimer, jitter, sleep, type Backoff } from './backoff.ts';
import type { RawRequest } from './client.ts';
import { rawFailure, toKubeApiError } from './errors.ts';

export interface ListWatchHandlers<T> {
  /** The complete set after every (re)list. */
  onList(items: readonly T[]): void;
  onUpsert(item: T): void;
  onDelete(item: T): void;
  /** A list or watch failed; the watcher retries by itself. */
  onError(message: string): void;
}

/** One page of a list. */
export interface ListPage<Raw> {
  readonly items: readonly Raw[];
  readonly resourceVersion: string;
  /** The continue token of the next page; none on the last. */
  readonly next: string | undefined;
}

/** Asks for one page of a list: at most `limit` items, from `continue` when given. */
export type ListPager<Raw> = (page: { limit: number; continue?: string }) => Promise<ListPage<Raw>>;

export interface ListWatcherOptions<Raw, T> {
  readonly kubeConfig: KubeConfig;
  /** For messages: "namespaces", "secrets named acr-x". */
  readonly what: string;
  /** The collection's path, e.g. /api/v1/namespaces. */
  readonly path: string;
  /** Restricts both the list and the watch (e.g. metadata.name=acr-x). */
  readonly fieldSelector?: string;
  /** One page of the list (the same path and selector). */
  readonly list: ListPager<Raw>;
  readonly convert: (raw: Raw) => T;
  readonly handlers: ListWatchHandlers<T>;
  /** Server-side timeout of one watch request, jittered up to +20%. */
  readonly watchTimeoutSeconds: number;
  /** Delays before a failed list or watch is retried; back to the first after any progress. */
  readonly backoff: Backoff;
}

export const LIST_PAGE_SIZE = 500;

/**
 * Pages of `path` on the raw path, its items as the apiserver's JSON: client-node's list call turned each of 2,000
 * Namespaces into class instances (its ObjectSerializer walking every model's attribute map), a third of the time a
 * cold --once spent listing them, for objects that are read for a few fields and dropped.
 */
export function rawPager<Raw>(raw: RawRequest, path: string, fieldSelector?: string): ListPager<Raw> {
  return async (page) => {
    const query = new URLSearchParams();
    if (fieldSelector !== undefined) query.set('fieldSelector', fieldSelector);
    query.set('limit', String(page.limit));
    if (page.continue !== undefined) query.set('continue', page.continue);
    const response = await raw('GET', `${path}?${query}`);
    if (response.status !== 200) throw rawFailure(response);
    const list = JSON.parse(response.body.toString('utf8')) as {
      items?: Raw[] | null;
      metadata?: { resourceVersion?: string; continue?: string };
    };
    return {
      items: list.items ?? [],
      resourceVersion: list.metadata?.resourceVersion ?? '',
      next: list.metadata?.continue || undefined,
    };
  };
}

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** One converted page; `restarted`: a continue token expired and the list began again with this page. */
interface ConvertedPage<T> {
  readonly items: T[];
  readonly resourceVersion: string;
  readonly restarted: boolean;
}

/**
 * The list page by page, each converted as it arrives: only one page of raw objects (with their managedFields) is
 * alive at a time. Held whole until the end, 20,000 raw Secrets and Namespaces were the peak that sized the heap for
 * good. A continue token that expires (410) restarts the list.
 */
async function* convertedPages<Raw, T>(
  what: string,
  list: ListPager<Raw>,
  convert: (raw: Raw) => T,
): AsyncGenerator<ConvertedPage<T>> {
  let token: string | undefined;
  let restarted = false;
  for (;;) {
    let page: ListPage<Raw>;
    try {
      page = await list({ limit: LIST_PAGE_SIZE, ...(token === undefined ? {} : { continue: token }) });
    } catch (error) {
      const failure = toKubeApiError(error, `list ${what}`);
      if (failure.status !== 410 || token === undefined) throw failure;
      token = undefined;
      restarted = true;
      continue;
    }
    yield { items: page.items.map(convert), resourceVersion: page.resourceVersion, restarted };
    restarted = false;
    token = page.next;
    if (token === undefined) return;
  }
}

/** Every item, page by page (see convertedPages); a restarted list returns only what the restart listed. */
export async function listAll<Raw, T>(
  what: string,
  list: ListPager<Raw>,
  convert: (raw: Raw) => T,
): Promise<{ items: T[]; resourceVersion: string }> {
  let items: T[] = [];
  let resourceVersion = '';
  for await (const page of convertedPages(what, list, convert)) {
    if (page.restarted) items = [];
    items.push(...page.items);
    resourceVersion = page.resourceVersion;
  }
  return { items, resourceVersion };
}

/**
 * Every item as its page arrives, for a caller that acts on each before the list ends (--once writes while the
 * namespaces are still being listed). After a restart (an expired continue token) items come again: drop repeats.
 */
export async function* listEach<Raw, T>(
  what: string,
  list: ListPager<Raw>,
  convert: (raw: Raw) => T,
): AsyncGenerator<T> {
  for await (const page of convertedPages(what, list, convert)) yield* page.items;
}

type WatchEnd = { kind: 'closed' } | { kind: 'expired' } | { kind: 'failed'; message: string };

export class ListWatcher<Raw extends { metadata?: { resourceVersion?: string } }, T> {
  private readonly options: ListWatcherOptions<Raw, T>;
  private stopped = false;
  private abort: AbortController | undefined;
  private running: Promise<void> | undefined;
  private progressAt = 0;
  private listed = false;
  private readonly wake = new AbortController();
  /** The connection pool of the watch request in flight (client-node makes one per request). */
  private pool: Dispatcher | undefined;
  private readonly watchConfig: KubeConfig;

  constructor(options: ListWatcherOptions<Raw, T>) {
    this.options = options;
    // client-node's abort handle for a watch exists only once response headers arrive; holding the
    // request's own pool lets stop() end one still waiting on a black-holed connection at once.
    const source = options.kubeConfig;
    this.watchConfig = new KubeConfig();
    this.watchConfig.loadFromOptions({
      clusters: source.getClusters(),
      users: source.getUsers(),
      contexts: source.getContexts(),
      currentContext: source.getCurrentContext(),
    });
    const apply = this.watchConfig.applySecurityAuthentication.bind(this.watchConfig);
    this.watchConfig.applySecurityAuthentication = async (context) => {
      await apply(context);
      this.pool = context.getDispatcher();
      if (this.stopped) this.pool?.destroy().catch(() => {});
    };
  }

  /** Epoch ms of the last list, event, bookmark or normal end of a watch; 0 before the first list. */
  lastProgressAt(): number {
    return this.progressAt;
  }

  /** The first list has completed. */
  hasSynced(): boolean {
    return this.listed;
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops at once, ending the watch request in flight even before its response headers. */
  stop(): void {
    this.stopped = true;
    this.wake.abort();
    this.abort?.abort();
    // Destroying a pool that is already closed or destroyed rejects; there is nothing left to end.
    this.pool?.destroy().catch(() => {});
  }

  private progress(): void {
    this.progressAt = Date.now();
  }

  private async run(): Promise<void> {
    const { handlers } = this.options;
    let resourceVersion: string | undefined;
    const backoff = new BackoffTimer(this.options.backoff);
    const failed = async (message: string): Promise<void> => {
      handlers.onError(message);
      await sleep(backoff.step(), this.wake.signal);
    };
    while (!this.stopped) {
      if (resourceVersion === undefined) {
        try {
          resourceVersion = await this.relist();
          if (resourceVersion === undefined) return;
        } catch (error) {
          await failed((error as Error).message);
          continue;
        }
      }
      const end = await this.watchOnce(resourceVersion, (next) => {
        resourceVersion = next;
        backoff.reset();
      });
      if (this.stopped) return;
      if (end.kind === 'closed') {
        this.progress();
      } else if (end.kind === 'expired') {
        resourceVersion = undefined;
      } else {
        await failed(end.message);
      }
    }
  }

  /**
   * Lists and hands the converted items over; the list's resourceVersion, or undefined once stopped. A function of its
   * own so the list is garbage once handed over: a suspended async function keeps its locals, and run() stays
   * suspended in the watch for as long as the process lives.
   */
  private async relist(): Promise<string | undefined> {
    const list = await listAll(this.options.what, this.options.list, this.options.convert);
    if (this.stopped) return undefined;
    this.listed = true;
    this.progress();
    this.options.handlers.onList(list.items);
    return list.resourceVersion;
  }

  /** One watch request from `resourceVersion`; resolves when it ends, saying how. */
  private watchOnce(resourceVersion: string, advance: (resourceVersion: string) => void): Promise<WatchEnd> {
    const { what, handlers, convert, fieldSelector } = this.options;
    const timeoutSeconds = Math.round(jitter(this.options.watchTimeoutSeconds, 0.2));
    return new Promise<WatchEnd>((resolve) => {
      let end: WatchEnd | undefined;
      const onEvent = (phase: string, object: unknown): void => {
        if (this.stopped) return;
        if (phase === 'ERROR') {
          const status = object as { code?: number; reason?: string; message?: string } | undefined;
          end =
            status?.code === 410 || status?.reason === 'Expired' || status?.reason === 'Gone'
              ? { kind: 'expired' }
              : {
                  kind: 'failed',
                  message:
                    `watch ${what}: ${status?.code ?? ''} ${status?.reason ?? ''} ${status?.message ?? ''}`.trim(),
                };
          this.abort?.abort();
          return;
        }
        const raw = object as Raw;
        const version = raw.metadata?.resourceVersion;
        if (version) advance(version);
        this.progress();
        if (phase === 'BOOKMARK') return;
        if (phase === 'DELETED') handlers.onDelete(convert(raw));
        else handlers.onUpsert(convert(raw));
      };
      const onDone = (error: unknown): void => {
        this.pool?.close().catch(() => {});
        this.pool = undefined;
        if (end !== undefined) resolve(end);
        else if (error === null || error === undefined) resolve({ kind: 'closed' });
        else if ((error as { statusCode?: number }).statusCode === 410) resolve({ kind: 'expired' });
        else resolve({ kind: 'failed', message: toKubeApiError(error, `watch ${what}`).message });
      };
      const query = {
        resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds,
        ...(fieldSelector === undefined ? {} : { fieldSelector }),
      };
      new Watch(this.watchConfig).watch(this.options.path, query, onEvent, onDone).then(
        (controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        },
        (error: unknown) => onDone(error ?? new Error('watch failed to start')),
      );
    });
  }
}
