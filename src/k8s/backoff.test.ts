import { describe, expect, test } from 'vitest';
import { BackoffTimer, jitter, retry, sleep, type Backoff, type Sleep } from './backoff.ts';

const noJitter = { duration: 100, factor: 2, jitter: 0 };
const delays = (backoff: Backoff, count: number, random?: () => number): number[] => {
  const timer = new BackoffTimer(backoff, random);
  return Array.from({ length: count }, () => timer.step());
};

describe('the delays of a Backoff (client-go wait.Backoff.Step)', () => {
  test.each([
    {
      why: 'double from the first delay, one step at a time',
      backoff: { ...noJitter, steps: 10, cap: 0 },
      expected: [100, 200, 400, 800, 1600],
    },
    {
      why: 'stop growing at the cap and stay there',
      backoff: { ...noJitter, steps: Infinity, cap: 500 },
      expected: [100, 200, 400, 500, 500, 500],
    },
    {
      why: 'stop growing once the steps are used up',
      backoff: { ...noJitter, steps: 3, cap: 0 },
      expected: [100, 200, 400, 800, 800, 800],
    },
    {
      why: 'stay constant with a factor of 1',
      backoff: { duration: 250, factor: 1, jitter: 0, steps: 4, cap: 0 },
      expected: [250, 250, 250, 250],
    },
  ])('$why', ({ backoff, expected }) => {
    expect(delays(backoff, expected.length)).toEqual(expected);
  });

  test('add up to jitter × delay on top of each delay (d + random × jitter × d)', () => {
    const backoff = { duration: 100, factor: 2, jitter: 0.5, steps: Infinity, cap: 1000 };
    expect(delays(backoff, 3, () => 0)).toEqual([100, 200, 400]);
    expect(delays(backoff, 3, () => 0.5)).toEqual([125, 250, 500]);
    expect(delays(backoff, 5, () => 1)).toEqual([150, 300, 600, 1200, 1500]);
  });

  test('start again from the first delay after reset (progress was made)', () => {
    const timer = new BackoffTimer({ ...noJitter, steps: Infinity, cap: 0 });
    expect([timer.step(), timer.step(), timer.step()]).toEqual([100, 200, 400]);
    timer.reset();
    expect(timer.step()).toBe(100);
  });

  test('jitter with a factor of 0 or less counts as a factor of 1, as wait.Jitter does', () => {
    expect(jitter(100, 0, () => 0.5)).toBe(150);
    expect(jitter(100, 0.2, () => 1)).toBe(120);
  });
});

describe('retry (client-go wait.ExponentialBackoff)', () => {
  const recorder = () => {
    const slept: number[] = [];
    const fakeSleep: Sleep = async (ms) => {
      slept.push(ms);
      return true;
    };
    return { slept, fakeSleep };
  };
  const failing = (outcomes: (Error | string)[]) => {
    let calls = 0;
    const run = async (): Promise<string> => {
      const next = outcomes[calls++];
      if (next instanceof Error) throw next;
      return next ?? 'done';
    };
    return { run, calls: () => calls };
  };
  const backoff = { duration: 100, factor: 2, jitter: 0, steps: 4, cap: 1000 };

  test('waits the backoff delays between attempts and returns the first success', async () => {
    const { slept, fakeSleep } = recorder();
    const call = failing([new Error('a'), new Error('b'), 'ok']);
    await expect(retry(backoff, call.run, { decide: () => 'backoff', sleep: fakeSleep })).resolves.toBe('ok');
    expect(slept).toEqual([100, 200]);
    expect(call.calls()).toBe(3);
  });

  test('makes `steps` attempts and then throws the last error', async () => {
    const { slept, fakeSleep } = recorder();
    const call = failing([new Error('1'), new Error('2'), new Error('3'), new Error('4'), 'never']);
    await expect(retry(backoff, call.run, { decide: () => 'backoff', sleep: fakeSleep })).rejects.toThrow('4');
    expect(call.calls()).toBe(4);
    expect(slept).toEqual([100, 200, 400]);
  });

  test('ends its attempts when the delay reaches the cap, as client-go does', async () => {
    const { slept, fakeSleep } = recorder();
    const call = failing(Array.from({ length: 10 }, (_, i) => new Error(String(i + 1))));
    const capped = { duration: 100, factor: 2, jitter: 0, steps: 10, cap: 300 };
    await expect(retry(capped, call.run, { decide: () => 'backoff', sleep: fakeSleep })).rejects.toThrow('3');
    expect(slept).toEqual([100, 200]);
  });

  test('does not retry what it is told to stop on', async () => {
    const { slept, fakeSleep } = recorder();
    const call = failing([new Error('forbidden'), 'never']);
    await expect(retry(backoff, call.run, { decide: () => 'stop', sleep: fakeSleep })).rejects.toThrow('forbidden');
    expect(call.calls()).toBe(1);
    expect(slept).toEqual([]);
  });

  test('retries at once without waiting, counting each as an attempt', async () => {
    const { slept, fakeSleep } = recorder();
    const call = failing([new Error('c1'), new Error('c2'), new Error('c3'), new Error('c4'), 'never']);
    const retried: number[] = [];
    await expect(
      retry(backoff, call.run, {
        decide: () => 'at-once',
        sleep: fakeSleep,
        onRetry: (_error, attempt, delay) => retried.push(attempt, delay),
      }),
    ).rejects.toThrow('c4');
    expect(slept).toEqual([]);
    expect(retried).toEqual([1, 0, 2, 0, 3, 0]);
  });

  const throttled = (seconds: number): Error => Object.assign(new Error('429'), { retryAfterSeconds: seconds });

  test.each([
    { why: "waits the server's Retry-After when it is longer than the backoff", seconds: 3, expected: [3000, 3000] },
    { why: 'keeps the backoff delay when it is longer than Retry-After', seconds: 0, expected: [100, 200] },
    {
      why: 'waits at most the bound on Retry-After (a misbehaving server)',
      seconds: 86_400,
      expected: [60_000, 60_000],
    },
  ])('$why', async ({ seconds, expected }) => {
    const { slept, fakeSleep } = recorder();
    const call = failing([throttled(seconds), throttled(seconds), 'ok']);
    await expect(retry(backoff, call.run, { decide: () => 'backoff', sleep: fakeSleep })).resolves.toBe('ok');
    expect(slept).toEqual(expected);
  });

  test('reports the delay it will really wait (Retry-After) to onRetry', async () => {
    const { fakeSleep } = recorder();
    const reported: number[] = [];
    const call = failing([throttled(2), 'ok']);
    await retry(backoff, call.run, {
      decide: () => 'backoff',
      sleep: fakeSleep,
      maxRetryAfterMs: 5_000,
      onRetry: (_error, _attempt, delay) => reported.push(delay),
    });
    expect(reported).toEqual([2000]);
  });

  test('an abort during the wait ends it at once with the last error', async () => {
    const abort = new AbortController();
    const call = failing([new Error('unavailable'), 'never']);
    const started = Date.now();
    const pending = retry({ ...backoff, duration: 60_000 }, call.run, {
      decide: () => 'backoff',
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 20);
    await expect(pending).rejects.toThrow('unavailable');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(call.calls()).toBe(1);
  });
});

describe('sleep', () => {
  test('says whether it waited the whole time or was aborted', async () => {
    expect(await sleep(1)).toBe(true);
    const abort = new AbortController();
    const pending = sleep(60_000, abort.signal);
    abort.abort();
    expect(await pending).toBe(false);
    expect(await sleep(60_000, abort.signal)).toBe(false);
  });
});
