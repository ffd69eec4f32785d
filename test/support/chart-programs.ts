// Runs the chart's programs (certs-gen, sync-secrets) as local processes, the way their pods would:
// the container's own arguments, a kubeconfig holding the chart ServiceAccount's token, and nothing
// from the test runner's environment. Used by test/e2e/chart.test.ts to prove the chart's RBAC is
// enough for what the hooks and controllers do.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Container, type V1PodSpec } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { terminate } from './child-process.ts';

const REPO = resolve(import.meta.dirname, '../..');
/** Where the image keeps each program (see the Dockerfile) and where it is in this checkout. */
const PROGRAMS: Record<string, string> = {
  '/app/dist/src/cli/main.js': join(REPO, 'src/cli/main.ts'),
  '/app/dist/certs-gen/cli.js': join(REPO, 'certs-gen/cli.ts'),
};

export interface ProgramResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A ServiceAccount token from the TokenRequest API, in a kubeconfig of its own. */
export async function serviceAccountKubeconfig(
  admin: KubeConfig,
  cluster: { server: string; caPem: string },
  namespace: string,
  serviceAccount: string,
): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const request = await core.createNamespacedServiceAccountToken({
    namespace,
    name: serviceAccount,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = request.status?.token ?? '';
  const path = join(mkdtempSync(join(tmpdir(), 'chart-sa-')), `${serviceAccount}.kubeconfig`);
  writeFileSync(
    path,
    toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'test',
          cluster: {
            server: cluster.server,
            'certificate-authority-data': Buffer.from(cluster.caPem).toString('base64'),
          },
        },
      ],
      users: [{ name: serviceAccount, user: { token } }],
      contexts: [{ name: 'sa', context: { cluster: 'test', user: serviceAccount } }],
      'current-context': 'sa',
    }),
    { mode: 0o600 },
  );
  return path;
}

/**
 * The command line a container of the chart runs, mapped onto this checkout: the image's node and
 * program path become this Node 24 and the program's source; `rewrite` adjusts single arguments
 * (a file path that is a volume in the pod, a port).
 */
export function localCommand(
  container: V1Container,
  rewrite: (argument: string) => string = (argument) => argument,
): string[] {
  const [node, program] = container.command ?? [];
  const source = PROGRAMS[program ?? ''];
  if (node !== '/nodejs/bin/node' || source === undefined)
    throw new Error(`container ${container.name}: unknown command ${JSON.stringify(container.command)}`);
  return [source, ...(container.args ?? []).map(rewrite)];
}

function start(command: readonly string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, command, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // No KUBECONFIG, HOME or cluster settings leak in: the program sees only what the pod would.
    env: { PATH: process.env['PATH'] ?? '', HOME: '/nonexistent', ...env },
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  return child;
}

/** Runs to completion. */
export function runProgram(
  command: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<ProgramResult> {
  const child = start(command, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((done) =>
    child.once('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    }),
  );
}

export interface RunningProgram {
  output(): string;
  /** SIGTERM; resolves with the exit code (SIGKILL after 15 s). */
  stop(): Promise<number | null>;
}

/** Starts a long-running program (sync-secrets --watch). */
export function startProgram(command: readonly string[], env: Record<string, string> = {}): RunningProgram {
  const child = start(command, env);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return {
    output: () => output,
    stop: () => terminate(child, 15_000),
  };
}

/**
 * Materializes a pod's projected-Secret and Secret volume as the kubelet would: each item of each
 * source, read from the cluster, written at its path under a local directory. Returns the directory.
 */
export async function materializeVolume(
  admin: KubeConfig,
  namespace: string,
  spec: V1PodSpec,
  volumeName: string,
): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  const volume = spec.volumes?.find((candidate) => candidate.name === volumeName);
  if (volume === undefined) throw new Error(`no volume ${volumeName}`);
  const sources = volume.projected?.sources?.map((source) => source.secret) ?? [
    volume.secret && { name: volume.secret.secretName, items: volume.secret.items },
  ];
  const dir = mkdtempSync(join(tmpdir(), `chart-volume-${volumeName}-`));
  for (const source of sources) {
    if (source?.name === undefined) throw new Error(`volume ${volumeName}: a source without a Secret name`);
    const secret = await core.readNamespacedSecret({ namespace, name: source.name });
    for (const item of source.items ?? []) {
      const value = secret.data?.[item.key];
      if (value === undefined) throw new Error(`Secret ${namespace}/${source.name} has no key ${item.key}`);
      const file = join(dir, item.path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, Buffer.from(value, 'base64'), { mode: 0o600 });
    }
  }
  return dir;
}
