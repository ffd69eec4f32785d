// Retry timing with client-go's wait.Backoff semantics, so every loop that waits after a failure
// (writes, the namespace watch, leader election, the controller's requeues, the namespace list)
// grows, jitters and caps its delays the same way. The clock (sleep) and randomness are injectable.
import { setTimeout as timersSleep } from 'node:timers/promises';

/** As client-go's wait.Backoff; durations in milliseconds. */
export interface Backoff {
  /** The first delay. */
  readonly duration: number;
  /** Each delay is the previous one times this (0 or 1: constant). */
  readonly factor: number;
  /** A delay d becomes d + random * jitter * d (wait.Jitter); 0: none. */
  readonly jitter: number;
  /** Attempts, for retry(); the delays grow for steps - 1 steps, then stay. Infinity: forever. */
  readonly steps: number;
  /** When growing would exceed it, the delay becomes the cap and growing stops (and so do retry()'s attempts). */
  readonly cap: number;
}

/** Waits ms, or less when the signal aborts; resolves true when it waited the whole time. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<boolean>;

export const sleep: Sleep = async (ms, signal) => {
  if (signal?.aborted) return false;
  try {
    await timersSleep(ms, undefined, signal === undefined ? {} : { signal });
    return true;
  } catch {
    return false;
  }
};

/** wait.Jitter: d plus up to factor * d (a factor of 0 or less counts as 1, as in client-go). */
export function jitter(duration: number, factor: number, random: () => number = Math.random): number {
  return duration + random() * (factor <= 0 ? 1 : factor) * duration;
}

/** The delays of one Backoff, one per step(); reset() starts again from the first (after progress). */
export class BackoffTimer {
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private duration: number;
  private steps: number;

  constructor(backoff: Backoff, random: () => number = Math.random) {
    this.backoff = backoff;
    this.random = random;
    this.duration = backoff.duration;
    this.steps = backoff.steps;
  }

  /** Steps left; retry() makes another attempt only while this is above zero. */
  get remaining(): number {
    return this.steps;
  }

  /** wait.Backoff.Step(): the next delay. */
  step(): number {
    const { factor, jitter: jitterFactor, cap } = this.backoff;
    const withJitter = (d: number): number => (jitterFactor > 0 ? jitter(d, jitterFactor, this.random) : d);
    if (this.steps < 1) return withJitter(this.duration);
    this.steps -= 1;
    const duration = this.duration;
    if (factor !== 0) {
      this.duration = this.duration * factor;
      if (cap > 0 && this.duration > cap) {
        this.duration = cap;
        this.steps = 0;
      }
    }
    return withJitter(duration);
  }

  /** Uses up a step without waiting or growing the delay. */
  consume(): void {
    this.steps -= 1;
  }

  reset(): void {
    this.duration = this.backoff.duration;
    this.steps = this.backoff.steps;
  }
}

/** What to do after a failed attempt: wait and retry, retry at once (a lost race), or give up. */
export type RetryDecision = 'backoff' | 'at-once' | 'stop';

export interface RetryOptions {
  readonly decide: (error: unknown) => RetryDecision;
  /** Bound on a server's Retry-After (a broken proxy must not park a reconcile for hours); default 60 s. */
  readonly maxRetryAfterMs?: number;
  /** Called before each retry, with the attempt that failed (1-based) and the delay (0 when at once). */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Stops waiting; the last error is thrown. */
  readonly signal?: AbortSignal;
  readonly sleep?: Sleep;
  readonly random?: () => number;
}

/** Retry-After the server sent with this error (KubeApiError.retryAfterSeconds), in ms. */
export function retryAfterMs(error: unknown): number | undefined {
  const seconds = (error as { retryAfterSeconds?: unknown } | null | undefined)?.retryAfterSeconds;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/**
 * wait.ExponentialBackoff for one call: at most `steps` attempts, a backoff delay between them
 * (none for 'at-once', which still counts as an attempt). Throws the last error when out of attempts.
 * A server's Retry-After (429 from API Priority and Fairness) lengthens the delay to at least that,
 * as client-go's request retry does: retrying sooner would only be rejected again.
 */
export async function retry<T>(
  backoff: Backoff,
  attempt: (n: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const timer = new BackoffTimer(backoff, options.random);
  const wait = options.sleep ?? sleep;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      const decision = options.decide(error);
      if (decision === 'stop' || timer.remaining <= 1 || options.signal?.aborted) throw error;
      if (decision === 'at-once') {
        // Counts as a step (bounding a loop of lost races) without growing the delay.
        timer.consume();
        options.onRetry?.(error, n, 0);
        continue;
      }
      const asked = retryAfterMs(error);
      const backoffDelay = timer.step();
      const delay =
        asked === undefined ? backoffDelay : Math.max(backoffDelay, Math.min(asked, options.maxRetryAfterMs ?? 60_000));
      options.onRetry?.(error, n, delay);
      if (!(await wait(delay, options.signal))) throw error;
    }
  }
}
