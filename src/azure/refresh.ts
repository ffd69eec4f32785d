// When to refresh a token, whether the current one may still be kept, and when to retry after a failure.
// Times are Unix milliseconds passed in (no clock here); expiry comes from the token's own claims, never assumed.
import type { JwtTimes } from './jwt.ts';

/** Refresh once half the lifetime has passed (msi-acrpull's default TTL fraction), leaving half for retries. */
export const DEFAULT_REFRESH_FRACTION = 0.5;

/**
 * The clock skew allowed for: at most 60 s, the leeway distribution's token verifier adds to `exp`
 * (registry/auth/token/token.go, Leeway), and at most a tenth of the lifetime so a short token stays usable.
 */
export const MAX_SKEW_MARGIN_MS = 60_000;

/**
 * Retry timing after a failed token request, in the shape of src/k8s/backoff.ts's Backoff (the layer order keeps
 * this module from importing it; its test checks the shape): pass it to that module's BackoffTimer, reset on success.
 * 1 s doubling to 30 s, so a token service back from an outage is used within half a minute.
 */
export const TOKEN_RETRY_BACKOFF = { duration: 1_000, factor: 2, jitter: 0.1, steps: Infinity, cap: 30_000 } as const;

/** A token's validity in Unix milliseconds: from when it counts as issued to its `exp`. */
export interface TokenLifetime {
  readonly start: number;
  readonly expiresAt: number;
}

/** A problem with a configured refresh fraction, or undefined when 0 < fraction < 1. */
export function refreshFractionProblem(fraction: number): string | undefined {
  return Number.isFinite(fraction) && fraction > 0 && fraction < 1
    ? undefined
    : `the refresh fraction must be a number above 0 and below 1, not ${fraction}`;
}

/**
 * A token's lifetime from its claims and the time it was received. The earlier of `iat` and receipt counts as the
 * start, so neither an issuer's clock running ahead nor a token the issuer had cached delays the refresh.
 */
export function lifetimeOf(times: JwtTimes, receivedAt: number): TokenLifetime {
  const issuedAt = times.iat === undefined ? receivedAt : Math.min(times.iat * 1000, receivedAt);
  return { start: issuedAt, expiresAt: times.exp * 1000 };
}

/** When to request a new token: `fraction` of the lifetime after its start (at once for a token born expired). */
export function refreshAt(lifetime: TokenLifetime, fraction: number = DEFAULT_REFRESH_FRACTION): number {
  const problem = refreshFractionProblem(fraction);
  if (problem !== undefined) throw new RangeError(problem);
  return lifetime.start + fraction * Math.max(0, lifetime.expiresAt - lifetime.start);
}

/** How long before `exp` a token stops counting as usable (see {@link MAX_SKEW_MARGIN_MS}). */
export function skewMargin(lifetime: TokenLifetime): number {
  return Math.min(MAX_SKEW_MARGIN_MS, Math.max(0, lifetime.expiresAt - lifetime.start) / 10);
}

/** The last moment a token is worth keeping in the pull secrets. */
export function usableUntil(lifetime: TokenLifetime): number {
  return lifetime.expiresAt - skewMargin(lifetime);
}

export function isUsable(lifetime: TokenLifetime, now: number): boolean {
  return now < usableUntil(lifetime);
}

/** What to do after a failed token request: keep the current token or report it gone, and when to try again. */
export interface AfterFailure {
  /** The current token is still usable: the pull secrets keep it (and nothing is written). */
  readonly keepCurrent: boolean;
  readonly retryAt: number;
}

/**
 * After a failed request at `now`, with the caller's next backoff delay: the retry waits that delay, but no longer
 * than the current token stays usable, so one more attempt is made before it lapses.
 */
export function afterFailure(current: TokenLifetime | undefined, now: number, backoffDelayMs: number): AfterFailure {
  const retryAt = now + backoffDelayMs;
  if (current === undefined || !isUsable(current, now)) return { keepCurrent: false, retryAt };
  return { keepCurrent: true, retryAt: Math.min(retryAt, usableUntil(current)) };
}
