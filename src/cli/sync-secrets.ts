// `acr-pull-webhook sync-secrets`: wires config, credentials, the API clients, the namespace watch,
// leader election and the health port; runs once or keeps watching; handles SIGTERM (releasing the
// Lease); exits. Logs go to stderr so that stdout carries only the product: the --once summary or
// the --dry-run manifests.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pino, { type Logger } from 'pino';
import { loadConfig, type Config } from '../config/config.ts';
import { DEFAULTS, ENV, SYNC_DEFAULTS, SYNC_ENV, SYNC_LEASE_NAME } from '../constants.ts';
import type { KubeClients } from '../k8s/client.ts';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import type { SyncController } from '../sync/controller.ts';
import { CredentialSource, readCredentials, type RegistryCredential } from '../sync/credentials.ts';
import { desiredSecrets, secretManifest } from '../sync/desired.ts';
import { healthListener, watchStallReason } from '../sync/health.ts';
import { formatManifests, type OutputFormat } from '../sync/manifests.ts';
import { createSyncMetrics } from '../sync/metrics.ts';
import { UsageError, parseFlags, parseInteger, parseLogLevel } from '../process/flags.ts';

/**
 * The modules that talk to the cluster, loaded only when a mode needs them: the API client library
 * takes most of a second to load, and `serve`, `explain` (which share main.ts) and
 * `--dry-run --namespace` never use it.
 */
async function clusterModules() {
  const [client, kubeConfig, election, namespaces, secrets, reconciler, controller] = await Promise.all([
    import('../k8s/client.ts'),
    import('../k8s/kube-config.ts'),
    import('../k8s/leader-election.ts'),
    import('../k8s/namespace-watch.ts'),
    import('../k8s/secrets.ts'),
    import('../sync/reconciler.ts'),
    import('../sync/controller.ts'),
  ]);
  return { ...client, ...kubeConfig, ...election, ...namespaces, ...secrets, ...reconciler, ...controller };
}
type ClusterModules = Awaited<ReturnType<typeof clusterModules>>;

export const SYNC_SECRETS_USAGE = `Usage: acr-pull-webhook sync-secrets --config FILE (--once | --watch | --dry-run) [options]

Creates and updates the pull secrets (type kubernetes.io/dockerconfigjson) named in the config, from
each entry's credentials files, in every namespace labelled with the opt-in label
(default acr-pull-webhook/inject=enabled). Secrets it did not create are never modified.

Modes:
  --once                  create what is missing, update what differs, print a one-line summary;
                          exit 1 if anything still failed after retries
  --watch                 keep every opted-in namespace right: new and newly labelled namespaces,
                          rotated credential files, periodic resync; only the Lease holder writes
  --dry-run               print the Secret manifests instead of writing them
    --namespace NS        ... for this one namespace, without contacting any cluster
    -o, --output FMT      json or yaml (default yaml)

Options (each also read from the environment variable shown):
  --config FILE           registries and credentials (YAML or JSON)   ${ENV.config}
  --kubeconfig FILE       cluster credentials (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --health-port N         --watch: /healthz, /readyz and /metrics (default ${SYNC_DEFAULTS.healthPort})  ${SYNC_ENV.healthPort}
  --host ADDR             address the health port binds (default ${DEFAULTS.host})  ${ENV.host}
  --lease-namespace NS    --watch: namespace of the Lease (default: the pod's)  ${SYNC_ENV.leaseNamespace}
  --lease-identity ID     --watch: this replica's name in the Lease (default: host + random) ${SYNC_ENV.identity}
  --resync-period S       --watch: full reconcile every S seconds (default ${SYNC_DEFAULTS.resyncSeconds})
  --watch-stall-timeout S --watch: /healthz fails after S seconds without watch progress (default ${SYNC_DEFAULTS.watchStallSeconds})
  --log-level LEVEL       fatal|error|warn|info|debug (default ${DEFAULTS.logLevel})   ${ENV.logLevel}
`;

export type SyncMode = 'once' | 'watch' | 'dry-run';

export interface SyncSecretsOptions {
  readonly config: string;
  readonly mode: SyncMode;
  /** --dry-run only: print for this namespace without a cluster. */
  readonly namespace: string | undefined;
  readonly output: OutputFormat;
  readonly kubeconfig: string | undefined;
  readonly healthPort: number;
  readonly host: string;
  readonly leaseNamespace: string | undefined;
  readonly leaseIdentity: string | undefined;
  readonly resyncSeconds: number;
  readonly watchStallSeconds: number;
  readonly logLevel: string;
}

/** Flags win over environment variables, which win over defaults. */
export function parseSyncSecretsArgs(argv: readonly string[], env: NodeJS.ProcessEnv): SyncSecretsOptions {
  const { values } = parseFlags({
    args: [...argv],
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      once: { type: 'boolean' },
      watch: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      namespace: { type: 'string', short: 'n' },
      output: { type: 'string', short: 'o' },
      kubeconfig: { type: 'string' },
      'health-port': { type: 'string' },
      host: { type: 'string' },
      'lease-namespace': { type: 'string' },
      'lease-identity': { type: 'string' },
      'resync-period': { type: 'string' },
      'watch-stall-timeout': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const pick = (value: string | undefined, variable?: string): string | undefined => {
    const picked = value ?? (variable === undefined ? undefined : env[variable]);
    return picked === '' ? undefined : picked;
  };
  const integer = (flag: string, value: string | undefined, fallback: number, min: number, max: number): number =>
    value === undefined ? fallback : parseInteger(value, `--${flag}`, min, max);

  const config = pick(values.config, ENV.config);
  if (config === undefined) throw new UsageError(`--config (or ${ENV.config}) is required`);
  const modes = (['once', 'watch', 'dry-run'] as const).filter((mode) => values[mode] === true);
  // --dry-run --once reads naturally ("what would one pass write"); any other pair is ambiguous.
  const mode: SyncMode | undefined = modes.includes('dry-run')
    ? modes.includes('watch')
      ? undefined
      : 'dry-run'
    : modes.length === 1
      ? modes[0]
      : undefined;
  if (mode === undefined) throw new UsageError('exactly one of --once, --watch or --dry-run is required');
  if (values.namespace !== undefined && mode !== 'dry-run')
    throw new UsageError('--namespace only goes with --dry-run');
  if (values.output !== undefined && mode !== 'dry-run') throw new UsageError('--output only goes with --dry-run');
  const output = values.output ?? 'yaml';
  if (output !== 'json' && output !== 'yaml') throw new UsageError(`--output: "${output}" is not one of json, yaml`);
  const logLevel = pick(values['log-level'], ENV.logLevel) ?? DEFAULTS.logLevel;
  parseLogLevel(logLevel);
  return {
    config,
    mode,
    namespace: pick(values.namespace),
    output,
    kubeconfig: pick(values.kubeconfig),
    healthPort: integer(
      'health-port',
      pick(values['health-port'], SYNC_ENV.healthPort),
      SYNC_DEFAULTS.healthPort,
      0,
      65535,
    ),
    host: pick(values.host, ENV.host) ?? DEFAULTS.host,
    leaseNamespace: pick(values['lease-namespace'], SYNC_ENV.leaseNamespace),
    leaseIdentity: pick(values['lease-identity'], SYNC_ENV.identity),
    resyncSeconds: integer('resync-period', pick(values['resync-period']), SYNC_DEFAULTS.resyncSeconds, 1, 86_400),
    watchStallSeconds: integer(
      'watch-stall-timeout',
      pick(values['watch-stall-timeout']),
      SYNC_DEFAULTS.watchStallSeconds,
      1,
      3_600,
    ),
    logLevel,
  };
}

/** pino JSON lines on stderr, written synchronously so nothing is lost when --once exits. */
export function createSyncLogger(level: string): Logger {
  return pino(
    { level, base: { service: 'acr-pull-webhook', command: 'sync-secrets' } },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** Every form a credential takes in a Secret or an error: raw, and inside the base64 `auth`. */
function secretValues(credentials: readonly RegistryCredential[]): string[] {
  return credentials.flatMap((c) => [
    c.username,
    c.password,
    Buffer.from(`${c.username}:${c.password}`).toString('base64'),
  ]);
}

function userAgent(): string {
  return `acr-pull-webhook-sync-secrets/${process.version}`;
}

interface Cluster {
  readonly clients: KubeClients;
  readonly source: string;
}

function connect(m: ClusterModules, options: SyncSecretsOptions): Cluster {
  const { kubeConfig, source } = m.loadKubeConfig({ flag: options.kubeconfig, env: process.env });
  return {
    clients: m.makeClients(kubeConfig, { userAgent: userAgent() }),
    source,
  };
}

/** Lists namespaces, retrying transient failures with backoff like the writes. */
async function listWithRetries(m: ClusterModules, cluster: Cluster, logger: Logger): Promise<readonly NamespaceInfo[]> {
  let delay: number = SYNC_DEFAULTS.retryBaseMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return (await m.listNamespaces(cluster.clients.core)).namespaces;
    } catch (error) {
      const failure = error as { retryable?: boolean; message: string };
      if (failure.retryable !== true || attempt >= SYNC_DEFAULTS.writeAttempts) throw error;
      logger.warn({ attempt, error: failure.message }, 'listing namespaces failed; retrying');
      await sleep(delay);
      delay = Math.min(delay * 2, SYNC_DEFAULTS.retryMaxMs);
    }
  }
}

async function dryRun(
  options: SyncSecretsOptions,
  config: Config,
  credentials: readonly RegistryCredential[],
  logger: Logger,
  write: (text: string) => void,
): Promise<number> {
  const desired = desiredSecrets(credentials);
  let namespaces: (string | undefined)[];
  if (options.namespace !== undefined) {
    namespaces = [options.namespace];
  } else {
    const m = await clusterModules();
    const cluster = connect(m, options);
    try {
      const all = await listWithRetries(m, cluster, logger);
      namespaces = all.filter((n) => !n.terminating && m.isOptedIn(n, config.optIn)).map((n) => n.name);
    } finally {
      await cluster.clients.close();
    }
    logger.info(
      { kubeconfig: cluster.source, namespaces: namespaces.length },
      'dry run: manifests for the opted-in namespaces',
    );
  }
  const manifests = namespaces.flatMap((namespace) => desired.map((secret) => secretManifest(secret, namespace)));
  write(formatManifests(manifests, options.output));
  return 0;
}

async function once(
  options: SyncSecretsOptions,
  config: Config,
  credentials: readonly RegistryCredential[],
  logger: Logger,
  write: (text: string) => void,
): Promise<number> {
  const m = await clusterModules();
  const cluster = connect(m, options);
  try {
    const namespaces = await listWithRetries(m, cluster, logger);
    const reconciler = new m.Reconciler({
      store: m.secretStore(cluster.clients.core),
      desired: desiredSecrets(credentials),
      optIn: config.optIn,
      prune: config.prune,
      // --once does not take the Lease: its writes are conflict-safe (create, or update at the
      // resourceVersion read) and idempotent, so running next to a --watch leader converges.
      canWrite: () => true,
      logger,
      redact: m.credentialRedactor(() => secretValues(credentials)),
      writeAttempts: SYNC_DEFAULTS.writeAttempts,
      retryBaseMs: SYNC_DEFAULTS.retryBaseMs,
      retryMaxMs: SYNC_DEFAULTS.retryMaxMs,
    });
    const summary = await reconciler.reconcileAll(namespaces, SYNC_DEFAULTS.concurrency);
    write(`${m.formatSummary(summary, config.prune)}\n`);
    return summary.failed > 0 ? 1 : 0;
  } finally {
    await cluster.clients.close();
  }
}

export interface RunningSync {
  readonly healthUrl: string;
  /** Stops watching, finishes reconciles in flight, releases the Lease, closes the health port. */
  readonly shutdown: (signal: string) => Promise<void>;
}

/** Starts --watch; resolves once the health port listens. Config, credential and kubeconfig errors throw first. */
export async function watch(options: SyncSecretsOptions, config: Config, logger: Logger): Promise<RunningSync> {
  const m = await clusterModules();
  const startedAt = Date.now();
  let shuttingDown = false;
  let controller: SyncController | undefined;
  // One rule for "this replica may write", shared by the reconciler, the queue and the metrics.
  // (A declaration, so it can be named before the elector it reads exists.)
  function writing(): boolean {
    return !shuttingDown && elector.isLeader();
  }
  const metrics = createSyncMetrics({
    processMetrics: true,
    isLeader: writing,
    optedInNamespaces: () => controller?.optedInNamespaces() ?? 0,
  });
  const credentials = new CredentialSource({
    registries: config.registries,
    source: options.config,
    pollIntervalMs: SYNC_DEFAULTS.credentialPollMs,
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
      logger.warn({ reason }, 'changed credential files cannot be used; keeping the credentials in use');
    },
  });
  const cluster = connect(m, options);
  const { clients } = cluster;
  const leaseNamespace = options.leaseNamespace ?? m.inClusterNamespace() ?? SYNC_DEFAULTS.leaseNamespace;
  const elector = new m.LeaderElector({
    coordination: clients.coordination,
    namespace: leaseNamespace,
    name: SYNC_LEASE_NAME,
    identity: options.leaseIdentity ?? m.defaultIdentity(),
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
  const reconciler = new m.Reconciler({
    store: m.secretStore(clients.core),
    desired: desiredSecrets(credentials.current()),
    optIn: config.optIn,
    prune: config.prune,
    canWrite: writing,
    logger,
    redact: m.credentialRedactor(() => secretValues(credentials.current())),
    writeAttempts: SYNC_DEFAULTS.writeAttempts,
    retryBaseMs: SYNC_DEFAULTS.retryBaseMs,
    retryMaxMs: SYNC_DEFAULTS.retryMaxMs,
  });
  controller = new m.SyncController({
    reconciler,
    isLeader: writing,
    concurrency: SYNC_DEFAULTS.concurrency,
    resyncMs: options.resyncSeconds * 1000,
    requeueMs: SYNC_DEFAULTS.requeueMs,
    requeueMaxMs: SYNC_DEFAULTS.requeueMaxMs,
    logger,
    metrics,
  });
  const watcher = new m.NamespaceWatcher({
    core: clients.core,
    kubeConfig: clients.kubeConfig,
    handlers: controller.handlers,
    // Each watch ends (a sign of progress) well within the stall limit even in a quiet cluster, so
    // liveness never fails for want of events: the default 60 s limit gives 20 s watches.
    watchTimeoutSeconds: Math.max(
      1,
      Math.min(SYNC_DEFAULTS.watchTimeoutSeconds, Math.floor(options.watchStallSeconds / 3)),
    ),
    backoffMaxMs: SYNC_DEFAULTS.watchBackoffMaxMs,
  });
  const stallMs = options.watchStallSeconds * 1000;
  const health: Server = createServer(
    healthListener({
      notLiveReason: () => watchStallReason(watcher.lastProgressAt(), startedAt, stallMs),
      notReadyReason: () => {
        if (shuttingDown) return 'shutting down';
        if (!watcher.hasSynced()) return 'namespaces not listed yet';
        return undefined;
      },
      registry: metrics.registry,
    }),
  );
  await new Promise<void>((resolve, reject) => {
    health.once('error', reject);
    health.listen(options.healthPort, options.host, () => resolve());
  });
  const address = health.address() as AddressInfo;
  const healthUrl = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  controller.start();
  credentials.start();
  watcher.start();
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
    credentials.stop();
    await controller.stop();
    // Last, so a successor takes over only after this replica has stopped writing.
    await elector.stop();
    const closed = new Promise<void>((resolve) => health.close(() => resolve()));
    health.closeAllConnections();
    await closed;
    await clients.close();
    logger.info('stopped');
  };
  return { healthUrl, shutdown };
}

export async function runSyncSecrets(argv: readonly string[]): Promise<number> {
  const options = parseSyncSecretsArgs(argv, process.env);
  const logger = createSyncLogger(options.logLevel);
  const config = loadConfig(options.config);
  // Fails here, before any cluster call, naming the entry and the file.
  const credentials = readCredentials(config.registries, options.config);
  const write = (text: string): void => void process.stdout.write(text);
  if (options.mode === 'dry-run') return dryRun(options, config, credentials, logger, write);
  if (options.mode === 'once') return once(options, config, credentials, logger, write);

  const { shutdown } = await watch(options, config, logger);
  const code = await new Promise<number>((resolve) => {
    const onSignal = (signal: string): void => {
      shutdown(signal).then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ error: (error as Error).message }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  // A watch request still waiting on a black-holed connection would keep the process up for its
  // own timeout; this unref'd timer fires only if something like that is still pending.
  setTimeout(() => process.exit(code), 2_000).unref();
  return code;
}
