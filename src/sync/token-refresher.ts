// The ACR refresh tokens of a config's `credentials.azure` entries: the first one of each at start (bounded
// retries, then one line and exit 1), and in --watch a refresher per entry that requests the next one when a
// fraction of the lifetime has passed, keeps the current one through failures while it is usable and retries
// with backoff. The token client is injected (src/azure/acr-token-client.ts in the CLI), timers are Node's.
import type { AcrRefreshToken } from '../azure/acr-token-client.ts';
import type { AzureCredentials } from '../azure/azure-credentials.ts';
import {
  afterFailure,
  lifetimeOf,
  refreshAt,
  TOKEN_RETRY_BACKOFF,
  type TokenLifetime,
  usableUntil,
} from '../azure/refresh.ts';
import { ConfigError, type RegistryEntry } from '../config/config.ts';
import type { SyncTokenRequestResult } from '../constants.ts';
import { BackoffTimer, retry, type Sleep } from '../k8s/backoff.ts';
import { entryLabel } from './credentials.ts';

/** One registry entry with azure credentials, by its index in the config's `registries`. */
export interface AzureEntry {
  readonly index: number;
  readonly server: string;
  readonly secretName: string;
  readonly azure: AzureCredentials;
}

/** Requests a new ACR refresh token for an entry (the Entra request and the ACR exchange). */
export type AcquireToken = (entry: AzureEntry) => Promise<AcrRefreshToken>;

export function azureEntries(registries: readonly RegistryEntry[]): AzureEntry[] {
  return registries.flatMap((entry, index) =>
    entry.credentials?.kind === 'azure'
      ? [{ index, server: entry.server, secretName: entry.secretName, azure: entry.credentials.azure }]
      : [],
  );
}

/**
 * Whether waiting can help: AcrTokenError says so itself (network, timeout, 429, 5xx); any other error is not
 * one the client meant to throw, and is retried rather than trusted to be final.
 */
export function isRetriable(error: unknown): boolean {
  const flag = (error as { retriable?: unknown } | undefined)?.retriable;
  return typeof flag === 'boolean' ? flag : true;
}

/** The metric's result for a failed request. */
export function failureResult(error: unknown): SyncTokenRequestResult {
  return isRetriable(error) ? 'failed' : 'rejected';
}

/**
 * The client's one-line message (it never holds a token; `redact` covers errors from elsewhere), and the stage
 * when the client named one.
 */
export function describeFailure(
  error: unknown,
  redact: (text: string) => string = (text) => text,
): { readonly stage?: string; readonly error: string } {
  const stage = (error as { stage?: unknown } | undefined)?.stage;
  const message = redact(error instanceof Error ? error.message : String(error));
  return typeof stage === 'string' ? { stage, error: message } : { error: message };
}

export interface StartupTokenOptions {
  /** The config file, for the error line. */
  readonly source: string;
  readonly acquire: AcquireToken;
  /** Every request's result, for the metrics of --watch. */
  readonly onResult?: (entry: AzureEntry, result: SyncTokenRequestResult) => void;
  /** Before each retry of a retriable failure. */
  readonly onRetry?: (entry: AzureEntry, error: unknown, attempt: number, delayMs: number) => void;
  readonly attempts: number;
  readonly sleep?: Sleep;
  readonly random?: () => number;
}

/**
 * Every azure entry's first token, requested side by side. A refusal ends an entry at once, a retriable failure
 * after `attempts`; the first entry (in config order) that failed is thrown as a ConfigError naming it.
 */
export async function requestStartupTokens(
  entries: readonly AzureEntry[],
  options: StartupTokenOptions,
): Promise<ReadonlyMap<number, AcrRefreshToken>> {
  const backoff = { ...TOKEN_RETRY_BACKOFF, steps: options.attempts };
  const settled = await Promise.allSettled(
    entries.map((entry) =>
      retry(
        backoff,
        async () => {
          try {
            const token = await options.acquire(entry);
            options.onResult?.(entry, 'issued');
            return token;
          } catch (error) {
            options.onResult?.(entry, failureResult(error));
            throw error;
          }
        },
        {
          decide: (error) => (isRetriable(error) ? 'backoff' : 'stop'),
          onRetry: (error, attempt, delayMs) => options.onRetry?.(entry, error, attempt, delayMs),
          ...(options.sleep === undefined ? {} : { sleep: options.sleep }),
          ...(options.random === undefined ? {} : { random: options.random }),
        },
      ),
    ),
  );
  const tokens = new Map<number, AcrRefreshToken>();
  settled.forEach((outcome, i) => {
    const entry = entries[i] as AzureEntry;
    if (outcome.status === 'rejected') {
      const label = entryLabel(options.source, entry.index, entry);
      throw new ConfigError(`${label}: ${describeFailure(outcome.reason).error}`);
    }
    tokens.set(entry.index, outcome.value);
  });
  return tokens;
}

/** No refresh is scheduled sooner than this after the last one, so a token born (nearly) expired cannot spin. */
export const MIN_REFRESH_DELAY_MS = 1_000;
/** setTimeout's largest delay; a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RefreshFailure {
  readonly error: unknown;
  /** Until when the current token stays in the pull secrets; undefined when it is no longer usable. */
  readonly keptUntil: number | undefined;
  readonly retryAt: number;
}

export interface TokenRefresherOptions {
  readonly initial: AcrRefreshToken;
  /** 0 < fraction < 1 (checked by the CLI). */
  readonly fraction: number;
  readonly acquire: () => Promise<AcrRefreshToken>;
  /** A new token, before it becomes current. */
  readonly onRefreshed: (token: AcrRefreshToken) => void;
  readonly onFailure: (failure: RefreshFailure) => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** Keeps one entry's token fresh: a timer at the refresh time, a backoff timer between failed attempts. */
export class TokenRefresher {
  private token: AcrRefreshToken;
  private lifetime: TokenLifetime;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = true;
  private readonly backoff: BackoffTimer;
  private readonly options: TokenRefresherOptions;
  private readonly now: () => number;

  constructor(options: TokenRefresherOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.token = options.initial;
    this.lifetime = lifetimeOf(options.initial.times, options.initial.receivedAt);
    this.backoff = new BackoffTimer(TOKEN_RETRY_BACKOFF, options.random);
  }

  current(): AcrRefreshToken {
    return this.token;
  }

  /** Schedules the first refresh. Idempotent. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.scheduleRefresh();
  }

  /** Cancels the timer; a request in flight is waited for and its answer dropped. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  private scheduleRefresh(): void {
    const at = refreshAt(this.lifetime, this.options.fraction);
    this.schedule(Math.max(at, this.now() + MIN_REFRESH_DELAY_MS));
  }

  private schedule(at: number): void {
    if (this.stopped) return;
    const delay = Math.max(0, at - this.now());
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (delay > MAX_TIMER_MS) this.schedule(at);
        else this.inFlight = this.refresh();
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  private async refresh(): Promise<void> {
    let token: AcrRefreshToken;
    try {
      token = await this.options.acquire();
    } catch (error) {
      if (this.stopped) return;
      const decision = afterFailure(this.lifetime, this.now(), this.backoff.step());
      this.options.onFailure({
        error,
        keptUntil: decision.keepCurrent ? usableUntil(this.lifetime) : undefined,
        retryAt: decision.retryAt,
      });
      this.schedule(decision.retryAt);
      return;
    }
    if (this.stopped) return;
    this.backoff.reset();
    this.options.onRefreshed(token);
    this.token = token;
    this.lifetime = lifetimeOf(token.times, token.receivedAt);
    this.scheduleRefresh();
  }
}
