import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { healthListener, watchStallReason } from './health.ts';

describe('the watch-stall rule behind /healthz', () => {
  test.each([
    { why: 'progress 5 s ago with a 60 s limit is live', last: 95_000, started: 0, now: 100_000, live: true },
    { why: 'exactly at the limit is still live', last: 40_000, started: 0, now: 100_000, live: true },
    { why: 'no progress for 61 s is not live', last: 39_000, started: 0, now: 100_000, live: false },
    { why: 'before the first list, the start time counts', last: 0, started: 90_000, now: 100_000, live: true },
    { why: 'a first list that never comes fails after the limit', last: 0, started: 10_000, now: 100_000, live: false },
  ])('$why', ({ last, started, now, live }) => {
    expect(watchStallReason(last, started, 60_000, now) === undefined).toBe(live);
  });

  test('says how long the watch has been quiet', () => {
    expect(watchStallReason(0, 0, 60_000, 75_000)).toBe('namespace watch has made no progress for 75 s (limit 60 s)');
  });
});

describe('the health port', () => {
  test('answers /healthz and /readyz with 200 ok or 503 and the reason', async () => {
    let live: string | undefined;
    let ready: string | undefined = 'namespaces not listed yet';
    const server = createServer(healthListener({ notLiveReason: () => live, notReadyReason: () => ready }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const get = async (path: string): Promise<[number, string]> => {
      const response = await fetch(`${base}${path}`);
      return [response.status, await response.text()];
    };
    try {
      expect(await get('/healthz')).toEqual([200, 'ok']);
      expect(await get('/readyz')).toEqual([503, 'not ready: namespaces not listed yet']);
      ready = undefined;
      live = 'stalled';
      expect(await get('/readyz')).toEqual([200, 'ok']);
      expect(await get('/healthz')).toEqual([503, 'not live: stalled']);
      expect((await get('/metrics'))[0]).toBe(404);
      expect((await fetch(`${base}/healthz`, { method: 'POST' })).status).toBe(405);
    } finally {
      server.close();
    }
  });
});
