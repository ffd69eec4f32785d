// `serve` must not load the Kubernetes client: it makes no API calls, and a static import of
// @kubernetes/client-node once cost 1–2.8 s of start-up and 60 MiB of memory (sync-secrets, which
// needs it, is loaded only when that verb runs).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';

const MAIN = resolve(import.meta.dirname, '../../src/cli/main.ts');
const RECORDER = resolve(import.meta.dirname, '../support/record-modules.mjs');

test('serve starts, answers and stops without loading @kubernetes/client-node', async () => {
  const pki = testPki();
  const dir = mkdtempSync(join(tmpdir(), 'serve-modules-'));
  writeFileSync(join(dir, 'config.yaml'), 'registries: [{server: myregistry.azurecr.io, secretName: acr}]');
  writeFileSync(join(dir, 'tls.crt'), pki.serving.certPem);
  writeFileSync(join(dir, 'tls.key'), pki.serving.keyPem);
  const modulesFile = join(dir, 'modules.txt');
  const child = spawn(
    process.execPath,
    ['--import', RECORDER, MAIN, 'serve', '--config', join(dir, 'config.yaml'), '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key'), '--host', '127.0.0.1', '--port', '0', '--health-port', '0', '--drain-delay', '0'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { PATH: process.env['PATH'] ?? '', RECORD_MODULES_FILE: modulesFile } },
  );
  let out = '';
  await new Promise<void>((listening, failed) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('"msg":"listening"')) listening();
    });
    child.once('exit', (code) => failed(new Error(`serve exited with ${code}: ${out}`)));
  });
  const exitCode = await new Promise<number | null>((exited) => {
    child.once('exit', (code) => exited(code));
    child.kill('SIGTERM');
  });
  expect(exitCode).toBe(0);

  const modules = readFileSync(modulesFile, 'utf8').split('\n');
  // The recorder works: serve's own modules and Fastify are in the list.
  expect(modules.some((url) => url.endsWith('/src/cli/serve.ts'))).toBe(true);
  expect(modules.some((url) => url.includes('/node_modules/fastify/'))).toBe(true);
  expect(modules.filter((url) => url.includes('/node_modules/@kubernetes/client-node/'))).toEqual([]);
}, 30_000);
