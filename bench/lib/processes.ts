// The servers under test, each its own Node process started the same way: `serve` as the image runs
// it (the bundle of `npm run bundle`), and the floor. Readiness is measured the same way for both: from spawn() to
// the first 200 from GET /readyz on the plain-HTTP health port, polled every 2 ms.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { METRIC_REVIEWS } from '../../src/constants.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const FLOOR_SCRIPT = join(ROOT, 'bench', 'floor.ts');
/** The same CLI as the image ships it: `npm run bundle` (tools/image/bundle.ts), copied as /app/dist/. */
export const BUNDLE_MAIN = join(ROOT, 'dist', 'bundle', 'src', 'cli', 'main.js');
/** What the webhook benchmarks run unless told otherwise (--webhook-main dist/src/cli/main.js: tsc's output). */
export const WEBHOOK_MAIN = BUNDLE_MAIN;

export type ServerKind = 'floor' | 'webhook';

/** The node flags the image runs with (Dockerfile: ENV NODE_OPTIONS). */
export function imageNodeArgs(): string[] {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  return /^ENV NODE_OPTIONS=(.*)$/m.exec(dockerfile)?.[1]?.split(' ') ?? [];
}

export interface ServerSpec {
  /** Label in tables and JSON. */
  readonly name: string;
  readonly kind: ServerKind;
  /** For kind webhook: the built main.js to run (the production build by default). */
  readonly main?: string;
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
  /** Extra arguments after the server's own (for serve, a later flag wins: --log-level warn). */
  readonly extraArgs?: readonly string[];
  /** Extra environment variables (the servers otherwise get PATH only). */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * A command the server is started through, given node's path and arguments after its own: for
   * a shell that moves itself into a memory cgroup and then execs node (bench/memory-limit.ts).
   */
  readonly launcher?: readonly string[];
}

export interface ServerFiles {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly configFile: string;
}

/**
 * Writes the serving pair to <dir>/certs and returns the files for startServer; logs go to <dir>.
 * The certificates get a directory of their own as a Secret volume does: `serve` watches the
 * certificate's directory and re-reads the pair on any change in it, so a log file written next to
 * tls.crt would make it re-parse the certificate on every review.
 */
export function writeServerFiles(dir: string, pair: { certPem: string; keyPem: string }): ServerFiles {
  const certDir = join(dir, 'certs');
  mkdirSync(certDir, { recursive: true });
  writeFileSync(join(certDir, 'tls.crt'), pair.certPem);
  writeFileSync(join(certDir, 'tls.key'), pair.keyPem, { mode: 0o600 });
  return {
    dir,
    certFile: join(certDir, 'tls.crt'),
    keyFile: join(certDir, 'tls.key'),
    configFile: join(ROOT, 'examples', 'config.yaml'),
  };
}

export interface EventLoopDelay {
  /** Seconds, as prom-client reports them (the 10 ms sampling interval included). */
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export interface Memory {
  /** VmRSS now, bytes. */
  readonly rss: number;
  /** VmHWM: peak RSS since the process started, bytes. */
  readonly hwm: number;
  /** RssAnon: the heap and other private memory, bytes. */
  readonly anon: number;
  /** RssFile: mapped files, mostly the node binary's own pages (shared, reclaimable), bytes. */
  readonly file: number;
}

export interface ServerProcess {
  readonly spec: ServerSpec;
  readonly pid: number;
  readonly port: number;
  readonly healthPort: number;
  readonly logFile: string;
  /** Milliseconds from spawn() to the first /readyz 200. */
  readonly readyMs: number;
  memory(): Memory;
  /** CPU time used so far by all the process's threads (user + system), seconds. */
  cpuSeconds(): number;
  /** Event-loop delay since the previous call (each call resets the monitor, like a Prometheus scrape). */
  eventLoop(): Promise<EventLoopDelay>;
  /** The webhook's /metrics text (undefined for the floor). */
  metrics(): Promise<string | undefined>;
  /** Reviews answered so far (the webhook's acr_pull_webhook_admission_reviews_total, all outcomes). */
  reviewsAnswered(): Promise<number>;
  /** How the process ended ('exit code 1', 'signal SIGKILL'), or undefined while it runs. */
  ended(): string | undefined;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once('exit', () => done()));
}

/** Reads a `key: N kB` field of /proc/<pid>/status, in bytes. */
function procStatusBytes(status: string, key: string): number {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

export function prometheusValue(text: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text);
  return match ? Number(match[1]) : Number.NaN;
}

const CLOCK_TICKS = 100;

/** CPU time used so far by all of a process's threads (user + system), seconds. */
export function processCpuSeconds(pid: number): number {
  // Fields 14 and 15 of /proc/<pid>/stat, in clock ticks (USER_HZ, 100 on Linux); the command
  // name (field 2) is parenthesised and may hold spaces, so count from its closing parenthesis.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

let sequence = 0;

export async function startServer(spec: ServerSpec, files: ServerFiles): Promise<ServerProcess> {
  const port = await freePort();
  const healthPort = await freePort();
  sequence += 1;
  const logFile = join(files.dir, `${spec.name}-${sequence}.log`);
  const out = openSync(logFile, 'a');
  const args =
    spec.kind === 'webhook'
      ? [
          spec.main ?? WEBHOOK_MAIN,
          'serve',
          '--config',
          files.configFile,
          '--tls-cert',
          files.certFile,
          '--tls-key',
          files.keyFile,
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--health-port',
          String(healthPort),
          '--log-level',
          'info',
          '--drain-delay',
          '0',
        ]
      : [
          FLOOR_SCRIPT,
          '--tls-cert',
          files.certFile,
          '--tls-key',
          files.keyFile,
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--health-port',
          String(healthPort),
        ];
  const started = performance.now();
  const nodeArgv = [process.execPath, ...(spec.nodeArgs ?? []), ...args, ...(spec.extraArgs ?? [])];
  const [command, ...argv] = [...(spec.launcher ?? []), ...nodeArgv] as [string, ...string[]];
  const child = spawn(command, argv, {
    stdio: ['ignore', out, out],
    cwd: files.dir,
    env: { PATH: process.env['PATH'] ?? '', ...spec.env },
  });
  closeSync(out);
  children.add(child);
  child.once('exit', () => children.delete(child));

  const deadline = started + 20_000;
  let readyMs: number | undefined;
  while (readyMs === undefined) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${spec.name} exited (${child.exitCode ?? child.signalCode}): ${readFileSync(logFile, 'utf8').trim()}`,
      );
    }
    if (performance.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${spec.name} not ready within 20 s: ${readFileSync(logFile, 'utf8').trim()}`);
    }
    const status = await fetch(`http://127.0.0.1:${healthPort}/readyz`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) readyMs = performance.now() - started;
    else await sleep(2);
  }

  const pid = child.pid as number;
  const get = async (path: string): Promise<string> => {
    const response = await fetch(`http://127.0.0.1:${healthPort}${path}`);
    if (response.status !== 200) throw new Error(`${spec.name} GET ${path}: ${response.status}`);
    return response.text();
  };
  return {
    spec,
    pid,
    port,
    healthPort,
    logFile,
    readyMs,
    memory() {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return {
        rss: procStatusBytes(status, 'VmRSS'),
        hwm: procStatusBytes(status, 'VmHWM'),
        anon: procStatusBytes(status, 'RssAnon'),
        file: procStatusBytes(status, 'RssFile'),
      };
    },
    cpuSeconds: () => processCpuSeconds(pid),
    async eventLoop() {
      if (spec.kind === 'floor') return JSON.parse(await get('/eventloop')) as EventLoopDelay;
      const text = await get('/metrics');
      return {
        p99: prometheusValue(text, 'nodejs_eventloop_lag_p99_seconds'),
        max: prometheusValue(text, 'nodejs_eventloop_lag_max_seconds'),
        mean: prometheusValue(text, 'nodejs_eventloop_lag_mean_seconds'),
      };
    },
    async metrics() {
      return spec.kind === 'webhook' ? get('/metrics') : undefined;
    },
    async reviewsAnswered() {
      if (spec.kind === 'floor') return Number(await get('/reviews'));
      const text = await get('/metrics');
      return [...text.matchAll(new RegExp(`^${METRIC_REVIEWS}\\{[^}]*\\} (\\S+)$`, 'gm'))].reduce(
        (sum, match) => sum + Number(match[1]),
        0,
      );
    },
    ended() {
      if (child.signalCode !== null) return `signal ${child.signalCode}`;
      return child.exitCode === null ? undefined : `exit code ${child.exitCode}`;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

/** Samples VmRSS every `intervalMs` until stopped; returns the largest sample. */
export function sampleRss(server: ServerProcess, intervalMs = 200): { stop(): number } {
  let peak = server.memory().rss;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, server.memory().rss);
    } catch {
      // the process is gone; the run will report its error
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      try {
        peak = Math.max(peak, server.memory().rss);
      } catch {
        // as above
      }
      return peak;
    },
  };
}

/** Bytes appended to a file since `offset`, and the new offset. */
export function readFrom(file: string, offset: number): { text: string; offset: number } {
  const size = statSync(file).size;
  if (size <= offset) return { text: '', offset };
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(size - offset);
    let read = 0;
    while (read < buffer.length) {
      const bytesRead = readSync(fd, buffer, read, buffer.length - read, offset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return { text: buffer.subarray(0, read).toString('utf8'), offset: offset + read };
  } finally {
    closeSync(fd);
  }
}
