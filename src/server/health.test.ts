// The shared health server on a real socket: probes follow the injected checks, /metrics serves the
// injected registry, and a port that cannot be bound is one line naming it.
import { createServer, type Server } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, test } from 'vitest';
import { startHealthServer, type HealthChecks, type HealthServer } from './health.ts';

const running: HealthServer[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.close();
});

async function start(checks: HealthChecks): Promise<string> {
  const server = await startHealthServer(checks, { host: '127.0.0.1', port: 0 });
  running.push(server);
  return server.url;
}

async function get(url: string): Promise<[number, string]> {
  const response = await fetch(url);
  return [response.status, await response.text()];
}

describe('the health server', () => {
  test('/healthz and /readyz answer 200 ok, or 503 and the reason, as the checks say at each request', async () => {
    let live: string | undefined;
    let ready: string | undefined = 'namespaces not listed yet';
    const registry = new Registry();
    const base = await start({ notLiveReason: () => live, notReadyReason: () => ready, registry });
    expect(await get(`${base}/healthz`)).toEqual([200, 'ok']);
    expect(await get(`${base}/readyz`)).toEqual([503, 'not ready: namespaces not listed yet']);
    ready = undefined;
    live = 'stalled';
    expect(await get(`${base}/readyz`)).toEqual([200, 'ok']);
    expect(await get(`${base}/healthz`)).toEqual([503, 'not live: stalled']);
  });

  test('without a liveness check the process is always live', async () => {
    const base = await start({ notReadyReason: () => 'shutting down', registry: new Registry() });
    expect(await get(`${base}/healthz`)).toEqual([200, 'ok']);
  });

  test('a collector that throws makes /metrics answer 500, and the probes keep answering', async () => {
    const broken = {
      contentType: new Registry().contentType,
      metrics: (): Promise<string> => Promise.reject(new Error('collector failed')),
    };
    const base = await start({ notReadyReason: () => undefined, registry: broken });
    expect(await get(`${base}/metrics`)).toEqual([500, 'metrics: collector failed']);
    expect(await get(`${base}/healthz`)).toEqual([200, 'ok']);
  });

  test('a port in use is refused with one line naming the address, and nothing listens', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        startHealthServer({ notReadyReason: () => undefined, registry: new Registry() }, { host: '127.0.0.1', port }),
      ).rejects.toThrow(`health port 127.0.0.1:${port}: address already in use (EADDRINUSE)`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});
