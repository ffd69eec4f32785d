// Both entry points log an error that escapes every handler as one fatal pino JSON line on stderr
// and exit non-zero, instead of Node's multi-line stack trace that log pipelines cannot parse; and a
// process that does not exit after its command returned says what holds it instead of being forced out.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, test } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const PRELOAD = resolve(ROOT, 'test/support/crash-once-handled.mjs');

function crash(entry: string, kind: 'exception' | 'rejection'): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', PRELOAD, resolve(ROOT, entry), '--help'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', CRASH: kind },
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((done) => child.once('close', (code) => done({ code, stderr })));
}

test.each([
  { entry: 'src/cli/main.ts', service: 'acr-pull-webhook', kind: 'exception', msg: 'uncaught exception' },
  { entry: 'src/cli/main.ts', service: 'acr-pull-webhook', kind: 'rejection', msg: 'unhandled rejection' },
  { entry: 'certs-gen/cli.ts', service: 'certs-gen', kind: 'exception', msg: 'uncaught exception' },
  { entry: 'certs-gen/cli.ts', service: 'certs-gen', kind: 'rejection', msg: 'unhandled rejection' },
] as const)(
  '$entry logs an $msg as one fatal JSON line and exits 1',
  async ({ entry, service, kind, msg }) => {
    const { code, stderr } = await crash(entry, kind);
    expect(code).toBe(1);
    const lines = stderr.split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 60,
      service,
      msg,
      err: { type: 'Error', message: kind === 'exception' ? 'boom: thrown' : 'boom: rejected' },
    });
    expect((line['err'] as { stack: string }).stack).toContain('crash-once-handled.mjs');
  },
  30_000,
);

/** Runs a module that calls reportLingering(200 ms) and keeps a listener open for `holdMs` (0: none). */
function linger(holdMs: number): Promise<{ code: number | null; stderr: string }> {
  const script = [
    `import { reportLingering } from ${JSON.stringify(resolve(ROOT, 'src/process/crash.ts'))};`,
    `import { createServer } from 'node:net';`,
    `if (${holdMs} > 0) { const s = createServer().listen(0, '127.0.0.1'); setTimeout(() => s.close(), ${holdMs}); }`,
    `reportLingering({ service: 'test' }, 200);`,
  ].join('\n');
  const child = spawn(process.execPath, ['--input-type=module', '--eval', script], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '' },
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((done) => child.once('close', (code) => done({ code, stderr })));
}

test('a process still held open after its command returned names what holds it, and is not forced out', async () => {
  const { code, stderr } = await linger(1_000);
  expect(code).toBe(0);
  const lines = stderr.split('\n').filter((line) => line !== '');
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0] ?? '')).toMatchObject({
    level: 40,
    service: 'test',
    msg: 'finished, but still running: these resources were not closed',
    resources: expect.arrayContaining(['TCPServerWrap']),
  });
}, 30_000);

test('a process that closed everything exits without a word', async () => {
  expect(await linger(0)).toEqual({ code: 0, stderr: '' });
}, 30_000);
