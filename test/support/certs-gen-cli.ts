// Runs certs-gen the way a Job does: `node certs-gen/cli.ts VERB ...` in its own process, with a
// kubeconfig and an environment that cannot leak the test runner's cluster settings.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';

const CLI = resolve(import.meta.dirname, '../../certs-gen/cli.ts');
// A home that does not exist: no ~/.kube/config to fall back on, and no temp dir left behind by every import.
const HOME = '/nonexistent';

export interface CertsGenRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export function certsGen(args: readonly string[], kubeconfig: string): Promise<CertsGenRun> {
  const started = Date.now();
  return new Promise((done) => {
    execFile(
      process.execPath,
      [CLI, ...args, '--kubeconfig', kubeconfig],
      { env: { PATH: process.env['PATH'] ?? '', HOME }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        done({ code, stdout, stderr, ms: Date.now() - started });
      },
    );
  });
}

/** A kubeconfig file that authenticates with a bearer token (e.g. from the TokenRequest API). */
export function tokenKubeconfig(dir: string, server: string, caPem: string, token: string): string {
  const path = join(dir, `token-${Date.now()}.kubeconfig`);
  writeFileSync(
    path,
    toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'test', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } },
      ],
      users: [{ name: 'token', user: { token } }],
      contexts: [{ name: 'token@test', context: { cluster: 'test', user: 'token' } }],
      'current-context': 'token@test',
    }),
    { mode: 0o600 },
  );
  return path;
}
