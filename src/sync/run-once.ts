// `sync-secrets --once` and `--dry-run` (without --namespace, which needs no cluster): one pass over
// the opted-in namespaces, writing the pull secrets or printing their manifests.
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { SYNC_DEFAULTS } from '../constants.ts';
import { retry } from '../k8s/backoff.ts';
import { toKubeApiError } from '../k8s/errors.ts';
import { type Attempt, eachNamespace, listNamespaces, type NamespaceInfo } from '../k8s/namespace-watch.ts';
import type { RateLimit } from '../k8s/rate-limit.ts';
import { listedSecretStore } from '../k8s/secret-watch.ts';
import { secretStore } from '../k8s/secrets.ts';
import { connect, type SyncCluster } from './connect.ts';
import { credentialRedactor, secretValues, type RegistryCredential } from './credentials.ts';
import { desiredSecrets } from './desired.ts';
import { dryRunManifests, type OutputFormat } from './manifests.ts';
import { formatSummary, isOptedIn, Reconciler, retryDecision, WRITE_BACKOFF } from './reconciler.ts';
import { SHUTDOWN_EVENT_FLUSH_MS, syncEventRecorder } from './sync-events.ts';

export interface OnceOptions {
  readonly kubeconfig: string | undefined;
  readonly env: NodeJS.ProcessEnv;
  /** --kube-api-qps and --kube-api-burst. */
  readonly kubeApi?: RateLimit;
  /** --concurrency: namespaces reconciled at once. */
  readonly concurrency?: number;
  readonly config: Config;
  readonly credentials: readonly RegistryCredential[];
  readonly logger: Logger;
  /** Where the product goes: the summary line or the manifests. */
  readonly write: (text: string) => void;
}

/** Runs a list request, retrying transient failures with the write backoff. */
function listRetries(logger: Logger): Attempt {
  return (request) =>
    retry(WRITE_BACKOFF, request, {
      decide: retryDecision,
      onRetry: (error, attempt) =>
        logger.warn(
          { attempt, error: toKubeApiError(error, 'list namespaces').message },
          'listing namespaces failed; retrying',
        ),
    });
}

/** Every namespace once, as its page arrives: a restarted list (an expired continue token) repeats none. */
async function* eachNamespaceOnce(cluster: SyncCluster, logger: Logger): AsyncGenerator<NamespaceInfo> {
  const seen = new Set<string>();
  for await (const namespace of eachNamespace(cluster.clients.raw, listRetries(logger))) {
    if (seen.has(namespace.name)) continue;
    seen.add(namespace.name);
    yield namespace;
  }
}

/** `source` with its first item asked for now (its first request goes out), for iterating later. */
function startedNow<T>(source: AsyncIterator<T>): AsyncIterable<T> {
  const first = source.next();
  // Read when iterated; never iterated (a list of the Secrets failed first), its failure is nobody's news.
  first.catch(() => undefined);
  return {
    async *[Symbol.asyncIterator]() {
      for (let next = await first; next.done !== true; next = await source.next()) yield next.value;
    },
  };
}

/** Prints the manifests for every opted-in namespace of the cluster; exit code 0. */
export async function dryRun(options: OnceOptions & { output: OutputFormat }): Promise<number> {
  const { config, logger } = options;
  const cluster = connect(options.kubeconfig, options.env, options.kubeApi);
  let namespaces: string[];
  try {
    const { namespaces: all } = await listNamespaces(cluster.clients.raw, listRetries(logger));
    namespaces = all.filter((n) => !n.terminating && isOptedIn(n, config.optIn)).map((n) => n.name);
  } finally {
    await cluster.clients.close();
  }
  logger.info(
    { kubeconfig: cluster.source, namespaces: namespaces.length },
    'dry run: manifests for the opted-in namespaces',
  );
  options.write(dryRunManifests(namespaces, options.credentials, options.output));
  return 0;
}

/** One reconcile of every namespace; exit code 1 when any secret still failed after retries. */
export async function once(options: OnceOptions): Promise<number> {
  const { config, credentials, logger } = options;
  const cluster = connect(options.kubeconfig, options.env, options.kubeApi);
  // Normal events (SecretCreated, SecretUpdated) wait for the end: sent during the writes they slowed a cold run at
  // 1,000 namespaces by a fifth, and most are dropped at the end of a large run anyway (EventRecorder.shutdown).
  const recorder = syncEventRecorder(cluster.clients.events, logger, hostname(), { holdNormal: true });
  try {
    const desired = desiredSecrets(credentials);
    // One list per configured name instead of a GET per Secret: a warm run at 10,000 namespaces is 40 requests.
    const { raw } = cluster.clients;
    const names = desired.map((secret) => secret.name);
    // The namespaces are listed while the Secrets are (neither needs the other), and reconciled as their pages
    // arrive: the first write waits for the Secrets' lists and one page of namespaces, not for every page.
    const namespaces = startedNow(eachNamespaceOnce(cluster, logger));
    const store = await retry(
      WRITE_BACKOFF,
      () =>
        listedSecretStore(raw, names, secretStore(raw), (error) =>
          logger.warn({ error }, 'cannot list the configured secrets by name; reading each one instead'),
        ),
      {
        decide: retryDecision,
        onRetry: (error, attempt) =>
          logger.warn(
            { attempt, error: toKubeApiError(error, 'list secrets').message },
            'listing the configured secrets failed; retrying',
          ),
      },
    );
    const reconciler = new Reconciler({
      store,
      desired,
      optIn: config.optIn,
      prune: config.prune,
      // --once does not take the Lease: its writes are conflict-safe (create, or update at the
      // resourceVersion read) and idempotent, so running next to a --watch leader converges.
      canWrite: () => true,
      logger,
      redact: credentialRedactor(() => secretValues(credentials)),
      backoff: WRITE_BACKOFF,
      events: recorder.events,
    });
    const summary = await reconciler.reconcileAll(namespaces, options.concurrency ?? SYNC_DEFAULTS.concurrency);
    options.write(`${formatSummary(summary, config.prune)}\n`);
    return summary.failed > 0 ? 1 : 0;
  } finally {
    // Events never hold up the result: held Normal ones go out only when the budget sends them all within a short
    // grace, else are dropped; Warnings get a bounded wait (drops counted in a line).
    await recorder.shutdown(SHUTDOWN_EVENT_FLUSH_MS);
    await cluster.clients.close();
  }
}
