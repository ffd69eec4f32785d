import { ApiException } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { parseRetryAfter, toKubeApiError } from './errors.ts';

const tooManyRequests = (headers: Record<string, string>) =>
  new ApiException(
    429,
    'Too Many Requests',
    JSON.stringify({
      kind: 'Status',
      reason: 'TooManyRequests',
      message: 'Too many requests, please try again later.',
    }),
    headers,
  );

describe('a 429 from the apiserver (API Priority and Fairness)', () => {
  test('carries the Retry-After seconds, whatever the header name case', () => {
    for (const name of ['retry-after', 'Retry-After']) {
      const failure = toKubeApiError(tooManyRequests({ [name]: '7' }), 'get secret a/b');
      expect(failure.status).toBe(429);
      expect(failure.reason).toBe('TooManyRequests');
      expect(failure.retryAfterSeconds).toBe(7);
      expect(failure.retryable).toBe(true);
    }
  });

  test('without a Retry-After header carries none', () => {
    expect(toKubeApiError(tooManyRequests({}), 'get secret a/b').retryAfterSeconds).toBeUndefined();
  });
});

describe('Retry-After values', () => {
  test.each([
    { value: '1', expected: 1 },
    { value: ' 30 ', expected: 30 },
    { value: '0', expected: 0 },
    { value: '-1', expected: undefined },
    { value: '1.5', expected: undefined },
    { value: 'Wed, 21 Oct 2015 07:28:00 GMT', expected: undefined },
    { value: '', expected: undefined },
    { value: undefined, expected: undefined },
  ])('"$value" is read as $expected seconds', ({ value, expected }) => {
    expect(parseRetryAfter(value)).toBe(expected);
  });
});
