// `serve` must not load the Kubernetes client: it makes no API calls, and the client takes seconds of
// start-up and tens of MiB of memory. main.ts loads each verb only when that verb runs.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { tempDir } from '../support/temp-dir.ts';
import { MAIN, serveArgv, writeServeFiles } from '../support/webhook-process.ts';
const RECORDER = resolve(import.meta.dirname, '../support/record-modules.mjs');

test('serve starts, answers and stops without loading @kubernetes/client-node', async () => {
  const files = writeServeFiles(testPki(), { dir: tempDir('serve') });
  const modulesFile = join(files.dir, 'modules.txt');
  const child = spawn(process.execPath, ['--import', RECORDER, ...serveArgv(files)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { PATH: process.env['PATH'] ?? '', RECORD_MODULES_FILE: modulesFile },
  });
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

test('each verb is loaded only when it runs: serve --help loads neither sync-secrets nor explain', () => {
  const modulesFile = join(tempDir('modules'), 'modules.txt');
  const result = spawnSync(process.execPath, ['--import', RECORDER, MAIN, 'serve', '--help'], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'] ?? '', RECORD_MODULES_FILE: modulesFile },
    timeout: 20_000,
  });
  expect(result.status).toBe(0);
  expect(result.stdout).toMatch(/^Usage: acr-pull-webhook serve /);
  const modules = readFileSync(modulesFile, 'utf8').split('\n');
  expect(modules.some((url) => url.endsWith('/src/cli/serve.ts'))).toBe(true);
  expect(modules.filter((url) => /\/src\/cli\/(sync-secrets|explain)\.ts$/.test(url))).toEqual([]);
}, 30_000);
