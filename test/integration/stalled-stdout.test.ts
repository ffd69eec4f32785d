// A log reader that stops reading (a stuck container runtime) must neither stall admission nor make
// the webhook hold every unwritten line in memory: the real `serve` process writes its logs to a
// pipe this test stops draining, and thousands of reviews later every one is still answered,
// readiness holds, the lines past the bounded log buffer were dropped and counted, and SIGTERM
// still ends the process cleanly.
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:https';
import { afterAll, expect, test } from 'vitest';
import { METRIC_LOG_LINES_DROPPED } from '../../src/constants.ts';
import { testPki } from '../support/certificates.ts';
import { ACR_POD_CREATE_REVIEW } from '../support/reviews.ts';
import { tempDir } from '../support/temp-dir.ts';
import { serveArgv, writeServeFiles } from '../support/webhook-process.ts';
const REVIEWS = 12_000;
const CONCURRENCY = 16;

const pki = testPki();
// At debug every review has a line (at info only warned ones do): the lines that fill the pipe and the buffer.
const argv = serveArgv(writeServeFiles(pki, { dir: tempDir('serve') }), { logLevel: 'debug' });
const child = spawn(process.execPath, argv, {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { PATH: process.env['PATH'] ?? '' },
});
afterAll(() => void child.kill('SIGKILL'));

/** Reads stdout until the 'listening' line, then stops reading it for good. */
function listeningThenStall(): Promise<{ admission: string; health: string }> {
  return new Promise((resolveListening, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      const line = text.split('\n').find((candidate) => candidate.includes('"msg":"listening"'));
      if (line === undefined) return;
      child.stdout.off('data', onData);
      child.stdout.pause();
      resolveListening(JSON.parse(line) as { admission: string; health: string });
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code} before listening`)));
  });
}

function post(agent: Agent, url: string): Promise<number> {
  return new Promise((resolvePost, reject) => {
    const req = request(
      `${url}/mutate`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolvePost(res.statusCode ?? 0));
      },
    );
    req.setTimeout(5_000, () =>
      req.destroy(new Error('no answer within 5 s: admission is waiting for the log reader')),
    );
    req.on('error', reject);
    req.end(ACR_POD_CREATE_REVIEW);
  });
}

test('with nobody reading its stdout, serve answers every review, stays ready, counts dropped lines and ' +
  'stops on SIGTERM', async () => {
  const { admission, health } = await listeningThenStall();
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: pki.ca.certPem });
  const statuses = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REVIEWS) {
        next += 1;
        const status = await post(agent, admission);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  agent.destroy();
  expect(Object.fromEntries(statuses)).toEqual({ 200: REVIEWS });

  expect((await fetch(`${health}/readyz`)).status).toBe(200);
  const metrics = await (await fetch(`${health}/metrics`)).text();
  const dropped = Number(new RegExp(`^${METRIC_LOG_LINES_DROPPED} (\\d+)$`, 'm').exec(metrics)?.[1]);
  // 12,000 debug review lines of about 200 bytes (this review has no namespace or pod name) are
  // about 2.4 MB: more than the pipe and the 1 MiB log buffer hold, so some were dropped, and counted.
  expect(dropped).toBeGreaterThan(0);
  expect(dropped).toBeLessThan(REVIEWS);

  child.stdout.resume();
  const exitCode = await new Promise<number | null>((resolveExit) => {
    child.once('exit', (code) => resolveExit(code));
    child.kill('SIGTERM');
  });
  expect(exitCode).toBe(0);
}, 120_000);
