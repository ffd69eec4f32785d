import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { healthListener, watchStallReason } from './health.ts';
import { createSyncMetrics } from './metrics.ts';

describe('the watch-stall rule behind /healthz', () => {
  test.each([
    { why: 'progress 5 s ago with a 60 s limit is live', last: 95_000, started: 0, now: 100_000, live: true },
    { why: 'exactly at the limit is still live', last: 40_000, started: 0, now: 100_000, live: true },
    { why: 'no progress for 61 s is not live', last: 39_000, started: 0, now: 100_000, live: false },
    { why: 'before the first list, the start time counts', last: 0, started: 90_000, now: 100_000, live: true },
    { why: 'a first list that never comes fails after the limit', last: 0, started: 10_000, now: 100_000, live: false },
  ])('$why', ({ last, started, now, live }) => {
    const watches = [{ name: 'namespace watch', lastProgressAt: last }];
    expect(watchStallReason(watches, started, 60_000, now) === undefined).toBe(live);
  });

  test('says how long the watch has been quiet', () => {
    const watches = [{ name: 'namespace watch', lastProgressAt: 0 }];
    expect(watchStallReason(watches, 0, 60_000, 75_000)).toBe(
      'namespace watch has made no progress for 75 s (limit 60 s)',
    );
  });

  test('one stalled watch is enough, and the reason names it, not the busy one', () => {
    const watches = [
      { name: 'namespace watch', lastProgressAt: 99_000 },
      { name: 'secret watch', lastProgressAt: 20_000 },
    ];
    expect(watchStallReason(watches, 0, 60_000, 100_000)).toBe(
      'secret watch has made no progress for 80 s (limit 60 s)',
    );
  });
});

/** Serves `listener` on a loopback port for the length of `body`. */
async function serving(
  listener: ReturnType<typeof healthListener>,
  body: (base: string) => Promise<void>,
): Promise<void> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await body(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const quietMetrics = () =>
  createSyncMetrics({ processMetrics: false, isLeader: () => true, optedInNamespaces: () => 2 });

describe('the sync-secrets health port', () => {
  test('serves /metrics as Prometheus text, whatever liveness and readiness say', async () => {
    const metrics = quietMetrics();
    metrics.secrets.inc({ result: 'created' }, 2);
    metrics.lastSuccess.set(1_767_225_600);
    const listener = healthListener({
      notLiveReason: () => 'stalled',
      notReadyReason: () => 'shutting down',
      registry: metrics.registry,
    });
    await serving(listener, async (base) => {
      const response = await fetch(`${base}/metrics?debug=1`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(response.headers.get('cache-control')).toBe('no-store');
      const text = await response.text();
      expect(text).toContain('# TYPE acr_pull_webhook_sync_secret_reconciles_total counter\n');
      expect(text.split('\n')).toEqual(
        expect.arrayContaining([
          'acr_pull_webhook_sync_secret_reconciles_total{result="created"} 2',
          'acr_pull_webhook_sync_secret_reconciles_total{result="failed"} 0',
          'acr_pull_webhook_sync_passes_total{result="success"} 0',
          'acr_pull_webhook_sync_leader 1',
          'acr_pull_webhook_sync_opted_in_namespaces 2',
          'acr_pull_webhook_sync_last_success_timestamp_seconds 1767225600',
        ]),
      );
      const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
      expect([head.status, head.headers.get('content-type'), await head.text()]).toEqual([
        200,
        'text/plain; version=0.0.4; charset=utf-8',
        '',
      ]);
    });
  });
});
