// SIGTERM under sustained load, with two real `serve` processes behind a client that behaves like
// the apiserver behind a Service: it routes only to replicas whose /readyz passes (what endpoints
// do), keeps connections alive, and retries once when a reused idle connection turns out closed
// (what Go's HTTP client does). Not one request may fail.
import { Agent, request, type RequestOptions } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { tempDir } from '../support/temp-dir.ts';
import { startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';
import { ACR_POD_CREATE_REVIEW } from '../support/reviews.ts';

const REVIEW = ACR_POD_CREATE_REVIEW;

const replicas: WebhookProcess[] = [];
afterAll(async () => {
  await Promise.all(replicas.map((replica) => replica.kill()));
});

function post(options: RequestOptions): Promise<{ status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { ...options, method: 'POST', path: '/mutate', headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => reject(Object.assign(error, { reused: req.reusedSocket })));
    req.end(REVIEW);
  });
}

test('SIGTERM under load: no request fails, /readyz answers 503 until exit, which comes in bounded time', async () => {
  const pki = testPki();
  const files = writeServeFiles(pki, { dir: tempDir('serve') });
  for (let i = 0; i < 2; i++) replicas.push(await startWebhookProcess({ ...files, drainDelaySeconds: 2 }));
  const [leaving, staying] = replicas as [WebhookProcess, WebhookProcess];
  const agents = new Map(
    replicas.map((replica) => [replica, new Agent({ keepAlive: true, maxSockets: 4, ca: pki.ca.certPem })]),
  );
  const ready = new Set(replicas);

  let stop = false;
  const endpoints = (async () => {
    while (!stop) {
      for (const replica of replicas) {
        const status = await fetch(`http://127.0.0.1:${replica.healthPort}/readyz`).then(
          (r) => r.status,
          () => 0,
        );
        if (status === 200) ready.add(replica);
        else ready.delete(replica);
      }
      await sleep(100);
    }
  })();

  let sent = 0;
  let failed = 0;
  let retried = 0; // reported below: Go-style retries on a reused connection the server had just closed
  const servedBy = new Map<WebhookProcess, number>();
  const worker = async (index: number) => {
    while (!stop) {
      const targets = [...ready];
      const replica = targets[(sent + index) % targets.length];
      if (replica === undefined) {
        failed++;
        await sleep(10);
        continue;
      }
      const options = { host: '127.0.0.1', port: replica.port, agent: agents.get(replica) };
      sent++;
      try {
        let answer;
        try {
          answer = await post(options);
        } catch (error) {
          if (!(error as { reused?: boolean }).reused) throw error;
          retried++;
          answer = await post(options);
        }
        if (answer.status !== 200) failed++;
        servedBy.set(replica, (servedBy.get(replica) ?? 0) + 1);
      } catch {
        failed++;
      }
    }
  };
  const workers = Promise.all([0, 1, 2, 3].map(worker));
  await sleep(1_000);
  const servedBeforeTerm = servedBy.get(leaving) ?? 0;
  const sentBeforeTerm = sent;
  const termAt = Date.now();
  const exited = new Promise<number>((resolve) => leaving.process.once('exit', () => resolve(Date.now() - termAt)));
  leaving.process.kill('SIGTERM');
  // What the leaving replica's /readyz answers between SIGTERM and its exit (0: no answer).
  const drainReadyz: number[] = [];
  let gone = false;
  const watchDrain = (async () => {
    while (!gone) {
      drainReadyz.push(
        await fetch(`http://127.0.0.1:${leaving.healthPort}/readyz`).then(
          (r) => r.status,
          () => 0,
        ),
      );
      await sleep(50);
    }
  })();
  const exitedAfterMs = await exited;
  const sentDuringDrain = sent - sentBeforeTerm;
  gone = true;
  await watchDrain;
  await sleep(500);
  stop = true;
  await Promise.all([workers, endpoints]);
  for (const agent of agents.values()) agent.destroy();

  process.stderr.write(
    `graceful shutdown: sent=${sent} failed=${failed} retried=${retried} exitedAfterMs=${exitedAfterMs} ` +
      `readyz during drain=${drainReadyz.join(',')}\n`,
  );
  expect(failed).toBe(0);
  expect(sent).toBeGreaterThan(200);
  expect(servedBeforeTerm).toBeGreaterThan(0);
  expect(servedBy.get(staying) ?? 0).toBeGreaterThan(0);
  // drain delay (2 s) + closing; far below the shutdown timeout
  expect(exitedAfterMs).toBeGreaterThanOrEqual(2_000);
  expect(exitedAfterMs).toBeLessThan(5_000);
  expect(leaving.process.exitCode).toBe(0);
  expect(sentDuringDrain).toBeGreaterThan(0);
  expect(drainReadyz).toContain(503);
  expect(drainReadyz.slice(drainReadyz.indexOf(503))).not.toContain(200);
  const lines = leaving.logLines().map((line) => line['msg']);
  expect(lines).toContain('shutting down: readiness fails, still serving');
  expect(lines).toContain('stopped');
  expect(lines.indexOf('shutting down: readiness fails, still serving')).toBeLessThan(lines.indexOf('stopped'));
}, 30_000);
