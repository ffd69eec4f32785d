import { describe, expect, test } from 'vitest';
import { TokenBucket } from './rate-limit.ts';

/** A bucket on a hand-moved clock: `at(ms)` sets the time, `reserve()` says how long that caller waits. */
function bucket(qps: number, burst: number) {
  let now = 0;
  const limiter = new TokenBucket({ qps, burst }, { now: () => now });
  return {
    at(ms: number) {
      now = ms;
      return limiter;
    },
  };
}

describe('the API token bucket (client-go --kube-api-qps / --kube-api-burst)', () => {
  test('lets `burst` requests go at once, then spaces the rest at 1/qps, in the order they asked', () => {
    const b = bucket(10, 3);
    const waits = Array.from({ length: 6 }, () => b.at(0).reserve());
    expect(waits.map(Math.round)).toEqual([0, 0, 0, 100, 200, 300]);
  });

  test('refills at qps up to burst after a quiet period, never beyond', () => {
    const b = bucket(10, 3);
    for (let i = 0; i < 3; i++) b.at(0).reserve();
    expect(b.at(250).reserve()).toBe(0); // 2.5 tokens back
    expect(b.at(250).reserve()).toBe(0);
    expect(Math.round(b.at(250).reserve())).toBe(50);
    const rested = bucket(10, 3);
    rested.at(0).reserve();
    const later = Array.from({ length: 4 }, () => rested.at(60_000).reserve());
    expect(later.map(Math.round)).toEqual([0, 0, 0, 100]);
  });

  test('a qps of 0 never waits', () => {
    const b = bucket(0, 1);
    expect(Array.from({ length: 1000 }, () => b.at(0).reserve()).every((wait) => wait === 0)).toBe(true);
  });

  test('wait() sleeps the reserved time', async () => {
    const slept: number[] = [];
    const limiter = new TokenBucket(
      { qps: 5, burst: 1 },
      {
        now: () => 0,
        sleep: async (ms) => {
          slept.push(ms);
          return true;
        },
      },
    );
    await limiter.wait();
    await limiter.wait();
    await limiter.wait();
    expect(slept.map(Math.round)).toEqual([200, 400]);
  });
});
