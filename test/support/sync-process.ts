// Runs `acr-pull-webhook sync-secrets` the way a user (or the chart's Job and Deployment) does:
// `node src/cli/main.ts sync-secrets ...` as a child process, with all output kept so tests can
// assert on it, including that no credential ever shows up in it.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { terminate } from './child-process.ts';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');

/** Every byte any sync-secrets process printed in this test process: stdout summaries and stderr logs. */
const allOutput: string[] = [];
export function everythingPrinted(): string {
  return allOutput.join('\n');
}

export interface SyncResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function spawnSync(args: readonly string[], env: Record<string, string>): ChildProcess {
  // Only PATH and what the test passes: no KUBECONFIG or HOME leaks in from the developer's shell.
  return spawn(process.execPath, [MAIN, 'sync-secrets', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent', ...env },
  });
}

/**
 * Runs to completion (--once, --dry-run). `keepStdout: false` leaves --dry-run manifests out of
 * everythingPrinted().
 */
export async function runSync(
  args: readonly string[],
  options: { env?: Record<string, string>; keepStdout?: boolean; timeoutMs?: number } = {},
): Promise<SyncResult> {
  const child = spawnSync(args, options.env ?? {});
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const status = await new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  clearTimeout(timer);
  allOutput.push(stderr);
  if (options.keepStdout !== false) allOutput.push(stdout);
  return { status, stdout, stderr };
}

export interface SyncWatcher {
  readonly identity: string;
  readonly healthUrl: string;
  readonly process: ChildProcess;
  /** Parsed pino lines so far. */
  logLines(): Record<string, unknown>[];
  /** Resolves with the first log line (from the start) that matches, or throws after timeoutMs. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM (the Lease is released); resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: a crash, the Lease is left to expire. */
  kill(): Promise<void>;
}

export async function startSyncWatcher(options: {
  config: string;
  kubeconfig: string;
  leaseNamespace: string;
  identity: string;
  args?: readonly string[];
  env?: Record<string, string>;
}): Promise<SyncWatcher> {
  const child = spawnSync(
    [
      '--config',
      options.config,
      '--watch',
      '--kubeconfig',
      options.kubeconfig,
      '--lease-namespace',
      options.leaseNamespace,
      '--lease-identity',
      options.identity,
      '--health-port',
      '0',
      '--host',
      '127.0.0.1',
      ...(options.args ?? []),
    ],
    options.env ?? {},
  );
  let stderr = '';
  let stdout = '';
  const index = allOutput.push('') - 1;
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    allOutput[index] = stdout + stderr;
  });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    allOutput[index] = stdout + stderr;
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));

  const logLines = (): Record<string, unknown>[] =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const waitForLog = async (
    match: (line: Record<string, unknown>) => boolean,
    timeoutMs = 20_000,
  ): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = logLines().find(match);
      if (found !== undefined) return found;
      if (child.exitCode !== null)
        throw new Error(`sync-secrets ${options.identity} exited with ${child.exitCode}:\n${stderr}`);
      if (Date.now() > deadline)
        throw new Error(`sync-secrets ${options.identity}: no matching log line within ${timeoutMs} ms:\n${stderr}`);
      await sleep(25);
    }
  };
  const listening = await waitForLog((line) => line['msg'] === 'listening');
  return {
    identity: options.identity,
    healthUrl: String(listening['health']),
    process: child,
    logLines,
    waitForLog,
    stop: () => terminate(child, 15_000),
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Polls `check` every 50 ms until it is true; returns the milliseconds it took, or throws after timeoutMs. */
export async function timeUntil(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}
