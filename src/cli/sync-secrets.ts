// `acr-pull-webhook sync-secrets`: flags, wiring, signals and exit codes. The work is in src/sync/:
// run-once.ts (--once, --dry-run) and run-watch.ts (--watch). Logs go to stderr so that stdout
// carries only the product: the --once summary or the --dry-run manifests.
import pino, { type Logger } from 'pino';
import type { AcrRefreshToken } from '../azure/acr-token-client.ts';
import { DEFAULT_REFRESH_FRACTION, refreshFractionProblem } from '../azure/refresh.ts';
import { loadConfig } from '../config/config.ts';
import { DEFAULTS, ENV, SYNC_DEFAULTS, SYNC_ENV, type SyncTokenRequestResult } from '../constants.ts';
import { stderrLogger } from '../process/crash.ts';
import { createLogDestination } from '../process/log-destination.ts';
import { UsageError, parseFlags, parseInteger, parseLogLevel } from '../process/flags.ts';
import { readCredentials } from '../sync/credentials.ts';
import { dryRunManifests } from '../sync/manifests.ts';
import {
  type AcquireToken,
  type AzureEntry,
  azureEntries,
  describeFailure,
  requestStartupTokens,
} from '../sync/token-refresher.ts';

export const SYNC_SECRETS_USAGE = `\
Usage: acr-pull-webhook sync-secrets --config FILE (--once | --watch | --dry-run) [options]

Creates and updates the pull secrets (type kubernetes.io/dockerconfigjson) named in the config, from
each entry's credentials files, in every namespace labelled with the opt-in label
(default acr-pull-webhook/inject=enabled). Secrets it did not create are never modified.
An entry with credentials.azure (tenantId, clientId, federatedTokenFile or clientSecretFile) gets an
ACR refresh token from Entra ID at start, renewed in --watch before it expires; no password is stored.

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
  --health-port N         --watch: /healthz, /readyz and /metrics (default ${SYNC_DEFAULTS.healthPort}) \
 ${SYNC_ENV.healthPort}
  --host ADDR             address the health port binds (default ${DEFAULTS.host})  ${ENV.host}
  --lease-namespace NS    --watch: namespace of the Lease (default: the pod's)  ${SYNC_ENV.leaseNamespace}
  --lease-identity ID     --watch: this replica's name in the Lease (default: host + random) ${SYNC_ENV.identity}
  --resync-period S       --watch: full reconcile every S seconds (default ${SYNC_DEFAULTS.resyncSeconds})
  --watch-stall-timeout S --watch: /healthz fails after S seconds without watch progress \
(default ${SYNC_DEFAULTS.watchStallSeconds})
  --token-refresh-fraction F  --watch: renew an ACR token once this share of its lifetime has passed
                          (0 < F < 1, default ${DEFAULT_REFRESH_FRACTION})   ${SYNC_ENV.tokenRefreshFraction}
  --kube-api-qps N        API requests per second, sustained (default ${SYNC_DEFAULTS.kubeApiQps}; 0: unlimited) \
 ${SYNC_ENV.kubeApiQps}
  --kube-api-burst N      API requests at once after a quiet period (default ${SYNC_DEFAULTS.kubeApiBurst}) \
 ${SYNC_ENV.kubeApiBurst}
  --concurrency N         namespaces reconciled at once, each one's secrets in turn (default \
${SYNC_DEFAULTS.concurrency})  ${SYNC_ENV.concurrency}
  --log-level LEVEL       fatal|error|warn|info|debug (default ${DEFAULTS.logLevel})   ${ENV.logLevel}
`;

export type SyncMode = 'once' | 'watch' | 'dry-run';

export type SyncSecretsOptions = ReturnType<typeof parseSyncSecretsArgs>;

/** Flags win over environment variables, which win over defaults. */
export function parseSyncSecretsArgs(argv: readonly string[], env: NodeJS.ProcessEnv) {
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
      'token-refresh-fraction': { type: 'string' },
      'kube-api-qps': { type: 'string' },
      'kube-api-burst': { type: 'string' },
      concurrency: { type: 'string' },
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
  const dry = modes.includes('dry-run');
  const mode: SyncMode | undefined = dry ? (modes.includes('watch') ? undefined : 'dry-run') : modes[0];
  if (!dry && modes.length > 1) throw new UsageError('exactly one of --once, --watch or --dry-run is required');
  if (mode === undefined) throw new UsageError('exactly one of --once, --watch or --dry-run is required');
  if (values.namespace !== undefined && mode !== 'dry-run')
    throw new UsageError('--namespace only goes with --dry-run');
  if (values.output !== undefined && mode !== 'dry-run') throw new UsageError('--output only goes with --dry-run');
  const output = values.output ?? 'yaml';
  if (output !== 'json' && output !== 'yaml') throw new UsageError(`--output: "${output}" is not one of json, yaml`);
  const logLevel = pick(values['log-level'], ENV.logLevel) ?? DEFAULTS.logLevel;
  parseLogLevel(logLevel);
  const fraction = pick(values['token-refresh-fraction'], SYNC_ENV.tokenRefreshFraction);
  const tokenRefreshFraction = fraction === undefined ? DEFAULT_REFRESH_FRACTION : parseFraction(fraction);
  return {
    config,
    mode,
    /** --dry-run only: print for this namespace without a cluster. */
    namespace: pick(values.namespace),
    output: output as 'json' | 'yaml',
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
    tokenRefreshFraction,
    /** Client-side rate limit of every API request (client-go's QPS and burst). */
    kubeApi: {
      qps: integer(
        'kube-api-qps',
        pick(values['kube-api-qps'], SYNC_ENV.kubeApiQps),
        SYNC_DEFAULTS.kubeApiQps,
        0,
        100_000,
      ),
      burst: integer(
        'kube-api-burst',
        pick(values['kube-api-burst'], SYNC_ENV.kubeApiBurst),
        SYNC_DEFAULTS.kubeApiBurst,
        1,
        100_000,
      ),
    },
    /** Namespaces reconciled at once (--once and --watch). */
    concurrency: integer(
      'concurrency',
      pick(values.concurrency, SYNC_ENV.concurrency),
      SYNC_DEFAULTS.concurrency,
      1,
      1_000,
    ),
    logLevel,
  };
}

function parseFraction(value: string): number {
  const number = /^(0|[1-9]\d*)?(\.\d+)?$/.test(value) && value !== '' ? Number(value) : Number.NaN;
  const problem = refreshFractionProblem(number);
  if (problem !== undefined) throw new UsageError(`--token-refresh-fraction: "${value}" is not above 0 and below 1`);
  return number;
}

/** Entra ID, then the registry's exchange; the client is loaded only when an entry needs it, like the API client. */
const acquire: AcquireToken = async (entry) => {
  const { requestAcrRefreshToken } = await import('../azure/acr-token-client.ts');
  return requestAcrRefreshToken(entry.server, entry.azure);
};

/** The azure entries' first tokens, before anything else: a refusal or lasting failure ends the process here. */
async function startupTokens(entries: readonly AzureEntry[], source: string, logger: Logger) {
  const results: { server: string; result: SyncTokenRequestResult }[] = [];
  if (entries.length === 0) return { initial: new Map<number, AcrRefreshToken>(), results };
  const initial = await requestStartupTokens(entries, {
    source,
    acquire,
    attempts: SYNC_DEFAULTS.startupTokenAttempts,
    onResult: (entry, result) => results.push({ server: entry.server, result }),
    onRetry: (entry, error, attempt, delayMs) =>
      logger.warn(
        {
          server: entry.server,
          secret: entry.secretName,
          ...describeFailure(error),
          attempt,
          delayMs: Math.round(delayMs),
        },
        'token request failed; retrying',
      ),
  });
  for (const entry of entries) {
    const token = initial.get(entry.index);
    if (token === undefined) continue;
    logger.info(
      { server: entry.server, secret: entry.secretName, expiresAt: new Date(token.times.exp * 1000).toISOString() },
      'token received',
    );
  }
  return { initial, results };
}

export async function runSyncSecrets(argv: readonly string[]): Promise<number> {
  const options = parseSyncSecretsArgs(argv, process.env);
  // --once logs a line per Secret it writes, read after it exits: batched (written at the latest when it exits),
  // since a write(2) per line was a fifth of a cold run's CPU. --watch's lines are read as they come: one write each.
  const base = { service: 'acr-pull-webhook', command: 'sync-secrets' };
  const logger =
    options.mode === 'watch'
      ? stderrLogger(base, options.logLevel)
      : pino({ level: options.logLevel, base }, createLogDestination(2));
  const config = loadConfig(options.config);
  const entries = azureEntries(config.registries);
  const tokens = await startupTokens(entries, options.config, logger);
  // Fails here, before any cluster call, naming the entry and the file.
  const credentials = readCredentials(
    config.registries,
    options.config,
    new Map([...tokens.initial].map(([index, token]) => [index, token.refreshToken])),
  );
  const write = (text: string): void => void process.stdout.write(text);
  if (options.mode === 'dry-run' && options.namespace !== undefined) {
    write(dryRunManifests([options.namespace], credentials, options.output));
    return 0;
  }
  // The API client takes a second to load: only the modes that talk to the cluster load it, and
  // only once the config and credentials have been checked.
  const common = {
    kubeconfig: options.kubeconfig,
    env: process.env,
    kubeApi: options.kubeApi,
    concurrency: options.concurrency,
    config,
    credentials,
    logger,
  };
  if (options.mode !== 'watch') {
    const { dryRun, once } = await import('../sync/run-once.ts');
    return options.mode === 'once' ? once({ ...common, write }) : dryRun({ ...common, write, output: options.output });
  }
  const { watch } = await import('../sync/run-watch.ts');
  const { shutdown } = await watch({
    ...options,
    ...common,
    configPath: options.config,
    tokens: {
      entries,
      initial: tokens.initial,
      startupResults: tokens.results,
      acquire,
      refreshFraction: options.tokenRefreshFraction,
    },
  });
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
  return code;
}
