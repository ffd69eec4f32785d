// Applies the plan to one namespace at a time through the API: get each configured Secret by
// name, decide (plan.ts), write, and retry what is worth retrying with the write backoff. A write
// that loses a race (409) is re-planned from a fresh read at once. Writes happen only while
// `canWrite()` says so (the leader in --watch); every line logged names namespace and secret, and
// passes through `redact` so no credential can leak even through an apiserver message.
import type { Logger } from 'pino';
import type { OptIn } from '../config/config.ts';
import { SYNC_DEFAULTS } from '../constants.ts';
import { retry, type Backoff, type RetryDecision, type Sleep } from '../k8s/backoff.ts';
import { toKubeApiError } from '../k8s/errors.ts';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { SecretStore } from '../k8s/secrets.ts';
import type { DesiredSecret } from './desired.ts';
import { planPrune, planSecret } from './plan.ts';
import type { SecretEventHook } from './sync-events.ts';

/** 'aborted': stopped before writing (no longer leader); 'ignored': nothing of ours to prune. Neither is counted. */
export type Outcome = 'created' | 'updated' | 'unchanged' | 'skipped' | 'failed' | 'pruned' | 'aborted' | 'ignored';

export interface Summary {
  namespaces: number;
  created: number;
  updated: number;
  unchanged: number;
  skipped: number;
  failed: number;
  pruned: number;
}

export function emptySummary(): Summary {
  return { namespaces: 0, created: 0, updated: 0, unchanged: 0, skipped: 0, failed: 0, pruned: 0 };
}

/** The one-line result of `--once`; `pruned=` appears only when pruning is enabled. */
export function formatSummary(summary: Summary, prune: boolean): string {
  const { namespaces, created, updated, unchanged, skipped, failed, pruned } = summary;
  const counts = `created=${created} updated=${updated} unchanged=${unchanged} skipped=${skipped} failed=${failed}`;
  return `namespaces=${namespaces} ${counts}${prune ? ` pruned=${pruned}` : ''}`;
}

export function isOptedIn(namespace: NamespaceInfo, optIn: OptIn): boolean {
  return namespace.labels[optIn.label] === optIn.value;
}

/** Secret writes and the namespace list: a few attempts, doubling from 250 ms, jittered by up to 20%. */
export const WRITE_BACKOFF: Backoff = {
  duration: SYNC_DEFAULTS.retryBaseMs,
  factor: 2,
  jitter: 0.2,
  steps: SYNC_DEFAULTS.writeAttempts,
  cap: SYNC_DEFAULTS.retryMaxMs,
};

/** A lost race (409) is re-planned at once; no answer, overload or a server error backs off; the rest is final. */
export function retryDecision(error: unknown): RetryDecision {
  const failure = toKubeApiError(error, 'request');
  if (failure.status === 409) return 'at-once';
  return failure.retryable ? 'backoff' : 'stop';
}

/** What the --watch controller needs from a reconciler. */
export interface NamespaceReconciler {
  /** Opted in and not being deleted: gets every configured Secret. */
  wants(namespace: NamespaceInfo): boolean;
  /** Whether this namespace needs any API call at all. */
  concerns(namespace: NamespaceInfo): boolean;
  /** New credentials: later reconciles write them. */
  setDesired(desired: readonly DesiredSecret[]): void;
  /** Whether a configured Secret, as last seen (undefined: absent), needs its namespace reconciled. */
  drifted(namespace: NamespaceInfo, name: string, secret: SecretObject | undefined): boolean;
  reconcileNamespace(namespace: NamespaceInfo): Promise<NamespaceResult>;
  /** The namespace is gone: nothing about it is remembered (the Events' list of opted-in namespaces). */
  forget(name: string): void;
}

export interface ReconcilerOptions {
  readonly store: SecretStore;
  readonly desired: readonly DesiredSecret[];
  readonly optIn: OptIn;
  readonly prune: boolean;
  /** Checked before every write: false makes the reconcile stop without writing ('aborted'). */
  readonly canWrite: () => boolean;
  readonly logger: Logger;
  /** Removes credential values from any text before it is logged. */
  readonly redact: (text: string) => string;
  readonly backoff: Backoff;
  /** The wait between attempts (tests record it instead of waiting). */
  readonly sleep?: Sleep;
  /** Told of every namespace reconciled and of outcomes worth an Event (fire and forget). */
  readonly events?: SecretEventHook;
}

export interface NamespaceResult {
  readonly namespace: string;
  readonly optedIn: boolean;
  readonly outcomes: readonly Outcome[];
}

export class Reconciler implements NamespaceReconciler {
  private readonly options: ReconcilerOptions;
  private desired: readonly DesiredSecret[];

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.desired = options.desired;
  }

  /** New credentials: later reconciles write them. */
  setDesired(desired: readonly DesiredSecret[]): void {
    this.desired = desired;
  }

  /** Opted in and not being deleted: gets every configured Secret. */
  wants(namespace: NamespaceInfo): boolean {
    return !namespace.terminating && isOptedIn(namespace, this.options.optIn);
  }

  /** Whether this namespace needs any API call at all. */
  concerns(namespace: NamespaceInfo): boolean {
    return this.wants(namespace) || (this.options.prune && !namespace.terminating);
  }

  /** Whether a configured Secret, as last seen (undefined: absent), needs its namespace reconciled. */
  drifted(namespace: NamespaceInfo, name: string, secret: SecretObject | undefined): boolean {
    if (this.wants(namespace)) {
      const desired = this.desired.find((d) => d.name === name);
      if (desired === undefined) return false;
      const { action } = planSecret(namespace.name, secret, desired);
      return action === 'create' || action === 'update';
    }
    return this.concerns(namespace) && planPrune(secret).action === 'delete';
  }

  forget(name: string): void {
    this.options.events?.forget(name);
  }

  async reconcileNamespace(namespace: NamespaceInfo): Promise<NamespaceResult> {
    const optedIn = this.wants(namespace);
    this.options.events?.namespace(namespace, optedIn);
    if (!this.concerns(namespace)) return { namespace: namespace.name, optedIn, outcomes: [] };
    const desired = this.desired;
    const outcomes: Outcome[] = [];
    for (const secret of desired) {
      const outcome = optedIn
        ? await this.ensure(namespace.name, secret)
        : await this.pruneOne(namespace.name, secret.name);
      outcomes.push(outcome);
      if (outcome === 'aborted') break;
    }
    return { namespace: namespace.name, optedIn, outcomes };
  }

  /**
   * Reconciles namespaces `concurrency` at a time, as they come (--once starts on the first page of the list), and
   * adds up the outcomes. When the namespaces fail to arrive (the list failed), what is in flight finishes first.
   */
  async reconcileAll(
    namespaces: Iterable<NamespaceInfo> | AsyncIterable<NamespaceInfo>,
    concurrency: number,
  ): Promise<Summary> {
    const summary = emptySummary();
    const source =
      Symbol.asyncIterator in namespaces ? namespaces[Symbol.asyncIterator]() : namespaces[Symbol.iterator]();
    let failure: { error: unknown } | undefined;
    const worker = async (): Promise<void> => {
      while (failure === undefined) {
        let next: IteratorResult<NamespaceInfo>;
        try {
          // An async generator answers concurrent next() calls one after another, each with the next namespace.
          next = await source.next();
        } catch (error) {
          failure ??= { error };
          return;
        }
        if (next.done) return;
        if (this.concerns(next.value)) addResult(summary, await this.reconcileNamespace(next.value));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    if (failure !== undefined) throw failure.error;
    return summary;
  }

  private async withRetries(
    what: { namespace: string; secret: string },
    attempt: () => Promise<Outcome>,
  ): Promise<Outcome> {
    const { backoff, sleep, logger, redact } = this.options;
    let attempts = 0;
    try {
      return await retry(
        backoff,
        () => {
          attempts += 1;
          return attempt();
        },
        {
          decide: retryDecision,
          ...(sleep === undefined ? {} : { sleep }),
          onRetry: (error, n, delayMs) => {
            const failure = toKubeApiError(error, `secret ${what.namespace}/${what.secret}`);
            logger.debug(
              {
                ...what,
                status: failure.status,
                reason: failure.reason,
                attempt: n,
                delayMs,
                error: redact(failure.message),
              },
              'retrying',
            );
          },
        },
      );
    } catch (error) {
      const failure = toKubeApiError(error, `secret ${what.namespace}/${what.secret}`);
      logger.error(
        { ...what, status: failure.status, reason: failure.reason, attempts, error: redact(failure.message) },
        'secret not reconciled',
      );
      this.options.events?.secret(what.namespace, what.secret, {
        kind: 'failed',
        status: failure.status,
        statusReason: failure.reason,
      });
      return 'failed';
    }
  }

  private ensure(namespace: string, desired: DesiredSecret): Promise<Outcome> {
    const { store, canWrite, logger } = this.options;
    const what = { namespace, secret: desired.name };
    return this.withRetries(what, async () => {
      if (!canWrite()) return 'aborted';
      const existing = await store.get(namespace, desired.name);
      const plan = planSecret(namespace, existing, desired);
      const hash = desired.contentHash.slice(0, 'sha256:'.length + 12);
      switch (plan.action) {
        case 'unchanged':
          logger.debug({ ...what }, 'secret unchanged');
          return 'unchanged';
        case 'skipped-unmanaged':
        case 'skipped-immutable':
          logger.warn(
            { ...what, reason: plan.reason },
            `secret ${namespace}/${desired.name} left unchanged: ${plan.reason}`,
          );
          this.options.events?.secret(namespace, desired.name, { kind: 'not-managed', reason: plan.reason });
          return 'skipped';
        case 'create':
          if (!canWrite()) return 'aborted';
          await store.create(namespace, plan.secret);
          logger.info({ ...what, servers: desired.servers, contentHash: hash }, 'secret created');
          this.options.events?.secret(namespace, desired.name, { kind: 'created' });
          return 'created';
        case 'update':
          if (!canWrite()) return 'aborted';
          await store.replace(namespace, desired.name, plan.secret);
          logger.info(
            { ...what, servers: desired.servers, contentHash: hash, changed: plan.changed },
            'secret updated',
          );
          // A rewritten hash annotation alone is no news to the namespace's owners.
          if (plan.changed.includes('data')) this.options.events?.secret(namespace, desired.name, { kind: 'updated' });
          return 'updated';
      }
    });
  }

  private pruneOne(namespace: string, name: string): Promise<Outcome> {
    const { store, canWrite, logger } = this.options;
    const what = { namespace, secret: name };
    return this.withRetries(what, async () => {
      if (!canWrite()) return 'aborted';
      const plan = planPrune(await store.get(namespace, name));
      if (plan.action === 'absent' || plan.action === 'skipped-unmanaged') return 'ignored';
      await store.delete(namespace, name, { uid: plan.uid, resourceVersion: plan.resourceVersion });
      logger.info({ ...what }, 'secret pruned: namespace is no longer opted in');
      return 'pruned';
    });
  }
}

export function addResult(summary: Summary, result: NamespaceResult): void {
  if (result.optedIn) summary.namespaces += 1;
  for (const outcome of result.outcomes) {
    if (outcome !== 'aborted' && outcome !== 'ignored') summary[outcome] += 1;
  }
}
