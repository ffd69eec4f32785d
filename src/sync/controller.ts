// --watch: keeps every opted-in namespace true. Namespace events, credential changes, a new
// leadership and a periodic resync all reduce to "reconcile these namespaces"; a small work queue
// de-duplicates them (a namespace queued twice is reconciled once, one queued while in flight is
// reconciled again after) and works on a few at a time. Only the leader works the queue.
import type { Logger } from 'pino';
import type { NamespaceInfo, NamespaceWatchHandlers } from '../k8s/namespace-watch.ts';
import type { DesiredSecret } from './desired.ts';
import type { Reconciler } from './reconciler.ts';

export interface SyncControllerOptions {
  readonly reconciler: Reconciler;
  readonly isLeader: () => boolean;
  readonly concurrency: number;
  readonly resyncMs: number;
  /** First retry delay for a namespace whose reconcile failed; doubles per consecutive failure up to requeueMaxMs. */
  readonly requeueMs: number;
  readonly requeueMaxMs: number;
  readonly logger: Logger;
}

export class SyncController {
  private readonly options: SyncControllerOptions;
  private readonly namespaces = new Map<string, NamespaceInfo>();
  private readonly pending = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly requeues = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, number>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(options: SyncControllerOptions) {
    this.options = options;
  }

  /** Feeds the namespace watcher's view into the queue. */
  readonly handlers: NamespaceWatchHandlers = {
    onList: (namespaces) => {
      // After a (re)list anything may have been missed: everything is looked at again.
      this.namespaces.clear();
      for (const namespace of namespaces) this.namespaces.set(namespace.name, namespace);
      this.options.logger.info({ namespaces: namespaces.length, optedIn: namespaces.filter((n) => this.options.reconciler.wants(n)).length }, 'namespaces listed');
      this.enqueueAll();
    },
    onUpsert: (namespace) => {
      const before = this.namespaces.get(namespace.name);
      this.namespaces.set(namespace.name, namespace);
      const { reconciler } = this.options;
      // New, or its opt-in changed (labelled, unlabelled, started terminating): it needs a look.
      if (before === undefined ? reconciler.concerns(namespace) : reconciler.wants(before) !== reconciler.wants(namespace)) {
        this.enqueue(namespace.name);
      }
    },
    onDelete: (name) => {
      this.namespaces.delete(name);
      this.pending.delete(name);
      this.failures.delete(name);
      clearTimeout(this.requeues.get(name));
      this.requeues.delete(name);
    },
    onError: (message) => this.options.logger.warn({ error: message }, 'namespace watch interrupted; retrying'),
  };

  start(): void {
    this.resyncTimer = setInterval(() => {
      this.options.logger.debug('periodic resync');
      this.enqueueAll();
    }, this.options.resyncMs);
    this.resyncTimer.unref();
  }

  /** Stops taking work; resolves when reconciles in flight have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    for (const timer of this.requeues.values()) clearTimeout(timer);
    this.requeues.clear();
    this.pending.clear();
    if (this.inFlight.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  credentialsChanged(desired: readonly DesiredSecret[]): void {
    this.options.reconciler.setDesired(desired);
    this.enqueueAll();
  }

  /** Every known namespace that needs an API call at all. */
  enqueueAll(): void {
    for (const namespace of this.namespaces.values()) {
      if (this.options.reconciler.concerns(namespace)) this.pending.add(namespace.name);
    }
    this.pump();
  }

  enqueue(name: string): void {
    this.pending.add(name);
    this.pump();
  }

  private pump(): void {
    if (this.stopped) return;
    // A follower drops its work: whoever becomes leader starts with a full pass anyway.
    if (!this.options.isLeader()) {
      this.pending.clear();
      return;
    }
    for (const name of this.pending) {
      if (this.inFlight.size >= this.options.concurrency) return;
      if (this.inFlight.has(name)) continue;
      this.pending.delete(name);
      const namespace = this.namespaces.get(name);
      if (namespace === undefined) continue;
      this.inFlight.add(name);
      void this.work(namespace).finally(() => {
        this.inFlight.delete(name);
        if (this.inFlight.size === 0) for (const waiter of this.idleWaiters.splice(0)) waiter();
        this.pump();
      });
    }
  }

  private async work(namespace: NamespaceInfo): Promise<void> {
    const result = await this.options.reconciler.reconcileNamespace(namespace);
    const count = (outcome: string): number => result.outcomes.filter((o) => o === outcome).length;
    const changed = count('created') + count('updated') + count('pruned');
    if (changed > 0) {
      this.options.logger.info(
        { namespace: namespace.name, created: count('created'), updated: count('updated'), pruned: count('pruned') },
        'namespace reconciled',
      );
    }
    if (count('failed') === 0) {
      this.failures.delete(namespace.name);
      return;
    }
    if (this.stopped) return;
    // Retried soon (the apiserver was restarting) but ever more slowly (RBAC is wrong), so a
    // broken cluster is not hammered.
    const failures = (this.failures.get(namespace.name) ?? 0) + 1;
    this.failures.set(namespace.name, failures);
    clearTimeout(this.requeues.get(namespace.name));
    const delay = Math.min(this.options.requeueMs * 2 ** (failures - 1), this.options.requeueMaxMs);
    const timer = setTimeout(() => {
      this.requeues.delete(namespace.name);
      this.enqueue(namespace.name);
    }, delay);
    timer.unref();
    this.requeues.set(namespace.name, timer);
  }
}
