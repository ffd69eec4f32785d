// `acr-pull-webhook serve`: wires config, certificate source, apps and logger; listens; handles
// SIGTERM with a drain. The only place (with the other verbs) that listens or exits.
import { setTimeout as sleep } from 'node:timers/promises';
import pino, { type Logger } from 'pino';
import { loadConfig } from '../config/config.ts';
import { DEFAULTS, ENV, REVIEW_LOG_MESSAGE } from '../constants.ts';
import { parseFlags, parseInteger, parseLogLevel, UsageError } from '../process/flags.ts';
import { createLogDestination } from '../process/log-destination.ts';
import { listenError, startOrUndo } from '../process/startup.ts';
import { buildApp, setServingPair } from '../server/app.ts';
import { startHealthServer } from '../server/health.ts';
import { createMetrics, type WebhookMetrics } from '../server/metrics.ts';
import { CertificateSource, type ServingPair } from '../tls/certificate-source.ts';

const { drainDelaySeconds: drain, shutdownTimeoutSeconds: bound } = DEFAULTS;

export const SERVE_USAGE = `Usage: acr-pull-webhook serve --config FILE --tls-cert FILE --tls-key FILE [options]

Serves the mutating admission webhook (HTTPS, POST /mutate) and, on a plain-HTTP port,
/healthz, /readyz and /metrics.

Options (each also read from the environment variable shown):
  --config FILE           registries to match (YAML or JSON)          ${ENV.config}
  --tls-cert FILE         serving certificate (PEM), reloaded on change ${ENV.tlsCert}
  --tls-key FILE          its private key (PEM)                         ${ENV.tlsKey}
  --port N                admission port (default ${DEFAULTS.port})                 ${ENV.port}
  --health-port N         probes and metrics port (default ${DEFAULTS.healthPort})       ${ENV.healthPort}
  --host ADDR             address to bind (default ${DEFAULTS.host})           ${ENV.host}
  --log-level LEVEL       fatal|error|warn|info|debug (default ${DEFAULTS.logLevel})   ${ENV.logLevel}
  --drain-delay S         seconds to keep serving after SIGTERM (default ${drain}) ${ENV.drainDelay}
  --shutdown-timeout S    hard bound on shutdown after the drain (default ${bound}) ${ENV.shutdownTimeout}
`;

export interface ServeOptions {
  readonly config: string;
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly port: number;
  readonly healthPort: number;
  readonly host: string;
  readonly logLevel: string;
  readonly drainDelaySeconds: number;
  readonly shutdownTimeoutSeconds: number;
  /** Poll interval for the certificate files (not a flag: tests shorten it). */
  readonly certPollMs?: number;
}

/** Flags win over environment variables, which win over defaults. */
export function parseServeArgs(argv: readonly string[], env: NodeJS.ProcessEnv): ServeOptions {
  const { values } = parseFlags({
    args: [...argv],
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      port: { type: 'string' },
      'health-port': { type: 'string' },
      host: { type: 'string' },
      'log-level': { type: 'string' },
      'drain-delay': { type: 'string' },
      'shutdown-timeout': { type: 'string' },
    },
  });
  const pick = (flag: keyof typeof values, variable: string): string | undefined => {
    const value = values[flag] ?? env[variable];
    return value === '' ? undefined : value;
  };
  const required = (flag: keyof typeof values, variable: string): string => {
    const value = pick(flag, variable);
    if (value === undefined) throw new UsageError(`--${flag} (or ${variable}) is required`);
    return value;
  };
  const integer = (flag: keyof typeof values, variable: string, fallback: number, min: number, max: number): number => {
    const value = pick(flag, variable);
    return value === undefined ? fallback : parseInteger(value, `--${flag}`, min, max);
  };
  const logLevel = pick('log-level', ENV.logLevel) ?? DEFAULTS.logLevel;
  parseLogLevel(logLevel);
  return {
    config: required('config', ENV.config),
    tlsCert: required('tls-cert', ENV.tlsCert),
    tlsKey: required('tls-key', ENV.tlsKey),
    port: integer('port', ENV.port, DEFAULTS.port, 0, 65535),
    healthPort: integer('health-port', ENV.healthPort, DEFAULTS.healthPort, 0, 65535),
    host: pick('host', ENV.host) ?? DEFAULTS.host,
    logLevel,
    drainDelaySeconds: integer('drain-delay', ENV.drainDelay, DEFAULTS.drainDelaySeconds, 0, 300),
    shutdownTimeoutSeconds: integer('shutdown-timeout', ENV.shutdownTimeout, DEFAULTS.shutdownTimeoutSeconds, 1, 600),
  };
}

/** Review lines wait for their batch; every other line (start, certificate, shutdown, errors) is written at once. */
export function createLogger(level: string, destination: pino.DestinationStream = createLogDestination()): Logger {
  // The destination's own flush, without a callback: pino's logger.flush() always passes one, and sonic-boom then
  // adds a 'drain' listener (and an fsync of stdout) per call, so a burst of lines during one write trips Node's
  // MaxListenersExceededWarning.
  const flushNow = (): void => (destination as { flush?: () => void }).flush?.();
  return pino(
    {
      level,
      base: { service: 'acr-pull-webhook' },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args);
          const message = typeof args[0] === 'string' ? args[0] : args[1];
          if (message !== REVIEW_LOG_MESSAGE) flushNow();
        },
      },
    },
    destination,
  );
}

export interface RunningServer {
  readonly admissionUrl: string;
  readonly healthUrl: string;
  readonly metrics: WebhookMetrics;
  /** Fails readiness, drains, closes; resolves when both servers are closed. */
  readonly shutdown: (signal: string) => Promise<void>;
}

/**
 * Starts serving; resolves once both ports listen. Config and certificate errors throw before anything
 * listens; when a port cannot be bound, whatever already listens is closed before the error is thrown.
 */
export async function serve(options: ServeOptions, logger: Logger): Promise<RunningServer> {
  const config = loadConfig(options.config);
  const metrics = createMetrics();
  let shuttingDown = false;
  let applyPair: (pair: ServingPair) => void = () => {};
  const certificates = new CertificateSource({
    certFile: options.tlsCert,
    keyFile: options.tlsKey,
    pollIntervalMs: options.certPollMs ?? DEFAULTS.certPollMs,
    onLoad: (pair) => applyPair(pair),
    onReject: (reason) => {
      metrics.certificateReloads.inc({ result: 'rejected' });
      logger.error({ reason }, 'new serving certificate refused; keeping the one in use');
    },
  });
  const initial = certificates.current();
  metrics.certificateExpiry.set(initial.notAfter.getTime() / 1000);

  const app = buildApp({
    rules: config.rules,
    acrHostSuffixes: config.acrHostSuffixes,
    logger,
    metrics,
    tls: { cert: initial.cert, key: initial.key },
    isShuttingDown: () => shuttingDown,
  });
  applyPair = (pair) => {
    setServingPair(app, pair);
    metrics.certificateExpiry.set(pair.notAfter.getTime() / 1000);
    metrics.certificateReloads.inc({ result: 'loaded' });
    logger.info(
      { fingerprint256: pair.fingerprint256, notAfter: pair.notAfter.toISOString() },
      'serving certificate reloaded',
    );
  };

  const { admissionUrl, health } = await startOrUndo(async (undo) => {
    const url = await app.listen({ port: options.port, host: options.host }).catch((error: unknown) => {
      throw listenError('admission port', options.host, options.port, error);
    });
    undo(() => app.close());
    const healthServer = await startHealthServer(
      {
        notReadyReason: () => {
          if (shuttingDown) return 'shutting down';
          if (!certificates.healthy()) return 'serving certificate is not within its validity';
          return undefined;
        },
        registry: metrics.registry,
      },
      { host: options.host, port: options.healthPort },
    );
    return { admissionUrl: url, health: healthServer };
  });
  certificates.start();
  logger.info(
    {
      admission: admissionUrl,
      health: health.url,
      registries: config.registries.map((entry) => `${entry.server} -> ${entry.secretName}`),
      certificateNotAfter: initial.notAfter.toISOString(),
    },
    'listening',
  );

  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info(
      { signal, drainDelaySeconds: options.drainDelaySeconds },
      'shutting down: readiness fails, still serving',
    );
    await sleep(options.drainDelaySeconds * 1000);
    const deadline = setTimeout(() => {
      logger.warn('shutdown timeout reached; closing remaining connections');
      app.server.closeAllConnections();
    }, options.shutdownTimeoutSeconds * 1000);
    deadline.unref();
    await app.close();
    await health.close();
    certificates.stop();
    clearTimeout(deadline);
    logger.info('stopped');
  };
  return { admissionUrl, healthUrl: health.url, metrics, shutdown };
}

export async function runServe(argv: readonly string[]): Promise<number> {
  const options = parseServeArgs(argv, process.env);
  const destination = createLogDestination();
  const logger = createLogger(options.logLevel, destination);
  const { shutdown, metrics } = await serve(options, logger);
  destination.on('drop', () => metrics.logLinesDropped.inc());
  return new Promise<number>((resolve) => {
    const onSignal = (signal: string): void => {
      shutdown(signal).then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
