// `serve` and `sync-secrets --watch` answer the same requests on their health ports the same way:
// methods, status codes, content type, cache-control, allow, bodies. Each row runs against serve's
// real health port (serve() with a test certificate) and against the listener sync-secrets serves.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serve, type RunningServer } from '../../src/cli/serve.ts';
import { healthListener } from '../../src/sync/health.ts';
import { createSyncMetrics } from '../../src/sync/metrics.ts';
import { testPki } from '../support/certificates.ts';
import { capturedLogger } from '../support/logs.ts';
import { tempDir } from '../support/temp-dir.ts';
import { writeServeFiles } from '../support/webhook-process.ts';

const TEXT = 'text/plain; charset=utf-8';
const PROMETHEUS = 'text/plain; version=0.0.4; charset=utf-8';

async function startServe(drainDelaySeconds: number, dir: string): Promise<RunningServer> {
  const files = writeServeFiles(testPki(), { dir });
  return serve(
    {
      config: files.config,
      tlsCert: files.certFile,
      tlsKey: files.keyFile,
      port: 0,
      healthPort: 0,
      host: '127.0.0.1',
      logLevel: 'info',
      drainDelaySeconds,
      shutdownTimeoutSeconds: 5,
    },
    capturedLogger().logger,
  );
}

async function startSync(notReadyReason: () => string | undefined): Promise<{ url: string; server: Server }> {
  const metrics = createSyncMetrics({ processMetrics: false, isLeader: () => true, optedInNamespaces: () => 1 });
  const server = createServer(
    healthListener({ notLiveReason: () => undefined, notReadyReason, registry: metrics.registry }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

interface Answer {
  status: number;
  contentType: string | null;
  cacheControl: string | null;
  allow: string | null;
  body: string;
}

async function ask(base: string, method: string, path: string): Promise<Answer> {
  const response = await fetch(`${base}${path}`, { method });
  const body = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    cacheControl: response.headers.get('cache-control'),
    allow: response.headers.get('allow'),
    // The metrics differ by command; that both are Prometheus text is what is compared.
    body: path.startsWith('/metrics') && body.startsWith('# HELP ') ? '# HELP ...' : body,
  };
}

const servers: Record<'serve' | 'sync-secrets', string> = { serve: '', 'sync-secrets': '' };
let running: RunningServer | undefined;
let sync: Server | undefined;
// Made at collection time: an afterAll registered from inside beforeAll would never run.
const runningDir = tempDir('serve');
beforeAll(async () => {
  running = await startServe(0, runningDir);
  servers.serve = running.healthUrl;
  const started = await startSync(() => undefined);
  sync = started.server;
  servers['sync-secrets'] = started.url;
});
afterAll(async () => {
  await running?.shutdown('test');
  sync?.closeAllConnections();
  sync?.close();
});

const ok = { contentType: TEXT, cacheControl: 'no-store', allow: null };
const metrics = { contentType: PROMETHEUS, cacheControl: 'no-store', allow: null };
const refused = { status: 405, contentType: null, cacheControl: null, allow: 'GET, HEAD', body: '' };

describe.each(['serve', 'sync-secrets'] as const)('the %s health port', (command) => {
  test.each([
    { request: 'GET /healthz', answer: { status: 200, ...ok, body: 'ok' } },
    { request: 'HEAD /healthz', answer: { status: 200, ...ok, body: '' } },
    { request: 'GET /readyz', answer: { status: 200, ...ok, body: 'ok' } },
    { request: 'GET /readyz?full=1', answer: { status: 200, ...ok, body: 'ok' } },
    { request: 'GET /metrics', answer: { status: 200, ...metrics, body: '# HELP ...' } },
    { request: 'HEAD /metrics', answer: { status: 200, ...metrics, body: '' } },
    { request: 'POST /healthz', answer: refused },
    { request: 'PUT /readyz', answer: refused },
    { request: 'DELETE /metrics', answer: refused },
    {
      request: 'GET /',
      answer: { status: 404, contentType: TEXT, cacheControl: null, allow: null, body: 'not found' },
    },
  ])('answers $request with $answer.status', async ({ request, answer }) => {
    const [method = '', path = ''] = request.split(' ');
    expect(await ask(servers[command], method, path)).toEqual(answer);
  });
});

test('while shutting down both answer /readyz 503 "not ready: shutting down", with the same headers', async () => {
  const draining = await startServe(2, tempDir('serve'));
  const stopped = draining.shutdown('SIGTERM');
  const shuttingDown = await startSync(() => 'shutting down');
  try {
    const expected = { status: 503, ...ok, body: 'not ready: shutting down' };
    expect(await ask(draining.healthUrl, 'GET', '/readyz')).toEqual(expected);
    expect(await ask(shuttingDown.url, 'GET', '/readyz')).toEqual(expected);
  } finally {
    shuttingDown.server.close();
    await stopped;
  }
});
