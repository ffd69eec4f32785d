// --watch: keeps every opted-in namespace true. Namespace events, credential changes, a new
// leadership and a periodic resync all reduce to "reconcile these namespaces"; a small work queue
// de-duplicates them (a namespace queued twice is reconciled once, one queued while in flight is
// reconciled again after) and works on a few at a time. Only the leader works the queue. A Secret
// edited or deleted by someone (seen by the secret watch) queues its namespace too, so drift is
// repaired in seconds; the periodic resync reads from the watch's cache and costs no request. A
// namespace queued on its own (new, newly labelled, drifted, a retry) goes ahead of those queued all
// at once, so it never waits behind a full pass over thousands.
//
// Everything queued at once ("every namespace": a list, a new leadership, new credentials, the
// resync) is also followed as one full pass, finished when each of those namespaces has been
// reconciled since. A pass with no failed secret is the "everything was right at time T" signal
// that operators alert on when syncing silently stops.
import type { Logger } from 'pino';
import { SYNC_DEFAULTS } from '../constants.ts';
import { BackoffTimer, type Backoff } from '../k8s/backoff.ts';
import type { NamespaceInfo, NamespaceWatchHandlers } from '../k8s/namespace-watch.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { DesiredSecret } from './desired.ts';
import type { SyncMetrics } from './metrics.ts';
import type { NamespaceReconciler } from './reconciler.ts';

/**
 * A namespace whose reconcile failed is tried again soon (the apiserver was restarting) but ever
 * more slowly (RBAC is wrong), so a broken cluster is not hammered: client-go's per-item rate limiter.
 */
export const REQUEUE_BACKOFF: Backoff = {
  duration: SYNC_DEFAULTS.requeueMs,
  factor: 2,
  jitter: 0,
  steps: Number.POSITIVE_INFINITY,
  cap: SYNC_DEFAULTS.requeueMaxMs,
};

export interface SyncControllerOptions {
  readonly reconciler: NamespaceReconciler;
  readonly isLeader: () => boolean;
  readonly concurrency: number;
  readonly resyncMs: number;
  /** Delays before a namespace whose reconcile failed is tried again, growing per consecutive failure. */
  readonly requeueBackoff: Backoff;
  readonly logger: Logger;
  /** Where secret results and full passes are counted. */
  readonly metrics?: SyncMetrics;
  /** Epoch ms, for the last-success timestamp. */
  readonly now?: () => number;
}

/** A full pass in progress: the namespaces it still waits for. */
interface Pass {
  readonly remaining: Set<string>;
  /**
   * Only reconciles started from this sequence number on count: one already in flight read the state
   * before the pass began.
   */
  readonly since: number;
  failed: boolean;
}

export class SyncController {
  private readonly options: SyncControllerOptions;
  /**
   * The namespaces that need an API call (reconciler.concerns), and those that stopped needing one since the last
   * list: in a cluster of many namespaces most are never looked at, and need no memory.
   */
  private readonly namespaces = new Map<string, NamespaceInfo>();
  /** Queued all at once (enqueueAll), in order. */
  private readonly pending = new Set<string>();
  /** Queued on their own (enqueue): served before `pending`. */
  private readonly urgent = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly requeues = new Map<string, NodeJS.Timeout>();
  /** Namespaces whose last reconcile failed, with the delays of their next retries. */
  private readonly failures = new Map<string, BackoffTimer>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private listed = false;
  private pass: Pass | undefined;
  /** Reconciles started so far; numbers each one. */
  private started = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(options: SyncControllerOptions) {
    this.options = options;
  }

  /** Feeds the namespace watcher's view into the queue. */
  readonly handlers: NamespaceWatchHandlers = {
    onList: (namespaces) => {
      // After a (re)list anything may have been missed: everything is looked at again.
      this.listed = true;
      this.namespaces.clear();
      const { reconciler } = this.options;
      for (const namespace of namespaces)
        if (reconciler.concerns(namespace)) this.namespaces.set(namespace.name, namespace);
      this.options.logger.info(
        { namespaces: namespaces.length, optedIn: namespaces.filter((n) => reconciler.wants(n)).length },
        'namespaces listed',
      );
      this.enqueueAll();
    },
    onUpsert: (namespace) => {
      const before = this.namespaces.get(namespace.name);
      const { reconciler } = this.options;
      // New, or its opt-in changed (labelled, unlabelled, started terminating): it needs a look. One not held was of
      // no concern: only becoming one is news.
      const changed =
        before === undefined
          ? reconciler.concerns(namespace)
          : reconciler.wants(before) !== reconciler.wants(namespace);
      // One held stays held (until the next list), so the reconcile of its change reads it, and tells the Events
      // whether it is still opted in.
      if (before !== undefined || reconciler.concerns(namespace)) this.namespaces.set(namespace.name, namespace);
      if (changed) this.enqueue(namespace.name);
    },
    onDelete: (name) => {
      this.options.reconciler.forget(name);
      this.namespaces.delete(name);
      this.pending.delete(name);
      this.urgent.delete(name);
      this.failures.delete(name);
      clearTimeout(this.requeues.get(name));
      this.requeues.delete(name);
      // Nothing can be written in a deleted namespace: the pass no longer waits for it.
      this.pass?.remaining.delete(name);
      this.finishPassIfDone();
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
    this.pass = undefined;
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    for (const timer of this.requeues.values()) clearTimeout(timer);
    this.requeues.clear();
    this.pending.clear();
    this.urgent.clear();
    if (this.inFlight.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * The secret watch saw a configured Secret change or disappear: its namespace is reconciled when the
   * Secret is no longer what it should be (edited or deleted by someone). Our own writes arrive here
   * too and, being right, queue nothing.
   */
  secretChanged(namespace: string, name: string, secret: SecretObject | undefined): void {
    const known = this.namespaces.get(namespace);
    if (known === undefined || this.stopped || !this.options.reconciler.drifted(known, name, secret)) return;
    this.options.logger.info(
      { namespace, secret: name, change: secret === undefined ? 'deleted' : 'changed' },
      'secret drifted; reconciling its namespace',
    );
    this.enqueue(namespace);
  }

  credentialsChanged(desired: readonly DesiredSecret[]): void {
    this.options.reconciler.setDesired(desired);
    this.enqueueAll();
  }

  /** Every known namespace that needs an API call at all; followed as a full pass when this replica leads. */
  enqueueAll(): void {
    const names: string[] = [];
    for (const namespace of this.namespaces.values()) {
      if (this.options.reconciler.concerns(namespace)) names.push(namespace.name);
    }
    for (const name of names) if (!this.urgent.has(name)) this.pending.add(name);
    // Before the first list there is nothing to confirm, and a follower writes nothing: a pass
    // there would report success for work nobody did. A pass still open is superseded (not
    // counted): every namespace it waited for is in the new one.
    if (this.listed && !this.stopped && this.options.isLeader()) {
      this.pass = { remaining: new Set(names), since: this.started, failed: false };
    }
    this.pump();
    this.finishPassIfDone();
  }

  /** Opted-in namespaces (not terminating) known from the watch. */
  optedInNamespaces(): number {
    let count = 0;
    for (const namespace of this.namespaces.values()) if (this.options.reconciler.wants(namespace)) count += 1;
    return count;
  }

  enqueue(name: string): void {
    this.pending.delete(name);
    this.urgent.add(name);
    this.pump();
  }

  private pump(): void {
    if (this.stopped) return;
    // A follower drops its work: whoever becomes leader starts with a full pass anyway.
    if (!this.options.isLeader()) {
      this.pending.clear();
      this.urgent.clear();
      this.pass = undefined;
      return;
    }
    this.startFrom(this.urgent);
    this.startFrom(this.pending);
  }

  /** Starts reconciles of the namespaces in `queue`, in order, while there is room. */
  private startFrom(queue: Set<string>): void {
    for (const name of queue) {
      if (this.inFlight.size >= this.options.concurrency) return;
      if (this.inFlight.has(name)) continue;
      queue.delete(name);
      const namespace = this.namespaces.get(name);
      if (namespace === undefined) continue;
      this.inFlight.add(name);
      const sequence = this.started++;
      void this.work(namespace, sequence).finally(() => {
        this.inFlight.delete(name);
        if (this.inFlight.size === 0) for (const waiter of this.idleWaiters.splice(0)) waiter();
        this.pump();
      });
    }
  }

  private async work(namespace: NamespaceInfo, sequence: number): Promise<void> {
    const result = await this.options.reconciler.reconcileNamespace(namespace);
    const count = (outcome: string): number => result.outcomes.filter((o) => o === outcome).length;
    for (const outcome of result.outcomes) {
      if (outcome !== 'aborted' && outcome !== 'ignored') this.options.metrics?.secrets.inc({ result: outcome });
    }
    this.passReconciled(namespace.name, sequence, count('aborted') > 0, count('failed') > 0);
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
    let backoff = this.failures.get(namespace.name);
    if (backoff === undefined) {
      backoff = new BackoffTimer(this.options.requeueBackoff);
      this.failures.set(namespace.name, backoff);
    }
    clearTimeout(this.requeues.get(namespace.name));
    const delay = backoff.step();
    const timer = setTimeout(() => {
      this.requeues.delete(namespace.name);
      this.enqueue(namespace.name);
    }, delay);
    timer.unref();
    this.requeues.set(namespace.name, timer);
  }

  private passReconciled(name: string, sequence: number, aborted: boolean, failed: boolean): void {
    const pass = this.pass;
    if (pass === undefined || sequence < pass.since || !pass.remaining.delete(name)) return;
    // Stopped before writing (leadership lost, shutting down): this pass can no longer vouch for anything.
    if (aborted) {
      this.pass = undefined;
      return;
    }
    if (failed) pass.failed = true;
    this.finishPassIfDone();
  }

  private finishPassIfDone(): void {
    const pass = this.pass;
    if (pass === undefined || pass.remaining.size > 0) return;
    this.pass = undefined;
    this.options.metrics?.passes.inc({ result: pass.failed ? 'failure' : 'success' });
    if (!pass.failed) this.options.metrics?.lastSuccess.set((this.options.now ?? Date.now)() / 1000);
    this.options.logger.debug({ failed: pass.failed }, 'full pass finished');
  }
}
