import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { type Backoff, BackoffTimer } from '../k8s/backoff.ts';
import {
  afterFailure,
  isUsable,
  lifetimeOf,
  refreshAt,
  refreshFractionProblem,
  TOKEN_RETRY_BACKOFF,
  type TokenLifetime,
  usableUntil,
} from './refresh.ts';

const T0 = Date.UTC(2026, 10, 30, 12);
const S = 1000;
const threeHours: TokenLifetime = { start: T0, expiresAt: T0 + 3 * 3600 * S };
const oneMinute: TokenLifetime = { start: T0, expiresAt: T0 + 60 * S };

describe('a token counts as issued at the earlier of its iat and its receipt', () => {
  test.each([
    { why: 'no iat: when it was received', iat: undefined, start: T0 },
    { why: 'an iat before receipt (a cached token): its iat', iat: T0 / S - 600, start: T0 - 600 * S },
    { why: "an iat after receipt (the issuer's clock ahead): its receipt", iat: T0 / S + 30, start: T0 },
  ])('$why', ({ iat, start }) => {
    const times = iat === undefined ? { exp: T0 / S + 3600 } : { exp: T0 / S + 3600, iat };
    expect(lifetimeOf(times, T0)).toEqual({ start, expiresAt: T0 + 3600 * S });
  });
});

describe('a token is refreshed once the fraction of its lifetime has passed', () => {
  test.each([
    {
      why: 'a 3-hour token at the default half: after 90 minutes',
      lifetime: threeHours,
      fraction: undefined,
      at: T0 + 90 * 60 * S,
    },
    { why: 'a 3-hour token at 0.8: after 144 minutes', lifetime: threeHours, fraction: 0.8, at: T0 + 144 * 60 * S },
    {
      why: 'a 60-second token at the default half: after 30 s',
      lifetime: oneMinute,
      fraction: undefined,
      at: T0 + 30 * S,
    },
    { why: 'a token born expired: at once', lifetime: { start: T0, expiresAt: T0 - S }, fraction: 0.5, at: T0 },
  ])('$why', ({ lifetime, fraction, at }) => {
    expect(refreshAt(lifetime, fraction)).toBe(at);
  });

  test.each([0, 1, -0.5, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('a fraction of %s is refused', (fraction) => {
    expect(refreshFractionProblem(fraction)).toBe(
      `the refresh fraction must be a number above 0 and below 1, not ${fraction}`,
    );
    expect(() => refreshAt(threeHours, fraction)).toThrow(RangeError);
  });

  test.each([0.01, 0.5, 0.99])('a fraction of %s is accepted', (fraction) => {
    expect(refreshFractionProblem(fraction)).toBeUndefined();
  });
});

describe('a token stays usable until a skew margin before it expires', () => {
  test.each([
    { why: 'a 3-hour token: until 60 s before exp', lifetime: threeHours, until: threeHours.expiresAt - 60 * S },
    { why: 'a 60-second token: until a tenth of its lifetime before exp', lifetime: oneMinute, until: T0 + 54 * S },
    {
      why: 'a token born expired: until its exp, with no margin',
      lifetime: { start: T0, expiresAt: T0 - S },
      until: T0 - S,
    },
  ])('$why', ({ lifetime, until }) => {
    expect(usableUntil(lifetime)).toBe(until);
    expect(isUsable(lifetime, until - 1)).toBe(true);
    expect(isUsable(lifetime, until)).toBe(false);
  });
});

describe('after a failed request', () => {
  test.each([
    {
      why: 'a usable token is kept and the retry waits the backoff delay',
      current: threeHours,
      now: T0 + 100 * 60 * S,
      delay: 4 * S,
      plan: { keepCurrent: true, retryAt: T0 + 100 * 60 * S + 4 * S },
    },
    {
      why: 'a token about to lapse is kept and retried once more just before it does',
      current: oneMinute,
      now: T0 + 50 * S,
      delay: 30 * S,
      plan: { keepCurrent: true, retryAt: T0 + 54 * S },
    },
    {
      why: 'a lapsed token is not kept and the retry waits the backoff delay',
      current: oneMinute,
      now: T0 + 55 * S,
      delay: 30 * S,
      plan: { keepCurrent: false, retryAt: T0 + 85 * S },
    },
    {
      why: 'with no token yet, the retry waits the backoff delay',
      current: undefined,
      now: T0,
      delay: S,
      plan: { keepCurrent: false, retryAt: T0 + S },
    },
  ])('$why', ({ current, now, delay, plan }) => {
    expect(afterFailure(current, now, delay)).toEqual(plan);
  });

  test("the retry timing is a Backoff of the project's one retry helper: 1 s doubling to 30 s", () => {
    const backoff: Backoff = TOKEN_RETRY_BACKOFF;
    const timer = new BackoffTimer({ ...backoff, jitter: 0 });
    expect(Array.from({ length: 7 }, () => timer.step())).toEqual([1, 2, 4, 8, 16, 30, 30].map((s) => s * S));
  });
});

describe('properties', () => {
  const lifetime = fc
    .tuple(fc.integer({ min: 0, max: 2 ** 42 }), fc.integer({ min: 1, max: 10 * 86_400_000 }))
    .map(([start, length]): TokenLifetime => ({ start, expiresAt: start + length }));
  const fraction = fc.double({ min: 0.001, max: 0.999, noNaN: true });

  test('the refresh comes inside the lifetime, and, for fractions up to 0.8, while the token is still usable', () => {
    fc.assert(
      fc.property(lifetime, fraction, (life, f) => {
        const at = refreshAt(life, f);
        expect(at).toBeGreaterThanOrEqual(life.start);
        expect(at).toBeLessThanOrEqual(life.expiresAt);
        if (f <= 0.8) expect(isUsable(life, at)).toBe(true);
      }),
    );
  });

  test('after a failure the retry is never earlier than now, and never later than now plus the delay', () => {
    fc.assert(
      fc.property(fc.option(lifetime), fc.integer({ min: 0, max: 2 ** 43 }), fc.nat(600_000), (life, now, delay) => {
        const plan = afterFailure(life ?? undefined, now, delay);
        expect(plan.retryAt).toBeGreaterThanOrEqual(now);
        expect(plan.retryAt).toBeLessThanOrEqual(now + delay);
        expect(plan.keepCurrent).toBe(life !== null && isUsable(life, now));
      }),
    );
  });
});
