import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { JwtError, readJwtTimes } from './jwt.ts';

const b64 = (value: string): string => Buffer.from(value).toString('base64url');
const HEADER = b64('{"alg":"RS256","typ":"JWT"}');
const SIGNATURE = b64('signature bytes');
const jwt = (payload: string, header = HEADER, signature = SIGNATURE): string =>
  `${header}.${b64(payload)}.${signature}`;

describe('the time claims of a well-formed token are read', () => {
  test.each([
    { payload: '{"exp":1764547200}', times: { exp: 1764547200 } },
    { payload: '{"exp":1764547200,"iat":1764536400}', times: { exp: 1764547200, iat: 1764536400 } },
    { payload: '{"nbf":1,"iat":2,"exp":3.5,"aud":"r.azurecr.io"}', times: { exp: 3.5, iat: 2, nbf: 1 } },
    { payload: '{"exp":0}', times: { exp: 0 } },
  ])('a payload of $payload has $times', ({ payload, times }) => {
    expect(readJwtTimes(jwt(payload))).toEqual(times);
  });

  test('an unsigned token (an empty signature) is read too: the signature is the registry’s business', () => {
    expect(readJwtTimes(jwt('{"exp":10}', HEADER, ''))).toEqual({ exp: 10 });
  });
});

describe('a malformed token is refused with a line naming the problem', () => {
  test.each([
    { why: 'an empty string', token: '', message: 'the token is not a JWT: 1 dot-separated segments instead of 3' },
    { why: 'a JWE', token: 'a.b.c.d.e', message: 'the token is not a JWT: 5 dot-separated segments instead of 3' },
    {
      why: 'a padded payload',
      token: `${HEADER}.${b64('{"exp":1}')}=.x`,
      message: "the token's payload is not base64url",
    },
    {
      why: 'standard base64',
      token: `${HEADER}.${b64('{"exp":1}')}+.x`,
      message: "the token's payload is not base64url",
    },
    { why: 'a lone trailing character', token: `${HEADER}.abcde.x`, message: "the token's payload is not base64url" },
    {
      why: 'stray trailing bits',
      // eyJleHAiOjEwfQ is {"exp":10}; R differs from Q only in the four bits past the last byte
      token: `${HEADER}.eyJleHAiOjEwfR.x`,
      message: "the token's payload is not canonical base64url",
    },
    {
      why: 'a payload that is not UTF-8',
      token: `${HEADER}.${Buffer.from([0xff, 0xfe]).toString('base64url')}.x`,
      message: "the token's payload is not UTF-8",
    },
    { why: 'a payload that is not JSON', token: jwt('exp=1'), message: "the token's payload is not JSON" },
    { why: 'a payload that is an array', token: jwt('[1]'), message: "the token's payload is not a JSON object" },
    {
      why: 'a header that is null',
      token: jwt('{"exp":1}', b64('null')),
      message: "the token's header is not a JSON object",
    },
    {
      why: 'a signature with a space',
      token: jwt('{"exp":1}', HEADER, 'a b'),
      message: "the token's signature is not base64url",
    },
    { why: 'no exp', token: jwt('{"iat":1}'), message: 'the token has no exp claim, so when it expires is unknown' },
    {
      why: 'exp as a string',
      token: jwt('{"exp":"1"}'),
      message: "the token's exp claim is not a NumericDate (a non-negative number of seconds)",
    },
    {
      why: 'a negative iat',
      token: jwt('{"exp":1,"iat":-1}'),
      message: "the token's iat claim is not a NumericDate (a non-negative number of seconds)",
    },
    {
      why: 'a null nbf',
      token: jwt('{"exp":1,"nbf":null}'),
      message: "the token's nbf claim is not a NumericDate (a non-negative number of seconds)",
    },
  ])('$why: $message', ({ token, message }) => {
    expect(() => readJwtTimes(token)).toThrow(new JwtError(message));
  });
});

describe('properties', () => {
  test('on any string it returns times or throws a JwtError, never another error', () => {
    const segment = fc.string({ unit: fc.constantFrom(...'AZaz09-_+/=.é'.split('')) });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.tuple(segment, segment, segment).map((parts) => parts.join('.')),
        ),
        (token) => {
          try {
            const times = readJwtTimes(token);
            expect(Number.isFinite(times.exp)).toBe(true);
          } catch (error) {
            expect(error).toBeInstanceOf(JwtError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('a JwtError never quotes the token, whatever the token holds', () => {
    const secret = fc.string({
      unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'.split('')),
      minLength: 12,
    });
    const claims = fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 });
    fc.assert(
      fc.property(secret, claims, fc.boolean(), (secretText, extra, canonical) => {
        const payload = JSON.stringify({ ...extra, exp: secretText, sub: secretText });
        const token = canonical ? jwt(payload) : `${secretText}.${b64(payload)}.${secretText}==`;
        expect(() => readJwtTimes(token)).toThrow(JwtError);
        try {
          readJwtTimes(token);
        } catch (error) {
          expect((error as Error).message).not.toContain(secretText);
          expect((error as Error).message).not.toContain(b64(payload).slice(0, 12));
        }
      }),
    );
  });

  test('generated time claims come back as they were written', () => {
    const date = fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.double({ min: 0, max: 2 ** 40, noNaN: true }));
    fc.assert(
      fc.property(
        fc.record({ exp: date, iat: date, nbf: date }, { requiredKeys: ['exp'] }),
        fc.dictionary(
          fc.string().filter((key) => !['exp', 'iat', 'nbf', '__proto__'].includes(key)),
          fc.jsonValue(),
        ),
        (times, other) => {
          expect(readJwtTimes(jwt(JSON.stringify({ ...other, ...times })))).toEqual(times);
        },
      ),
    );
  });
});
