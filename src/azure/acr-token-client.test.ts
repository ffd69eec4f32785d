// The token client against a fake fetch, for what a real server cannot be made to do on cue: hang past the timeout,
// redirect, answer 200 without a refresh token or with one that is not a JWT, fail with a chosen network code.
// The real HTTPS road, with the token service and the registry, is test/integration/acr-token-client.test.ts.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { AcrTokenError, MAX_TOKEN_ANSWER_BYTES, requestAcrRefreshToken } from './acr-token-client.ts';
import type { AzureCredentials } from './azure-credentials.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '6731de76-14a6-49ae-97bc-6eba6914391e';
const SECRET = 'unit-test-client-secret';
const SERVER = 'myregistry.azurecr.io';
const ENTRA_TOKEN = 'eyJ0eXAiOiJKV1QifQ.eyJlbnRyYSI6dHJ1ZX0.c2ln';
const b64 = (value: string): string => Buffer.from(value).toString('base64url');
const REFRESH_TOKEN = `${b64('{"alg":"RS256"}')}.${b64('{"iat":1764536400,"exp":1764547200}')}.${b64('sig')}`;

const dir = mkdtempSync(join(tmpdir(), 'acr-token-client-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const secretFile = join(dir, 'client-secret');
writeFileSync(secretFile, `${SECRET}\n`);

const credentials: AzureCredentials = {
  tenantId: TENANT,
  clientId: CLIENT,
  secretSource: { kind: 'client-secret', file: secretFile },
  cloud: 'AzurePublicCloud',
  authorityHost: 'https://login.microsoftonline.com/',
  scope: 'https://containerregistry.azure.net/.default',
};

interface Call {
  readonly url: string;
  readonly init: RequestInit;
}
type Answer = (call: Call) => Response | Promise<Response>;
const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const entraOk: Answer = () => json(200, { token_type: 'Bearer', expires_in: 3600, access_token: ENTRA_TOKEN });
const exchangeOk: Answer = () => json(200, { refresh_token: REFRESH_TOKEN });

/** A fetch answering the Entra ID request with the first answer and the exchange with the second. */
function fakeFetch(entra: Answer, exchange: Answer = exchangeOk): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const fake = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const call = { url: String(input), init };
    calls.push(call);
    return (call.url.endsWith('/oauth2/exchange') ? exchange : entra)(call);
  };
  return { fetch: fake as typeof fetch, calls };
}

async function failure(promise: Promise<unknown>): Promise<AcrTokenError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AcrTokenError);
  const tokenError = error as AcrTokenError;
  for (const text of [tokenError.message, String(tokenError.stack)]) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('eyJ');
  }
  expect(tokenError.message).not.toContain('\n');
  return tokenError;
}

describe('a refresh token is requested with two form posts, following no redirect', () => {
  test('Entra ID gets the client secret without its newline, then the registry the access token', async () => {
    const { fetch, calls } = fakeFetch(entraOk);
    const token = await requestAcrRefreshToken(SERVER, credentials, { fetch, now: () => 1764536401234 });
    expect(token).toEqual({
      refreshToken: REFRESH_TOKEN,
      times: { iat: 1764536400, exp: 1764547200 },
      receivedAt: 1764536401234,
    });
    expect(calls.map((c) => c.url)).toEqual([
      `https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`,
      'https://myregistry.azurecr.io/oauth2/exchange',
    ]);
    expect(new URLSearchParams(String(calls[0]?.init.body)).get('client_secret')).toBe(SECRET);
    expect(Object.fromEntries(new URLSearchParams(String(calls[1]?.init.body)))).toEqual({
      grant_type: 'access_token',
      service: 'myregistry.azurecr.io',
      tenant: TENANT,
      access_token: ENTRA_TOKEN,
    });
    for (const { init } of calls) {
      expect(init).toMatchObject({
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      });
      expect(init.signal).toBeInstanceOf(AbortSignal);
    }
  });

  test.each([
    { step: 'Entra ID', stage: 'entra', status: 302, entra: () => new Response(null, { status: 302 }), calls: 1 },
    {
      step: 'the exchange',
      stage: 'exchange',
      status: 307,
      entra: entraOk,
      exchange: () => new Response(null, { status: 307, headers: { location: 'https://elsewhere.example/' } }),
      calls: 2,
    },
  ])('a redirect from $step (HTTP $status) is refused, not followed', async (row) => {
    const { fetch, calls } = fakeFetch(row.entra, row.exchange);
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(error).toMatchObject({ stage: row.stage, retriable: false });
    expect(error.message).toContain(`a redirect (HTTP ${row.status}), which is not followed`);
    expect(calls).toHaveLength(row.calls);
  });
});

describe('an answer is read up to 256 KiB and no further', () => {
  /** A body that never ends, counting what was pulled from it. */
  function endless(): { body: ReadableStream<Uint8Array>; pulled: () => number } {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 64 * 1024;
        controller.enqueue(new Uint8Array(64 * 1024).fill(0x20));
      },
    });
    return { body, pulled: () => pulled };
  }

  test.each([
    { step: 'Entra ID', stage: 'entra', endlessEntra: true },
    { step: 'the exchange', stage: 'exchange', endlessEntra: false },
  ])('an endless answer from $step stops the request after the bound', async (row) => {
    const stream = endless();
    const streamed: Answer = () => new Response(stream.body, { status: 200 });
    const { fetch } = row.endlessEntra ? fakeFetch(streamed) : fakeFetch(entraOk, streamed);
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(MAX_TOKEN_ANSWER_BYTES).toBe(262144);
    expect(error).toMatchObject({ stage: row.stage, retriable: false });
    expect(error.message).toContain('was answered with more than 262144 bytes, which no token answer needs');
    expect(stream.pulled()).toBeLessThanOrEqual(MAX_TOKEN_ANSWER_BYTES + 2 * 64 * 1024);
  });

  test('a declared Content-Length over the bound is refused before the body is read', async () => {
    const stream = endless();
    const big: Answer = () => new Response(stream.body, { status: 200, headers: { 'content-length': '262145' } });
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch: fakeFetch(big).fetch }));
    expect(error.message).toContain('Entra ID token request to login.microsoftonline.com was answered with more');
    expect(stream.pulled()).toBeLessThanOrEqual(64 * 1024);
  });

  test('an answer just under the bound is read whole', async () => {
    const padded: Answer = () =>
      json(200, { token_type: 'Bearer', expires_in: 3600, access_token: ENTRA_TOKEN, pad: ' '.repeat(200_000) });
    const token = await requestAcrRefreshToken(SERVER, credentials, { fetch: fakeFetch(padded).fetch });
    expect(token.refreshToken).toBe(REFRESH_TOKEN);
  });
});

describe('a failed step is one line saying whether retrying may help', () => {
  test('a request still unanswered after the timeout is retriable and names the host', async () => {
    const hang: Answer = ({ init }) =>
      new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(init.signal?.reason)));
    const { fetch } = fakeFetch(hang);
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch, timeoutMs: 20 }));
    expect(error).toMatchObject({ stage: 'entra', retriable: true });
    expect(error.message).toBe('the Entra ID token request to login.microsoftonline.com timed out after 20 ms');
  });

  test.each([
    { status: 429, retriable: true },
    { status: 503, retriable: true },
    { status: 400, retriable: false },
    { status: 401, retriable: false },
  ])('an exchange answered with HTTP $status is retriable: $retriable', async ({ status, retriable }) => {
    const { fetch } = fakeFetch(entraOk, () => json(status, { errors: [{ code: 'UNAUTHORIZED' }] }));
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(error).toMatchObject({ stage: 'exchange', retriable });
    expect(error.message).toContain(`HTTP ${status}`);
  });

  test('an exchange answered 200 without a refresh_token is not retriable', async () => {
    const { fetch } = fakeFetch(entraOk, () => json(200, { access_token: ENTRA_TOKEN }));
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(error).toMatchObject({ stage: 'exchange', retriable: false });
    expect(error.message).toBe('the registry answered the token exchange with HTTP 200 but no refresh_token');
  });

  test('a refresh token that is not a JWT is not retriable and is not quoted', async () => {
    const { fetch } = fakeFetch(entraOk, () => json(200, { refresh_token: 'opaque-refresh-token' }));
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(error).toMatchObject({ stage: 'exchange', retriable: false });
    expect(error.message).toBe(
      "the registry's refresh token cannot be used: the token is not a JWT: 1 dot-separated segments instead of 3",
    );
  });

  test.each([
    { code: 'ECONNREFUSED', retriable: true },
    { code: 'ENOTFOUND', retriable: true },
    { code: 'UND_ERR_CONNECT_TIMEOUT', retriable: true },
    { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', retriable: false },
    { code: 'DEPTH_ZERO_SELF_SIGNED_CERT', retriable: false },
    { code: 'CERT_HAS_EXPIRED', retriable: false },
    { code: 'ERR_TLS_CERT_ALTNAME_INVALID', retriable: false },
  ])('a fetch failing with cause $code is retriable: $retriable, and the code is named', async (row) => {
    const cause = Object.assign(new Error(`connect ${row.code} ${SECRET}`), { code: row.code });
    const { fetch } = fakeFetch(() => Promise.reject(new TypeError('fetch failed', { cause })));
    const error = await failure(requestAcrRefreshToken(SERVER, credentials, { fetch }));
    expect(error).toMatchObject({ stage: 'entra', retriable: row.retriable });
    expect(error.message).toMatch(
      new RegExp(`^the Entra ID token request to login\\.microsoftonline\\.com .*\\(${row.code}\\)`),
    );
  });
});
