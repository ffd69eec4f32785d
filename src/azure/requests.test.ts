import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  acrExchangeRequest,
  entraTokenRequest,
  parseAcrExchangeResponse,
  parseEntraTokenResponse,
} from './requests.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '11111111-2222-3333-4444-555555555555';
const TRACE = 'b0f62116-10b6-4a73-bdb2-281524404e00';
const SCOPE = 'https://containerregistry.azure.net/.default';

describe('the Entra ID token request is the client credentials grant at /{tenant}/oauth2/v2.0/token', () => {
  test('with a federated ServiceAccount token, it sends the jwt-bearer client assertion', () => {
    const request = entraTokenRequest({
      authorityHost: 'https://login.microsoftonline.com/',
      tenantId: TENANT,
      clientId: CLIENT,
      scope: SCOPE,
      credential: { kind: 'assertion', assertion: 'eyJ.sa-token.sig' },
    });
    expect(request.url).toBe(`https://login.microsoftonline.com/${TENANT}/oauth2/v2.0/token`);
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({
      grant_type: 'client_credentials',
      client_id: CLIENT,
      scope: 'https://containerregistry.azure.net/.default',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: 'eyJ.sa-token.sig',
    });
  });

  test('with a client secret, it sends client_secret, form-encoded', () => {
    const request = entraTokenRequest({
      authorityHost: 'https://127.0.0.1:9443/entra/',
      tenantId: TENANT,
      clientId: CLIENT,
      scope: SCOPE,
      credential: { kind: 'secret', secret: 'a+b/c=d&e' },
    });
    expect(request.url).toBe(`https://127.0.0.1:9443/entra/${TENANT}/oauth2/v2.0/token`);
    expect(request.body).toBe(
      `grant_type=client_credentials&client_id=${CLIENT}` +
        '&scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default&client_secret=a%2Bb%2Fc%3Dd%26e',
    );
  });
});

describe("the ACR exchange is POST /oauth2/exchange on the registry's host", () => {
  test.each([
    {
      server: 'myregistry.azurecr.io',
      url: 'https://myregistry.azurecr.io/oauth2/exchange',
      service: 'myregistry.azurecr.io',
    },
    {
      server: 'myregistry.azurecr.io/team',
      url: 'https://myregistry.azurecr.io/oauth2/exchange',
      service: 'myregistry.azurecr.io',
    },
    { server: '127.0.0.1:5443', url: 'https://127.0.0.1:5443/oauth2/exchange', service: '127.0.0.1:5443' },
  ])('for $server it posts to $url with service $service', ({ server, url, service }) => {
    const request = acrExchangeRequest({ server, tenantId: TENANT, accessToken: 'entra-access-token' });
    expect(request.url).toBe(url);
    expect(Object.fromEntries(new URLSearchParams(request.body))).toEqual({
      grant_type: 'access_token',
      service,
      tenant: TENANT,
      access_token: 'entra-access-token',
    });
  });
});

describe("Entra ID's answer is its access token, or one line with the code and the field to check", () => {
  test('a 200 with an access_token gives the token', () => {
    const body = JSON.stringify({ token_type: 'Bearer', expires_in: 3599, access_token: 'eyJ.at.sig' });
    expect(parseEntraTokenResponse(200, body)).toEqual({ ok: true, value: { accessToken: 'eyJ.at.sig' } });
  });

  const refusal = (code: number, error = 'invalid_request'): string =>
    JSON.stringify({
      error,
      error_description: `AADSTS${code}: No match. Assertion Subject: 'system:serviceaccount:x'.\r\nTrace ID: ${TRACE}`,
      error_codes: [code],
      trace_id: TRACE,
    });

  test.each([
    {
      why: 'a subject that matches no federated credential names the subject',
      status: 400,
      body: refusal(700213),
      problem:
        'Entra ID refused the token request (HTTP 400, invalid_request, AADSTS700213): ' +
        "no federated credential has the token's subject: " +
        `check the subject (system:serviceaccount:<ns>:<name>) (trace ID ${TRACE})`,
    },
    {
      why: 'an issuer that matches none names the issuer',
      status: 400,
      body: refusal(700211),
      problem:
        'Entra ID refused the token request (HTTP 400, invalid_request, AADSTS700211): ' +
        "no federated credential has the token's issuer: " +
        `check the issuer (the cluster's OIDC issuer URL) (trace ID ${TRACE})`,
    },
    {
      why: 'an audience that matches none names the audience',
      status: 400,
      body: refusal(700212),
      problem:
        'Entra ID refused the token request (HTTP 400, invalid_request, AADSTS700212): ' +
        "no federated credential has the token's audience: " +
        `check the audience (api://AzureADTokenExchange) (trace ID ${TRACE})`,
    },
    {
      why: 'a wrong client secret names clientSecretFile',
      status: 401,
      body: refusal(7000215, 'invalid_client'),
      problem:
        'Entra ID refused the token request (HTTP 401, invalid_client, AADSTS7000215): the client secret is wrong: ' +
        `check clientSecretFile holds the secret value (not its ID) (trace ID ${TRACE})`,
    },
    {
      why: 'an unknown tenant names tenantId',
      status: 400,
      body: JSON.stringify({ error: 'invalid_request', error_description: 'AADSTS90002: Tenant not found.' }),
      problem:
        'Entra ID refused the token request (HTTP 400, invalid_request, AADSTS90002): ' +
        'the tenant was not found: check tenantId (and cloud)',
    },
    {
      why: 'an unknown code with invalid_client names the client and its credential',
      status: 401,
      body: JSON.stringify({ error: 'invalid_client', error_codes: [1234567] }),
      problem:
        'Entra ID refused the token request (HTTP 401, invalid_client, AADSTS1234567): ' +
        'check clientId and the credential (the client secret or the federated credential)',
    },
    {
      why: 'an error value that is not an OAuth error code is left out',
      status: 400,
      body: JSON.stringify({ error: 'something else entirely' }),
      problem: 'Entra ID refused the token request (HTTP 400): see the Entra ID sign-in logs for the application',
    },
    {
      why: 'a trace ID that is not a GUID is left out',
      status: 400,
      body: JSON.stringify({ error: 'invalid_grant', error_codes: [50027], trace_id: 'not a guid' }),
      problem:
        'Entra ID refused the token request (HTTP 400, invalid_grant, AADSTS50027): ' +
        'the ServiceAccount token is not a valid JWT: check federatedTokenFile',
    },
    {
      why: 'an HTML error page is not quoted',
      status: 403,
      body: '<html>Forbidden</html>',
      problem: 'Entra ID refused the token request (HTTP 403) with an answer that is not JSON',
    },
    {
      why: 'throttling is retried',
      status: 429,
      body: '{}',
      problem: 'Entra ID is unavailable (HTTP 429): retrying with backoff',
    },
    {
      why: 'an outage is retried',
      status: 503,
      body: '',
      problem: 'Entra ID is unavailable (HTTP 503): retrying with backoff',
    },
    {
      why: 'a 200 without a token is a problem',
      status: 200,
      body: '{"token_type":"Bearer","access_token":""}',
      problem: 'Entra ID answered HTTP 200 without an access_token',
    },
  ])('$why', ({ status, body, problem }) => {
    expect(parseEntraTokenResponse(status, body)).toEqual({ ok: false, problem });
  });
});

describe("the registry's exchange answer is its refresh token, or one line with the field to check", () => {
  test('a 200 with a refresh_token gives the token', () => {
    expect(parseAcrExchangeResponse(200, '{"refresh_token":"eyJ.rt.sig"}')).toEqual({
      ok: true,
      value: { refreshToken: 'eyJ.rt.sig' },
    });
  });

  test.each([
    {
      status: 401,
      body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
      problem:
        'the registry refused the token exchange (HTTP 401, UNAUTHORIZED): the registry refused the Entra token: ' +
        "check tenantId is the registry's tenant and cloud matches the registry",
    },
    {
      status: 403,
      body: '{"errors":[{"code":"DENIED","message":"client IP not allowed"}]}',
      problem:
        'the registry refused the token exchange (HTTP 403, DENIED): ' +
        "check the registry's network rules and that it allows Entra ID authentication",
    },
    {
      status: 404,
      body: '404 page not found',
      problem:
        'the registry refused the token exchange (HTTP 404): ' +
        'no token exchange at this host: check server names an Azure container registry',
    },
    {
      status: 400,
      body: '{"errors":[{"code":"SOME secret text","message":"x"}]}',
      problem: 'the registry refused the token exchange (HTTP 400): check tenantId and that server names the registry',
    },
    {
      status: 502,
      body: '',
      problem: "the registry's token exchange is unavailable (HTTP 502): retrying with backoff",
    },
    {
      status: 200,
      body: '{"access_token":"x"}',
      problem: 'the registry answered the token exchange with HTTP 200 but no refresh_token',
    },
  ])('HTTP $status $body: $problem', ({ status, body, problem }) => {
    expect(parseAcrExchangeResponse(status, body)).toEqual({ ok: false, problem });
  });
});

describe('properties: no secret sent or received ever appears in a problem line', () => {
  // Secrets as real ones look: long runs of base64url characters (JWTs, client secrets).
  const secret = fc.string({
    unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~'.split('')),
    minLength: 16,
    maxLength: 64,
  });
  const status = fc.oneof(fc.constantFrom(200, 400, 401, 403, 404, 429, 500), fc.integer({ min: 100, max: 599 }));
  /** Answers that carry the secret in every field a parser reads, and some it does not. */
  const answer = (text: string): fc.Arbitrary<string> =>
    fc.oneof(
      fc.constant(text),
      fc.constant(JSON.stringify({ error: text, error_description: `AADSTS700213: ${text}`, trace_id: text })),
      fc.constant(
        JSON.stringify({ error: 'invalid_client', error_description: text, error_codes: [text], correlation_id: text }),
      ),
      fc.constant(JSON.stringify({ errors: [{ code: text, message: text, detail: text }] })),
      fc.constant(JSON.stringify({ access_token: '', refresh_token: 0, note: text })),
      fc.jsonValue().map((value) => JSON.stringify({ value, text })),
    );

  test('an Entra ID problem never contains the assertion, client secret or any text of the answer', () => {
    fc.assert(
      fc.property(
        status,
        secret.chain((text) => answer(text).map((body) => [text, body] as const)),
        (code, [text, body]) => {
          const result = parseEntraTokenResponse(code, body);
          if (!result.ok) {
            expect(result.problem).not.toContain(text);
            expect(result.problem).toMatch(/^Entra ID /);
            expect(result.problem).not.toMatch(/[\r\n]/);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a registry problem never contains the Entra token or any text of the answer', () => {
    fc.assert(
      fc.property(
        status,
        secret.chain((text) => answer(text).map((body) => [text, body] as const)),
        (code, [text, body]) => {
          const result = parseAcrExchangeResponse(code, body);
          if (!result.ok) {
            expect(result.problem).not.toContain(text);
            expect(result.problem).toMatch(/^the registry/);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test('a request URL never carries the credential, only the body does', () => {
    fc.assert(
      fc.property(secret, fc.boolean(), (sent, federated) => {
        const entra = entraTokenRequest({
          authorityHost: 'https://login.microsoftonline.com/',
          tenantId: TENANT,
          clientId: CLIENT,
          scope: SCOPE,
          credential: federated ? { kind: 'assertion', assertion: sent } : { kind: 'secret', secret: sent },
        });
        const acr = acrExchangeRequest({ server: 'myregistry.azurecr.io', tenantId: TENANT, accessToken: sent });
        expect(entra.url).not.toContain(sent);
        expect(acr.url).not.toContain(sent);
        expect(new URLSearchParams(entra.body).get(federated ? 'client_assertion' : 'client_secret')).toBe(sent);
        expect(new URLSearchParams(acr.body).get('access_token')).toBe(sent);
      }),
    );
  });
});
