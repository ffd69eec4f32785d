// `sync-secrets --watch` that cannot bind its health port must not half-run: the real CLI exits 1
// within a bound with one line naming the port, having made no API call (no Lease taken, no watch).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { terminate } from '../support/child-process.ts';
import { tempDir } from '../support/temp-dir.ts';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');
/** Start-up takes one or two seconds; a process still running after this has hung. */
const EXIT_BOUND_MS = 15_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function listening<T extends { listen: (port: number, host: string, done: () => void) => unknown }>(
  server: T & { address: () => unknown; close: (done: () => void) => unknown },
): Promise<number> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  cleanups.push(() => new Promise((done) => server.close(() => done(undefined))));
  return (server.address() as AddressInfo).port;
}

test('--watch with its health port taken exits 1 with one line, and never calls the API', async () => {
  const healthPort = await listening(createServer());
  // A stand-in apiserver that records every request and answers none of them usefully.
  const requests: string[] = [];
  const apiserver = createHttpServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.writeHead(503).end();
  });
  const apiPort = await listening(apiserver);
  cleanups.push(() => apiserver.closeAllConnections());

  const dir = tempDir('sync-startup');
  writeFileSync(join(dir, 'username'), 'user');
  writeFileSync(join(dir, 'password'), 'password');
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'registries:',
      '  - server: myregistry.azurecr.io',
      '    secretName: acr-myregistry',
      `    credentials: {usernameFile: ${join(dir, 'username')}, passwordFile: ${join(dir, 'password')}}`,
    ].join('\n'),
  );
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      `clusters: [{name: c, cluster: {server: "http://127.0.0.1:${apiPort}", insecure-skip-tls-verify: true}}]`,
      'users: [{name: u, user: {token: t}}]',
      'contexts: [{name: x, context: {cluster: c, user: u}}]',
      'current-context: x',
    ].join('\n'),
  );

  const args = ['sync-secrets', '--watch', '--config', config, '--kubeconfig', kubeconfig];
  const child = spawn(
    process.execPath,
    [MAIN, ...args, '--host', '127.0.0.1', '--health-port', String(healthPort), '--lease-namespace', 'default'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '', HOME: dir } },
  );
  cleanups.push(() => terminate(child, 1_000));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | 'still running'>((done) => {
    const bound = setTimeout(() => done('still running'), EXIT_BOUND_MS);
    child.once('close', (exitCode) => {
      clearTimeout(bound);
      done(exitCode ?? -1);
    });
  });

  expect({ code, stdout, stderr }).toEqual({
    code: 1,
    stdout: '',
    stderr: `acr-pull-webhook sync-secrets: health port 127.0.0.1:${healthPort}: address already in use (EADDRINUSE)\n`,
  });
  expect(requests).toEqual([]);
}, 30_000);
