// Starts the real webhook the way a user does: `node src/cli/main.ts serve ...` in its own
// process, logs to a file, and waits until /readyz says so. Used by the e2e tests and the demo.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOG_FLUSH_INTERVAL_MS } from '../../src/process/log-destination.ts';
import type { TestPki } from './certificates.ts';
import { exitOf, terminate } from './child-process.ts';

export const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');

/** One ACR registry, one secret: enough for tests about the server rather than the rules. */
export const ONE_REGISTRY_CONFIG = 'registries: [{server: myregistry.azurecr.io, secretName: acr}]';

/** What `serve` reads: a configuration and a serving pair, in one directory (also used for logs). */
export interface ServeFiles {
  readonly dir: string;
  readonly config: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Writes the pki's serving pair and a configuration into `dir`, which the caller owns (and removes: tempDir()). */
export function writeServeFiles(pki: TestPki, options: { config?: string; dir: string }): ServeFiles {
  const { dir } = options;
  const files = {
    dir,
    config: join(dir, 'config.yaml'),
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
  };
  writeFileSync(files.config, options.config ?? ONE_REGISTRY_CONFIG);
  writeFileSync(files.certFile, pki.serving.certPem);
  writeFileSync(files.keyFile, pki.serving.keyPem);
  return files;
}

/**
 * Arguments after `node` that run `serve` on loopback: free ports and no drain delay unless given, and serve's own
 * log level unless given.
 */
export function serveArgv(
  files: Pick<ServeFiles, 'config' | 'certFile' | 'keyFile'>,
  options: { port?: number; healthPort?: number; drainDelaySeconds?: number; logLevel?: string } = {},
): string[] {
  return [
    MAIN,
    'serve',
    '--config',
    files.config,
    '--tls-cert',
    files.certFile,
    '--tls-key',
    files.keyFile,
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--health-port',
    String(options.healthPort ?? 0),
    '--drain-delay',
    String(options.drainDelaySeconds ?? 0),
    ...(options.logLevel === undefined ? [] : ['--log-level', options.logLevel]),
  ];
}

export interface WebhookProcess {
  readonly port: number;
  readonly healthPort: number;
  readonly logFile: string;
  readonly process: ChildProcess;
  /** The log lines so far, parsed. Review lines are written in batches: see the two below. */
  logLines(): Record<string, unknown>[];
  /** The first log line that matches, waiting for it up to `timeoutMs`. */
  waitForLogLine(
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** The log lines once everything logged so far has surely been written (two batch intervals). */
  settledLogLines(): Promise<Record<string, unknown>[]>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL: the webhook is gone without a goodbye. */
  kill(): Promise<void>;
}

export interface WebhookProcessOptions {
  readonly config: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly dir: string;
  /** 0 (default) picks free ports; the real ones are read from the 'listening' log line. */
  readonly port?: number;
  readonly healthPort?: number;
  readonly drainDelaySeconds?: number;
  /**
   * --log-level, debug unless given: the tests see which reviews the apiserver sent through their log lines, and at
   * info only warned reviews have one.
   */
  readonly logLevel?: string;
  readonly env?: Record<string, string>;
}

export async function startWebhookProcess(options: WebhookProcessOptions): Promise<WebhookProcess> {
  const logFile = join(options.dir, `webhook-${Date.now()}.log`);
  const out = openSync(logFile, 'a');
  const child = spawn(
    process.execPath,
    serveArgv(options, {
      ...options,
      logLevel: options.logLevel ?? 'debug',
    }),
    { stdio: ['ignore', out, out], env: { PATH: process.env['PATH'] ?? '', ...options.env } },
  );
  closeSync(out);
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));

  const logLines = (): Record<string, unknown>[] =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  const deadline = Date.now() + 20_000;
  let listening: Record<string, unknown> | undefined;
  while (listening === undefined) {
    if (child.exitCode !== null)
      throw new Error(`webhook exited with ${child.exitCode}: ${readFileSync(logFile, 'utf8').trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`webhook did not start within 20 s: ${readFileSync(logFile, 'utf8').trim()}`);
    }
    listening = logLines().find((line) => line['msg'] === 'listening');
    if (listening === undefined) await sleep(50);
  }
  const port = Number(new URL(String(listening['admission'])).port);
  const healthPort = Number(new URL(String(listening['health'])).port);
  while ((await fetch(`http://127.0.0.1:${healthPort}/readyz`).catch(() => undefined))?.status !== 200) {
    if (Date.now() > deadline) throw new Error('webhook never became ready');
    await sleep(50);
  }
  return {
    port,
    healthPort,
    logFile,
    process: child,
    logLines,
    async waitForLogLine(match, timeoutMs = 5_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = logLines().find(match);
        if (found !== undefined) return found;
        if (Date.now() > until) throw new Error(`no matching log line within ${timeoutMs} ms`);
        await sleep(25);
      }
    },
    async settledLogLines() {
      await sleep(2 * LOG_FLUSH_INTERVAL_MS);
      return logLines();
    },
    async stop(graceMs = 10_000) {
      await terminate(child, graceMs);
    },
    async kill() {
      child.kill('SIGKILL');
      await exitOf(child);
    },
  };
}
