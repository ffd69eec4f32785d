// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: every
// replica tries to acquire or renew every retryPeriod; a Lease whose holder has not renewed for
// leaseDurationSeconds (measured on this replica's clock, from when it last saw the record change,
// so clock skew between nodes does not matter) may be taken over; writes use the resourceVersion
// read, so two replicas can never both win. The leader counts as leader only while its last
// successful renewal is younger than renewDeadline (< leaseDuration): by the time another replica
// may take over, the old one has already stopped writing. Stopping releases the Lease at once.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { V1MicroTime, type CoordinationV1Api, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import { jitter, sleep } from './backoff.ts';
import { toKubeApiError } from './errors.ts';

export interface LeaderElectorOptions {
  readonly coordination: CoordinationV1Api;
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly leaseDurationSeconds: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly onStartedLeading: () => void;
  readonly onStoppedLeading: () => void;
  /** A lease call failed (logged; the elector keeps trying). */
  readonly onError: (message: string) => void;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID().slice(0, 8)}`;
}

export class LeaderElector {
  private readonly options: LeaderElectorOptions;
  private stopped = false;
  private leading = false;
  private renewedAt = 0;
  private observed: { holder: string; renewTime: string; resourceVersion: string } | undefined;
  private observedAt = 0;
  private lease: V1Lease | undefined;
  private running: Promise<void> | undefined;
  private readonly wake = new AbortController();

  constructor(options: LeaderElectorOptions) {
    this.options = options;
  }

  get identity(): string {
    return this.options.identity;
  }

  /** Holds the Lease and renewed it within the renew deadline: safe to write. */
  isLeader(): boolean {
    return this.leading && !this.pastRenewDeadline();
  }

  private pastRenewDeadline(): boolean {
    return Date.now() - this.renewedAt >= this.options.renewDeadlineMs;
  }

  start(): void {
    this.running ??= this.run();
  }

  /** Stops trying; if leading, gives the Lease up so another replica takes over within a retry period. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.abort();
    await this.running;
    if (this.leading) {
      this.setLeading(false);
      await this.release();
    }
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const acquired = await this.tryAcquireOrRenew();
      if (this.stopped) return;
      if (acquired) {
        // A renewal that lands after the renew deadline ends one term and starts another: while it
        // was in flight isLeader() said no, so writers stopped and dropped their queued work, and
        // onStartedLeading (the controller's full pass) must run again to pick that work up.
        if (this.leading && this.pastRenewDeadline()) this.setLeading(false);
        this.renewedAt = Date.now();
        this.setLeading(true);
      } else if (this.leading && this.pastRenewDeadline()) {
        this.setLeading(false);
      }
      // Jitter keeps replicas that started together from always colliding.
      const wait = this.leading ? this.options.retryPeriodMs : jitter(this.options.retryPeriodMs, 0.2);
      await sleep(wait, this.wake.signal);
    }
  }

  private spec(now: Date, transitions: number, acquireTime: unknown): V1LeaseSpec {
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: this.options.leaseDurationSeconds,
      acquireTime: (acquireTime as V1MicroTime | undefined) ?? new V1MicroTime(now.getTime()),
      renewTime: new V1MicroTime(now.getTime()),
      leaseTransitions: transitions,
    };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { coordination, namespace, name, identity } = this.options;
    const now = new Date();
    let current: V1Lease;
    try {
      current = await coordination.readNamespacedLease({ namespace, name });
    } catch (error) {
      const failure = toKubeApiError(error, `get lease ${namespace}/${name}`);
      if (failure.status !== 404) {
        this.options.onError(failure.message);
        return false;
      }
      try {
        this.lease = await coordination.createNamespacedLease({
          namespace,
          body: { metadata: { name, namespace }, spec: this.spec(now, 0, undefined) },
        });
        this.observe(this.lease);
        return true;
      } catch (createError) {
        const createFailure = toKubeApiError(createError, `create lease ${namespace}/${name}`);
        if (createFailure.status !== 409) this.options.onError(createFailure.message);
        return false;
      }
    }
    this.observe(current);
    const holder = current.spec?.holderIdentity ?? '';
    const durationMs = (current.spec?.leaseDurationSeconds ?? this.options.leaseDurationSeconds) * 1000;
    const heldByOther = holder !== '' && holder !== identity;
    if (heldByOther && Date.now() - this.observedAt < durationMs) return false;
    const transitions = (current.spec?.leaseTransitions ?? 0) + (holder === identity ? 0 : 1);
    try {
      this.lease = await coordination.replaceNamespacedLease({
        namespace,
        name,
        body: {
          ...current,
          spec: this.spec(now, transitions, holder === identity ? current.spec?.acquireTime : undefined),
        },
      });
      this.observe(this.lease);
      return true;
    } catch (error) {
      const failure = toKubeApiError(error, `update lease ${namespace}/${name}`);
      // 409: another replica wrote first; it won this round.
      if (failure.status !== 409) this.options.onError(failure.message);
      return false;
    }
  }

  /** Remembers when this replica last saw the record change: expiry is judged on the local clock. */
  private observe(lease: V1Lease): void {
    const record = {
      holder: lease.spec?.holderIdentity ?? '',
      renewTime: String(lease.spec?.renewTime ?? ''),
      resourceVersion: lease.metadata?.resourceVersion ?? '',
    };
    if (
      this.observed === undefined ||
      this.observed.holder !== record.holder ||
      this.observed.renewTime !== record.renewTime
    ) {
      this.observedAt = Date.now();
    }
    this.observed = record;
  }

  /** As client-go: an empty holder and a one-second duration, so the next replica takes over at once. */
  private async release(): Promise<void> {
    const { coordination, namespace, name, identity } = this.options;
    try {
      const current = await coordination.readNamespacedLease({ namespace, name });
      if (current.spec?.holderIdentity !== identity) return;
      const now = new V1MicroTime(Date.now());
      await coordination.replaceNamespacedLease({
        namespace,
        name,
        body: {
          ...current,
          spec: { ...current.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
        },
      });
    } catch (error) {
      this.options.onError(toKubeApiError(error, `release lease ${namespace}/${name}`).message);
    }
  }
}
