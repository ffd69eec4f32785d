// serve() on real sockets: HTTPS only, TLS 1.2 minimum (checked against a permissive server), certificate
// hot reload without a failed request, a bad new pair refused, and a drain on shutdown.
import { X509Certificate } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { connect } from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { testPki, type TestPki } from '../../test/support/certificates.ts';
import { capturedLogger } from '../../test/support/logs.ts';
import { SecretVolume } from '../../test/support/secret-volume.ts';
import { tempDir } from '../../test/support/temp-dir.ts';
import { startPermissiveTlsServer } from '../../test/support/permissive-tls-server.ts';
import pino from 'pino';
import { readFileSync } from 'node:fs';
import { createLogger, serve, type RunningServer } from './serve.ts';
import { ACR_POD_CREATE_REVIEW } from '../../test/support/reviews.ts';

const REVIEW = ACR_POD_CREATE_REVIEW;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(pki: TestPki, extra: { drainDelaySeconds?: number } = {}) {
  const dir = tempDir('serve');
  writeFileSync(join(dir, 'config.yaml'), 'registries: [{server: myregistry.azurecr.io, secretName: acr-myregistry}]');
  const volume = new SecretVolume({ 'tls.crt': pki.serving.certPem, 'tls.key': pki.serving.keyPem });
  cleanups.push(() => volume.remove());
  const logs = capturedLogger();
  const server: RunningServer = await serve(
    {
      config: join(dir, 'config.yaml'),
      tlsCert: volume.path('tls.crt'),
      tlsKey: volume.path('tls.key'),
      port: 0,
      healthPort: 0,
      host: '127.0.0.1',
      logLevel: 'info',
      drainDelaySeconds: extra.drainDelaySeconds ?? 0,
      shutdownTimeoutSeconds: 5,
      certPollMs: 200,
    },
    logs.logger,
  );
  cleanups.push(() => server.shutdown('test'));
  return { server, volume, logs, port: Number(new URL(server.admissionUrl).port) };
}

interface Answer {
  status: number;
  fingerprint: string;
  body: string;
}

function post(port: number, ca: string[], agent?: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/mutate',
        method: 'POST',
        ca,
        agent: agent ?? false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint, body }));
      },
    );
    req.on('error', reject);
    req.end(REVIEW);
  });
}

function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** One handshake offering only `version`, with every suite OpenSSL has (SECLEVEL=0 keeps the old ones). */
function handshake(port: number, pki: TestPki, version: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2'): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: [pki.ca.certPem],
      minVersion: version,
      maxVersion: version,
      ciphers: 'ALL:@SECLEVEL=0',
    });
    socket.on('secureConnect', () => {
      resolve(`connected with ${socket.getProtocol()}`);
      socket.end();
    });
    socket.on('error', (error) => resolve(`refused: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
  });
}

describe('serve over real sockets', () => {
  test('answers reviews over HTTPS with the configured certificate', async () => {
    const pki = testPki();
    const { port } = await start(pki);
    const answer = await post(port, [pki.ca.certPem]);
    expect(answer.status).toBe(200);
    expect(answer.fingerprint).toBe(fingerprintOf(pki.serving.certPem));
    expect(JSON.parse(answer.body).response.patchType).toBe('JSONPatch');
  });

  test('refuses TLS 1.0 and 1.1 that a permissive server accepts from the same client, and plain HTTP', async () => {
    const pki = testPki();
    const { port } = await start(pki);
    const permissive = await startPermissiveTlsServer(pki);
    cleanups.push(() => permissive.close());
    for (const version of ['TLSv1', 'TLSv1.1'] as const) {
      expect(await handshake(permissive.port, pki, version)).toBe(`connected with ${version}`);
      expect(await handshake(port, pki, version)).toBe('refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    }
    expect(await handshake(port, pki, 'TLSv1.2')).toBe('connected with TLSv1.2');
    const plain = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/mutate', method: 'POST' }, (res) =>
        resolve(`status ${res.statusCode}`),
      );
      req.on('error', (error) => resolve((error as NodeJS.ErrnoException).code ?? 'error'));
      req.end(REVIEW);
    });
    expect(plain).not.toMatch(/^status 2/);
  });

  test('serves a swapped certificate to new connections with no failed request during the swap', async () => {
    const before = testPki();
    const after = testPki();
    const { port, volume } = await start(before);
    const trust = [before.ca.certPem, after.ca.certPem];
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => keepAlive.destroy());
    const seen: string[] = [];
    let failures = 0;
    let requests = 0;
    let swapped = false;
    let done = false;
    const deadline = Date.now() + 8_000;
    const loop = async (agent?: Agent) => {
      while (!done && Date.now() < deadline) {
        try {
          const answer = await post(port, trust, agent);
          requests++;
          if (answer.status !== 200) failures++;
          if (agent === undefined) seen.push(answer.fingerprint);
          if (swapped && agent === undefined && answer.fingerprint === fingerprintOf(after.serving.certPem))
            done = true;
        } catch {
          failures++;
        }
      }
    };
    const loops = Promise.all([loop(), loop(), loop(keepAlive)]);
    await sleep(500);
    volume.update({ 'tls.crt': after.serving.certPem, 'tls.key': after.serving.keyPem });
    swapped = true;
    await loops;
    expect(failures).toBe(0);
    expect(requests).toBeGreaterThan(10);
    expect(seen[0]).toBe(fingerprintOf(before.serving.certPem));
    expect(seen.at(-1)).toBe(fingerprintOf(after.serving.certPem));
  }, 15_000);

  test('refuses a new pair whose key does not match and keeps serving the old one', async () => {
    const pki = testPki();
    const other = testPki();
    const { port, volume, logs } = await start(pki);
    volume.update({ 'tls.crt': other.serving.certPem, 'tls.key': pki.serving.keyPem });
    await sleep(700);
    const answer = await post(port, [pki.ca.certPem, other.ca.certPem]);
    expect(answer.status).toBe(200);
    expect(answer.fingerprint).toBe(fingerprintOf(pki.serving.certPem));
    expect(logs.lines().some((line) => line['msg'] === 'new serving certificate refused; keeping the one in use')).toBe(
      true,
    );
  });

  test('on shutdown, readiness fails first while requests are still answered, then both ports close', async () => {
    const pki = testPki();
    const { server, port } = await start(pki, { drainDelaySeconds: 1 });
    const readyz = async () => (await fetch(`${server.healthUrl}/readyz`)).status;
    expect(await readyz()).toBe(200);
    const stopped = server.shutdown('SIGTERM');
    await sleep(200);
    expect(await readyz()).toBe(503);
    expect((await post(port, [pki.ca.certPem])).status).toBe(200);
    await stopped;
    await expect(post(port, [pki.ca.certPem])).rejects.toThrow(/ECONNREFUSED/);
  });
});

describe('the log', () => {
  test('a burst of lines that are not review lines is written at once without piling up drain listeners', async () => {
    const file = join(tempDir('serve-log'), 'out.log');
    const destination = pino.destination({ dest: file, sync: false, minLength: 4096 });
    const logger = createLogger('info', destination);
    for (let i = 0; i < 30; i += 1) logger.warn({ i }, 'certificate reload failed');
    expect(destination.listenerCount('drain')).toBe(0);
    await new Promise<void>((resolve) => destination.flush(() => resolve()));
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(30);
    expect(JSON.parse(lines[29] ?? '{}')).toMatchObject({ i: 29, msg: 'certificate reload failed' });
  });
});
