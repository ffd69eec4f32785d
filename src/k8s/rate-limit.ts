// Client-side rate limit of API requests: client-go's token bucket (flowcontrol.NewTokenBucketRateLimiter,
// --kube-api-qps / --kube-api-burst): up to `burst` requests at once, then `qps` a second. Each caller
// reserves the next token and waits its turn (golang.org/x/time/rate's Reserve), so waiters are served
// in order and none starves. A qps of 0 means no limit.
import { sleep as defaultSleep, type Sleep } from './backoff.ts';

export interface RateLimit {
  /** Sustained requests per second; 0: unlimited. */
  readonly qps: number;
  /** Requests allowed at once after a quiet period (the bucket's size); at least 1. */
  readonly burst: number;
}

export class TokenBucket {
  private readonly limit: RateLimit;
  private readonly now: () => number;
  private readonly sleep: Sleep;
  /** Tokens at `at`; negative while callers are waiting for tokens they reserved. */
  private tokens: number;
  private at: number;

  constructor(limit: RateLimit, clock: { now?: () => number; sleep?: Sleep } = {}) {
    this.limit = { qps: limit.qps, burst: Math.max(1, limit.burst) };
    this.now = clock.now ?? Date.now;
    this.sleep = clock.sleep ?? defaultSleep;
    this.tokens = this.limit.burst;
    this.at = this.now();
  }

  /** Milliseconds the caller must wait for its token (0: go now); the token is taken either way. */
  reserve(): number {
    if (this.limit.qps <= 0) return 0;
    const now = this.now();
    const perMs = this.limit.qps / 1000;
    this.tokens = Math.min(this.limit.burst, this.tokens + (now - this.at) * perMs);
    this.at = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : -this.tokens / perMs;
  }

  /** Resolves when the caller may send its request. */
  async wait(): Promise<void> {
    const delay = this.reserve();
    if (delay > 0) await this.sleep(delay);
  }
}
