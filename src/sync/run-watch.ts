// `sync-secrets --watch`: wires the credential source, the token refreshers, the namespace watch,
// leader election, the work queue and the health port, and stops them in the order that keeps two
// replicas from ever writing at once. Resolves once the health port listens; config, credential,
// kubeconfig and port errors throw first, after closing whatever had been opened.
import type { Logger } from 'pino';
import type { AcrRefreshToken } from '../azure/acr-token-client.ts';
import type { Config } from '../config/config.ts';
import { SYNC_DEFAULTS, SYNC_LEASE_NAME, type SyncTokenRequestResult } from '../constants.ts';
import type { Backoff } from '../k8s/backoff.ts';
import { inClusterNamespace } from '../k8s/kube-config.ts';
import { defaultIdentity, LeaderElector } from '../k8s/leader-election.ts';
import { NamespaceWatcher } from '../k8s/namespace-watch.ts';
import type { RateLimit } from '../k8s/rate-limit.ts';
import { SecretWatch } from '../k8s/secret-watch.ts';
import { secretStore } from '../k8s/secrets.ts';
import { startOrUndo } from '../process/startup.ts';
import { connect } from './connect.ts';
import { REQUEUE_BACKOFF, SyncController } from './controller.ts';
import { CredentialSource, credentialRedactor } from './credentials.ts';
import { desiredSecrets } from './desired.ts';
import { startHealthServer, watchStallReason } from './health.ts';
import { createSyncMetrics, type SyncMetrics } from './metrics.ts';
import { Reconciler, WRITE_BACKOFF } from './reconciler.ts';
import { SHUTDOWN_EVENT_FLUSH_MS, type SyncEvents, syncEventRecorder } from './sync-events.ts';
import {
  type AcquireToken,
  type AzureEntry,
  describeFailure,
  failureResult,
  TokenRefresher,
} from './token-refresher.ts';

/** A failed namespace list or watch is retried from 250 ms, doubling up to 5 s, jittered by up to 20%. */
const WATCH_BACKOFF: Backoff = {
  duration: 250,
  factor: 2,
  jitter: 0.2,
  steps: Number.POSITIVE_INFINITY,
  cap: SYNC_DEFAULTS.watchBackoffMaxMs,
};

export interface WatchOptions {
  /** The config file, whose credential files are watched. */
  readonly configPath: string;
  readonly config: Config;
  readonly kubeconfig: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** --kube-api-qps and --kube-api-burst. */
  readonly kubeApi?: RateLimit;
  /** --concurrency: namespaces reconciled at once. */
  readonly concurrency?: number;
  readonly healthPort: number;
  readonly host: string;
  readonly leaseNamespace: string | undefined;
  readonly leaseIdentity: string | undefined;
  readonly resyncSeconds: number;
  readonly watchStallSeconds: number;
  readonly logger: Logger;
  /** The azure entries, their tokens requested at start, and how to request the next ones. */
  readonly tokens: {
    readonly entries: readonly AzureEntry[];
    readonly initial: ReadonlyMap<number, AcrRefreshToken>;
    /** The start-up requests' results, counted in the metrics. */
    readonly startupResults: readonly { readonly server: string; readonly result: SyncTokenRequestResult }[];
    readonly acquire: AcquireToken;
    readonly refreshFraction: number;
  };
}

export interface RunningSync {
  readonly healthUrl: string;
  /** Stops watching, finishes reconciles in flight, releases the Lease, closes the health port. */
  readonly shutdown: (signal: string) => Promise<void>;
}

export function watch(options: WatchOptions): Promise<RunningSync> {
  return startOrUndo((undo) => start(options, undo));
}

async function start(options: WatchOptions, undo: (close: () => unknown) => void): Promise<RunningSync> {
  const { config, logger } = options;
  const startedAt = Date.now();
  let shuttingDown = false;
  let controller: SyncController | undefined;
  let syncEvents: SyncEvents | undefined;
  // One rule for "this replica may write", shared by the reconciler, the queue and the metrics.
  // (A declaration, so it can be named before the elector it reads exists.)
  function writing(): boolean {
    return !shuttingDown && elector.isLeader();
  }
  const { tokens } = options;
  const metrics = createSyncMetrics({
    processMetrics: true,
    isLeader: writing,
    optedInNamespaces: () => controller?.optedInNamespaces() ?? 0,
    tokenServers: tokens.entries.map((entry) => entry.server),
  });
  for (const { server, result } of tokens.startupResults) metrics.tokenRequests.inc({ server, result });
  const credentials = new CredentialSource({
    registries: config.registries,
    source: options.configPath,
    pollIntervalMs: SYNC_DEFAULTS.credentialPollMs,
    tokens: new Map([...tokens.initial].map(([index, token]) => [index, token.refreshToken])),
    onChange: (next) => {
      const desired = desiredSecrets(next);
      logger.info(
        { secrets: desired.map((d) => ({ name: d.name, contentHash: d.contentHash.slice(0, 'sha256:'.length + 12) })) },
        'credentials changed; updating every opted-in namespace',
      );
      metrics.credentialReloads.inc({ result: 'loaded' });
      controller?.credentialsChanged(desired);
    },
    onReject: (reason) => {
      metrics.credentialReloads.inc({ result: 'rejected' });
      if (writing()) syncEvents?.credentialsRejected();
      logger.warn({ reason }, 'changed credential files cannot be used; keeping the credentials in use');
    },
  });
  const redact = credentialRedactor(() => credentials.redactionValues());
  const refreshers = tokenRefreshers(tokens, {
    metrics,
    logger,
    redact,
    setToken: (index, token) => controller?.credentialsChanged(desiredSecrets(credentials.setToken(index, token))),
    // Every replica refreshes its own token; only the leader's is in the secrets, so only it tells the namespaces.
    rejected: (server, secret, expired) => {
      if (writing()) syncEvents?.tokenRejected(server, secret, expired);
    },
  });
  const cluster = connect(options.kubeconfig, options.env, options.kubeApi);
  const { clients } = cluster;
  undo(() => clients.close());
  const leaseNamespace = options.leaseNamespace ?? inClusterNamespace() ?? SYNC_DEFAULTS.leaseNamespace;
  const elector = new LeaderElector({
    coordination: clients.coordination,
    namespace: leaseNamespace,
    name: SYNC_LEASE_NAME,
    identity: options.leaseIdentity ?? defaultIdentity(),
    leaseDurationSeconds: SYNC_DEFAULTS.leaseDurationSeconds,
    renewDeadlineMs: SYNC_DEFAULTS.renewDeadlineMs,
    retryPeriodMs: SYNC_DEFAULTS.retryPeriodMs,
    onStartedLeading: () => {
      logger.info(
        { identity: elector.identity, lease: `${leaseNamespace}/${SYNC_LEASE_NAME}` },
        'leading: this replica writes',
      );
      controller?.enqueueAll();
    },
    onStoppedLeading: () =>
      logger.warn({ identity: elector.identity }, 'no longer leading: this replica stops writing'),
    onError: (message) => logger.warn({ error: message }, 'lease call failed'),
  });
  const recorder = syncEventRecorder(clients.events, logger, elector.identity, {
    onDropped: (type) => metrics.eventsDropped.inc({ type }),
  });
  syncEvents = recorder.events;
  // Each watch ends (a sign of progress) well within the stall limit even in a quiet cluster, so
  // liveness never fails for want of events: the default 60 s limit gives 20 s watches.
  const watchTimeoutSeconds = Math.max(
    1,
    Math.min(SYNC_DEFAULTS.watchTimeoutSeconds, Math.floor(options.watchStallSeconds / 3)),
  );
  // Reconciles read the configured Secrets from this watch's cache; a change by anyone queues its namespace.
  const secretWatch = new SecretWatch({
    raw: clients.raw,
    kubeConfig: clients.kubeConfig,
    names: desiredSecrets(credentials.current()).map((secret) => secret.name),
    onChange: (namespace, name, secret) => controller?.secretChanged(namespace, name, secret),
    onError: (message) => logger.warn({ error: message }, 'secret watch interrupted; retrying'),
    watchTimeoutSeconds,
    backoff: WATCH_BACKOFF,
  });
  const reconciler = new Reconciler({
    store: secretWatch.store(secretStore(clients.raw)),
    desired: desiredSecrets(credentials.current()),
    optIn: config.optIn,
    prune: config.prune,
    canWrite: writing,
    logger,
    redact,
    backoff: WRITE_BACKOFF,
    events: recorder.events,
  });
  controller = new SyncController({
    reconciler,
    isLeader: writing,
    concurrency: options.concurrency ?? SYNC_DEFAULTS.concurrency,
    resyncMs: options.resyncSeconds * 1000,
    requeueBackoff: REQUEUE_BACKOFF,
    logger,
    metrics,
  });
  const watcher = new NamespaceWatcher({
    raw: clients.raw,
    kubeConfig: clients.kubeConfig,
    handlers: controller.handlers,
    watchTimeoutSeconds,
    backoff: WATCH_BACKOFF,
  });
  const stallMs = options.watchStallSeconds * 1000;
  // The last step that can fail: nothing below has started yet when the port is taken.
  const health = await startHealthServer(
    {
      // A stalled secret watch hides drift as surely as a stalled namespace watch hides new namespaces.
      notLiveReason: () =>
        watchStallReason(
          [
            { name: 'namespace watch', lastProgressAt: watcher.lastProgressAt() },
            { name: 'secret watch', lastProgressAt: secretWatch.lastProgressAt() },
          ],
          startedAt,
          stallMs,
        ),
      notReadyReason: () => {
        if (shuttingDown) return 'shutting down';
        if (!watcher.hasSynced()) return 'namespaces not listed yet';
        return undefined;
      },
      registry: metrics.registry,
    },
    { host: options.host, port: options.healthPort },
  );
  const healthUrl = health.url;

  controller.start();
  credentials.start();
  for (const refresher of refreshers) refresher.start();
  watcher.start();
  secretWatch.start();
  elector.start();
  logger.info(
    {
      health: healthUrl,
      kubeconfig: cluster.source,
      lease: `${leaseNamespace}/${SYNC_LEASE_NAME}`,
      identity: elector.identity,
      optIn: `${config.optIn.label}=${config.optIn.value}`,
      prune: config.prune,
      secrets: desiredSecrets(credentials.current()).map((d) => `${d.name} <- ${d.servers.join(', ')}`),
    },
    'listening',
  );

  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    watcher.stop();
    secretWatch.stop();
    credentials.stop();
    await Promise.all(refreshers.map((refresher) => refresher.stop()));
    await controller.stop();
    await recorder.shutdown(SHUTDOWN_EVENT_FLUSH_MS);
    // Last, so a successor takes over only after this replica has stopped writing.
    await elector.stop();
    await health.close();
    await clients.close();
    logger.info('stopped');
  };
  return { healthUrl, shutdown };
}

/**
 * A refresher per azure entry, counting its requests and logging its outcomes. Every replica keeps its own token
 * fresh and the leader's is the one written: a new leader rewrites the secrets (in place, same UID) with the token
 * it already holds, so a takeover waits for no token request.
 */
function tokenRefreshers(
  tokens: WatchOptions['tokens'],
  deps: {
    readonly metrics: SyncMetrics;
    readonly logger: Logger;
    readonly redact: (text: string) => string;
    readonly setToken: (index: number, token: string) => void;
    /** A refusal (not a transient failure); `expired`: the token in the secrets is no longer usable. */
    readonly rejected: (server: string, secret: string, expired: boolean) => void;
  },
): TokenRefresher[] {
  const { metrics, logger, redact } = deps;
  return tokens.entries.map((entry) => {
    const initial = tokens.initial.get(entry.index);
    if (initial === undefined) throw new Error(`no start-up token for registries[${entry.index}]`);
    const server = entry.server;
    metrics.tokenExpiry.set({ server }, initial.times.exp);
    return new TokenRefresher({
      initial,
      fraction: tokens.refreshFraction,
      acquire: () =>
        tokens.acquire(entry).then(
          (token) => {
            metrics.tokenRequests.inc({ server, result: 'issued' });
            return token;
          },
          (error: unknown) => {
            metrics.tokenRequests.inc({ server, result: failureResult(error) });
            throw error;
          },
        ),
      onRefreshed: (token) => {
        metrics.tokenExpiry.set({ server }, token.times.exp);
        const expiresAt = new Date(token.times.exp * 1000).toISOString();
        logger.info({ server, secret: entry.secretName, expiresAt }, 'token refreshed');
        deps.setToken(entry.index, token.refreshToken);
      },
      onFailure: ({ error, keptUntil, retryAt }) => {
        if (failureResult(error) === 'rejected') deps.rejected(server, entry.secretName, keptUntil === undefined);
        logger.warn(
          {
            server,
            secret: entry.secretName,
            ...describeFailure(error, redact),
            keptUntil: keptUntil === undefined ? 'expired' : new Date(keptUntil).toISOString(),
            retryAt: new Date(retryAt).toISOString(),
          },
          keptUntil === undefined
            ? 'token refresh failed; the token in the pull secrets has expired'
            : 'token refresh failed; keeping the current token',
        );
      },
    });
  });
}
