// A `serve` that cannot start must not half-run: with either port taken, the real CLI closes what it
// had already opened and exits 1 within a bound, with one line on stderr naming the port and address.
import { spawn } from 'node:child_process';
import { connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { terminate } from '../support/child-process.ts';
import { tempDir } from '../support/temp-dir.ts';
import { serveArgv, writeServeFiles } from '../support/webhook-process.ts';

/** Start-up takes about a second; a process still running after this has hung. */
const EXIT_BOUND_MS = 10_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A loopback port held by another listener for the rest of the test. */
async function takenPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as { port: number }).port;
}

/** A loopback port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

interface Run {
  /** Exit code, or 'still running' when the bound passed first (the process is then killed). */
  code: number | 'still running';
  stderr: string;
}

async function runServe(ports: { port: number; healthPort: number }): Promise<Run> {
  const argv = serveArgv(writeServeFiles(testPki(), { dir: tempDir('serve') }));
  argv[argv.indexOf('--port') + 1] = String(ports.port);
  argv[argv.indexOf('--health-port') + 1] = String(ports.healthPort);
  const child = spawn(process.execPath, argv, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '' },
  });
  cleanups.push(() => terminate(child, 1_000));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const code = await new Promise<number | 'still running'>((resolve) => {
    const bound = setTimeout(() => resolve('still running'), EXIT_BOUND_MS);
    child.once('close', (exitCode) => {
      clearTimeout(bound);
      resolve(exitCode ?? -1);
    });
  });
  return { code, stderr };
}

describe('serve with a port it cannot bind', () => {
  test('the admission port taken: exit 1, one line naming it, and the health port never opened', async () => {
    const port = await takenPort();
    const healthPort = await freePort();
    const run = await runServe({ port, healthPort });
    expect(run).toEqual({
      code: 1,
      stderr: `acr-pull-webhook serve: admission port 127.0.0.1:${port}: address already in use (EADDRINUSE)\n`,
    });
    expect(await refused(healthPort)).toBe(true);
  }, 30_000);

  test('the health port taken: exit 1, one line naming it, and the admission port closed again', async () => {
    const port = await freePort();
    const healthPort = await takenPort();
    const run = await runServe({ port, healthPort });
    expect(run).toEqual({
      code: 1,
      stderr: `acr-pull-webhook serve: health port 127.0.0.1:${healthPort}: address already in use (EADDRINUSE)\n`,
    });
    expect(await refused(port)).toBe(true);
  }, 30_000);
});
