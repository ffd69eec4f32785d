// sync-secrets as production runs it: the CLI as the image ships it (the bundle's `src/cli/main.js`) with the
// image's NODE_OPTIONS, the ServiceAccount's token kubeconfig and an environment of PATH only;
// --watch optionally started through a launcher that moves it into a memory cgroup first.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { terminate } from '../../test/support/child-process.ts';
import { scrapeMetrics } from '../../test/support/sync-metrics.ts';

export interface SyncBuild {
  /** The CLI's entry: this tree's bundle (dist/bundle/src/cli/main.js) or the "before" worktree's dist/. */
  readonly main: string;
  readonly nodeArgs: readonly string[];
}

function spawnCli(build: SyncBuild, args: readonly string[], launcher: readonly string[] = []): ChildProcess {
  const [command, ...prefix] = [...launcher, process.execPath];
  return spawn(command as string, [...prefix, ...build.nodeArgs, build.main, 'sync-secrets', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent' },
  });
}

export interface OnceResult {
  readonly status: number | null;
  readonly ms: number;
  /** The one-line summary --once prints. */
  readonly summary: string;
  readonly stderrTail: string;
}

/** `sync-secrets --once ...`, timed from spawn to exit (what a Job or a user waits for). */
export async function runOnce(build: SyncBuild, args: readonly string[], timeoutMs: number): Promise<OnceResult> {
  const started = performance.now();
  const child = spawnCli(build, ['--once', ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-20_000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const status = await new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  clearTimeout(timer);
  return {
    status,
    ms: performance.now() - started,
    summary: stdout.trim().split('\n').at(-1) ?? '',
    stderrTail: stderr.split('\n').slice(-15).join('\n'),
  };
}

/** `sync-secrets --dry-run --namespace NS -o json`: the manifests --once would write, parsed. */
export async function dryRunManifests(build: SyncBuild, config: string): Promise<Record<string, unknown>[]> {
  const child = spawnCli(build, ['--dry-run', '--namespace', 'bench-dry-run', '-o', 'json', '--config', config]);
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const status = await new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  if (status !== 0) throw new Error(`sync-secrets --dry-run exited ${status}`);
  // One JSON document per Secret, or a List: both read as a list of Secrets.
  const documents = stdout
    .trim()
    .split(/\n(?=\{)/)
    .map((text) => JSON.parse(text) as Record<string, unknown>);
  return documents.flatMap((document) =>
    Array.isArray(document['items']) ? (document['items'] as Record<string, unknown>[]) : [document],
  );
}

export interface WatchProcess {
  readonly healthUrl: string;
  readonly startedAt: number;
  /** The value of a series on its /metrics (0 when absent). */
  metric(series: string): Promise<number>;
  /** Resolves once the series reaches at least `value`; throws after timeoutMs or if the process ends. */
  waitMetric(series: string, value: number, timeoutMs: number): Promise<number>;
  ended(): string | undefined;
  stderrTail(): string;
  stop(): Promise<void>;
}

export async function startWatch(
  build: SyncBuild,
  args: readonly string[],
  launcher: readonly string[],
  timeoutMs = 60_000,
): Promise<WatchProcess> {
  const startedAt = performance.now();
  const child = spawnCli(build, ['--watch', '--health-port', '0', '--host', '127.0.0.1', ...args], launcher);
  let stderr = '';
  let ended: string | undefined;
  child.once('exit', (code, signal) => (ended = `exit ${code ?? signal}`));
  child.stdout?.resume();
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-200_000)));
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let healthUrl: string | undefined;
  const deadline = performance.now() + timeoutMs;
  while (healthUrl === undefined) {
    const listening = stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line['msg'] === 'listening');
    if (listening !== undefined) healthUrl = String(listening['health']);
    else if (ended !== undefined || performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sync-secrets --watch did not start (${ended ?? 'timed out'}):\n${stderr.slice(-3000)}`);
    } else await sleep(50);
  }
  const url = healthUrl;
  const metric = async (series: string): Promise<number> => {
    const scrape = await scrapeMetrics(url);
    const line = scrape.text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };
  return {
    healthUrl: url,
    startedAt,
    metric,
    async waitMetric(series, value, waitMs) {
      const until = performance.now() + waitMs;
      for (;;) {
        if (ended !== undefined) throw new Error(`sync-secrets --watch ended (${ended}):\n${stderr.slice(-3000)}`);
        const seen = await metric(series).catch(() => 0);
        if (seen >= value) return performance.now();
        if (performance.now() > until) throw new Error(`${series} did not reach ${value} within ${waitMs} ms`);
        await sleep(100);
      }
    },
    ended: () => ended,
    stderrTail: () => stderr.split('\n').slice(-15).join('\n'),
    async stop() {
      await terminate(child, 15_000);
      process.removeListener('exit', killOnExit);
    },
  };
}

/** Memory charged to a cgroup now (v1 memory.usage_in_bytes or v2 memory.current), bytes. */
export function cgroupCurrentBytes(path: string): number {
  const v2 = join(path, 'memory.current');
  return Number(readFileSync(existsSync(v2) ? v2 : join(path, 'memory.usage_in_bytes'), 'utf8').trim());
}
