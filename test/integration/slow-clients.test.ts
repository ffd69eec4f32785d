// Slow, idle and stalled clients against a real `serve` process: its memory stays bounded and
// other clients are served as usual.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { tempDir } from '../support/temp-dir.ts';
import { startWebhookProcess, writeServeFiles, type WebhookProcess } from '../support/webhook-process.ts';
import { ACR_POD_CREATE_REVIEW } from '../support/reviews.ts';

const pki = testPki();
const REVIEW = ACR_POD_CREATE_REVIEW;
const RAW_REQUEST =
  'POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
  `Content-Length: ${Buffer.byteLength(REVIEW)}\r\n\r\n${REVIEW}`;

let webhook: WebhookProcess;
const sockets: TLSSocket[] = [];

// Made at collection time: an afterAll registered from inside beforeAll would never run.
const serveDir = tempDir('serve');
beforeAll(async () => {
  webhook = await startWebhookProcess(writeServeFiles(pki, { dir: serveDir }));
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await webhook.kill();
});

function rssMiB(): number {
  const status = readFileSync(`/proc/${webhook.process.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

function open(): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: webhook.port, ca: pki.ca.certPem }, () => resolve(socket));
    socket.on('error', reject);
    sockets.push(socket);
  });
}

async function timedGoodRequest(): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: webhook.port,
        method: 'POST',
        path: '/mutate',
        ca: pki.ca.certPem,
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(REVIEW);
  });
  return { status, ms: performance.now() - started };
}

describe('slow and idle clients', () => {
  test('slowloris: 100 sockets trickling headers are cut after the headers timeout; others are served ' +
    'meanwhile', async () => {
    const slow = await Promise.all(Array.from({ length: 100 }, open));
    const closed = new Set<TLSSocket>();
    for (const socket of slow) {
      socket.on('close', () => closed.add(socket));
      socket.on('error', () => closed.add(socket));
      socket.write('POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    }
    const trickle = setInterval(() => {
      for (const socket of slow) if (!closed.has(socket)) socket.write('X');
    }, 500);
    try {
      for (let i = 0; i < 5; i++) {
        const answer = await timedGoodRequest();
        expect(answer.status).toBe(200);
        expect(answer.ms).toBeLessThan(1_000);
        await sleep(200);
      }
      const deadline = Date.now() + 15_000;
      while (closed.size < slow.length && Date.now() < deadline) await sleep(250);
      // headersTimeout is 10 s, checked every second
      expect(closed.size).toBe(slow.length);
    } finally {
      clearInterval(trickle);
    }
  }, 30_000);

  test('500 idle keep-alive connections cost bounded memory and do not slow a new client', async () => {
    const before = rssMiB();
    const idle = await Promise.all(Array.from({ length: 500 }, open));
    await Promise.all(
      idle.map(
        (socket) =>
          new Promise<void>((resolve) => {
            socket.once('data', () => resolve());
            socket.write(RAW_REQUEST);
          }),
      ),
    );
    const grown = rssMiB() - before;
    expect(grown).toBeLessThan(80);
    const answer = await timedGoodRequest();
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeLessThan(1_000);
    expect(idle.filter((socket) => socket.destroyed)).toHaveLength(0); // kept alive, not dropped
    for (const socket of idle) socket.destroy();
  }, 30_000);

  test('a client that sends 5,000 pipelined reviews and never reads leaves memory bounded and others ' +
    'served', async () => {
    const before = rssMiB();
    const stalled = await open();
    stalled.pause();
    const batch = RAW_REQUEST.repeat(100);
    for (let i = 0; i < 50; i++) stalled.write(batch);
    await sleep(2_000);
    const answer = await timedGoodRequest();
    expect(answer.status).toBe(200);
    expect(answer.ms).toBeLessThan(1_000);
    expect(rssMiB() - before).toBeLessThan(100);
    stalled.destroy();
  }, 30_000);
});
