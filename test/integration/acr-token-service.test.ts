// The local Entra + ACR token service in front of the real `distribution` registry in token mode: a
// ServiceAccount-style assertion or a client secret buys an Entra token, the exchange an ACR refresh token,
// and crane logged in as the null-GUID user pushes and pulls with it. Refusals carry Entra's codes.
import { type ChildProcess, execFile } from 'node:child_process';
import { createSign, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ACR_NULL_USER,
  ACR_SCOPE,
  type AcrTokenService,
  CLIENT_ASSERTION_TYPE,
  startAcrTokenService,
  WORKLOAD_IDENTITY_AUDIENCE,
} from '../support/acr-token-service.ts';
import { testPki } from '../support/certificates.ts';
import { startTokenModeRegistry } from '../support/token-mode-registry.ts';

const binDir = resolve(import.meta.dirname, '..', '..', '.tools', 'bin');
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '6731de76-14a6-49ae-97bc-6eba6914391e';
const ISSUER = 'https://oidc.test.invalid/cluster';
const SUBJECT = 'system:serviceaccount:acr-pull-webhook:acr-pull-webhook-sync';
const SECRET = 'the-service-principal-secret';

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), 'acr-token-service-'));
const caPath = join(dir, 'ca.crt');
const issuerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const strangerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
let service: AcrTokenService;
let registry: ChildProcess;
let host: string;

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly json: Record<string, unknown>;
}

function call(url: string, init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> }) {
  const body = init.form ? new URLSearchParams(init.form).toString() : undefined;
  return new Promise<Reply>((ok, fail) => {
    const req = request(
      url,
      {
        method: init.method ?? (body ? 'POST' : 'GET'),
        ca: pki.ca.certPem,
        // A fresh connection each time, so a stopped service is seen as refusing, not as a dead pooled socket.
        agent: false,
        headers: { ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}), ...init.headers },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(text);
          } catch {}
          ok({ status: res.statusCode ?? 0, headers: res.headers, json });
        });
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

/** A ServiceAccount-token-shaped JWT (RS256, `kid`), as the apiserver would project it. */
function assertion(claims: Record<string, unknown> = {}, key: KeyObject = issuerKeys.privateKey): string {
  const now = Math.floor(Date.now() / 1000);
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'issuer-key-1' })).toString('base64url');
  const payload = Buffer.from(
    JSON.stringify({
      iss: ISSUER,
      sub: SUBJECT,
      aud: [WORKLOAD_IDENTITY_AUDIENCE],
      iat: now,
      exp: now + 600,
      ...claims,
    }),
  ).toString('base64url');
  const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(key);
  return `${header}.${payload}.${signature.toString('base64url')}`;
}

const entra = (form: Record<string, string>): Promise<Reply> =>
  call(`${service.url}/${TENANT}/oauth2/v2.0/token`, {
    form: { grant_type: 'client_credentials', client_id: CLIENT, scope: ACR_SCOPE, ...form },
  });
const withAssertion = (jwt: string) => ({ client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: jwt });

/** The passwordless leg: an assertion (a client secret for another service) → Entra → ACR refresh token. */
async function refreshToken(from: AcrTokenService = service): Promise<string> {
  const token =
    from === service
      ? await entra(withAssertion(assertion()))
      : await call(`${from.url}/${TENANT}/oauth2/v2.0/token`, {
          form: { grant_type: 'client_credentials', client_id: CLIENT, scope: ACR_SCOPE, client_secret: SECRET },
        });
  expect(token.status).toBe(200);
  const exchange = await call(`${from.url}/oauth2/exchange`, {
    form: { grant_type: 'access_token', service: host, tenant: TENANT, access_token: String(token.json.access_token) },
  });
  expect(exchange.status).toBe(200);
  return String(exchange.json.refresh_token);
}

const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString());

const run = promisify(execFile);
let configs = 0;
/** crane with its own docker config (written by the caller or by `crane auth login`) trusting the test CA. */
function crane(dockerConfig: string) {
  return (...args: string[]) =>
    run(join(binDir, 'crane'), args, { env: { ...process.env, SSL_CERT_FILE: caPath, DOCKER_CONFIG: dockerConfig } });
}
function dockerConfigDir(config?: unknown): string {
  const path = join(dir, `docker-config-${++configs}`);
  mkdirSync(path);
  if (config) writeFileSync(join(path, 'config.json'), JSON.stringify(config));
  return path;
}

beforeAll(async () => {
  writeFileSync(caPath, pki.ca.certPem);
  // The registry listens on a port of its own; the token service is the one origin clients see (as on
  // ACR, where /v2/ and /oauth2/ share the registry's host) and passes /v2/ requests through to it.
  const registryAddress = `127.0.0.1:${await freePort()}`;
  service = await startAcrTokenService({
    tenantId: TENANT,
    clientId: CLIENT,
    tls: pki.serving,
    upstream: { url: `https://${registryAddress}`, ca: pki.ca.certPem },
    clientSecret: SECRET,
    federated: {
      issuer: ISSUER,
      subject: SUBJECT,
      jwks: { keys: [{ ...issuerKeys.publicKey.export({ format: 'jwk' }), kid: 'issuer-key-1', alg: 'RS256' }] },
    },
  });
  host = service.host;
  registry = await startTokenModeRegistry({
    binary: join(binDir, 'registry'),
    dir,
    address: registryAddress,
    service,
    serving: pki.serving,
    caPem: pki.ca.certPem,
  });
}, 30_000);

afterAll(async () => {
  registry?.kill();
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the registry trusts only the token service', () => {
  test('without a token it challenges with the token service as realm and the registry as service', async () => {
    const reply = await call(`https://${host}/v2/`, {});
    expect(reply.status).toBe(401);
    expect(reply.headers['www-authenticate']).toBe(`Bearer realm="${service.realm}",service="${host}"`);
  });

  test('its token opens the catalog; one signed by another token service with the same claims does not', async () => {
    const impostor = await startAcrTokenService({
      tenantId: TENANT,
      clientId: CLIENT,
      service: host,
      tls: pki.serving,
      clientSecret: SECRET,
    });
    try {
      const catalog = async (from: AcrTokenService, refresh: string): Promise<number> => {
        const access = await call(from.realm, {
          form: { grant_type: 'refresh_token', service: host, scope: 'registry:catalog:*', refresh_token: refresh },
        });
        expect(access.status).toBe(200);
        const auth = { authorization: `Bearer ${access.json.access_token}` };
        return (await call(`https://${host}/v2/_catalog`, { headers: auth })).status;
      };
      expect(await catalog(service, await refreshToken(service))).toBe(200);
      expect(await catalog(impostor, await refreshToken(impostor))).toBe(401);
      // Each service also refuses the other's refresh token: it checks its own signature.
      const crossed = await call(impostor.realm, {
        form: {
          grant_type: 'refresh_token',
          service: host,
          scope: 'registry:catalog:*',
          refresh_token: await refreshToken(),
        },
      });
      expect(crossed.status).toBe(401);
    } finally {
      await impostor.stop();
    }
  });
});

describe('a workload identity assertion reaches the registry', () => {
  test('the refresh token carries ACR claims and the configured lifetime in its exp', async () => {
    const claims = claimsOf(await refreshToken());
    expect(claims).toMatchObject({
      iss: 'Azure Container Registry',
      aud: host,
      tenant: TENANT,
      grant_type: 'refresh_token',
    });
    expect(Number(claims.exp) - Number(claims.iat)).toBe(3 * 3600);
  });

  test('crane logged in as the null-GUID user pushes and pulls, asking with GET and basic auth', async () => {
    const before = service.requests.length;
    const cli = crane(dockerConfigDir());
    await cli('auth', 'login', host, '-u', ACR_NULL_USER, '-p', await refreshToken());
    const layerDir = join(dir, 'layer');
    mkdirSync(join(layerDir, 'etc'), { recursive: true });
    writeFileSync(join(layerDir, 'etc', 'hello'), 'hello\n');
    await run('tar', ['-C', layerDir, '-cf', join(dir, 'layer.tar'), 'etc']);
    await cli('append', '--new_layer', join(dir, 'layer.tar'), '--new_tag', `${host}/team/hello:1`);
    const pushed = (await cli('digest', `${host}/team/hello:1`)).stdout.trim();
    await cli('pull', `${host}/team/hello:1`, join(dir, 'pulled.tar'));
    expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);
    const asked = service.requests.slice(before).filter((r) => r.path === '/oauth2/token');
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every((r) => r.method === 'GET' && r.basicAuthUser === ACR_NULL_USER && r.status === 200)).toBe(true);
  });

  test('crane holding the refresh token as an identity token uses the POST refresh_token grant', async () => {
    const before = service.requests.length;
    const auth = Buffer.from(`${ACR_NULL_USER}:`).toString('base64');
    const cli = crane(dockerConfigDir({ auths: { [host]: { auth, identitytoken: await refreshToken() } } }));
    expect((await cli('digest', `${host}/team/hello:1`)).stdout).toMatch(/^sha256:/);
    const asked = service.requests.slice(before).filter((r) => r.path === '/oauth2/token');
    expect(asked.map((r) => `${r.method} ${r.grantType} ${r.status}`)).toContain('POST refresh_token 200');
    expect(asked.some((r) => r.method === 'GET')).toBe(false);
  });

  test("containerd's first try, a password grant as the null GUID, gets a token the registry accepts", async () => {
    const access = await call(service.realm, {
      form: {
        scope: 'repository:team/hello:pull',
        service: host,
        client_id: 'containerd-client',
        grant_type: 'password',
        username: ACR_NULL_USER,
        password: await refreshToken(),
      },
    });
    expect(access.status).toBe(200);
    const manifest = await call(`https://${host}/v2/team/hello/manifests/1`, {
      headers: {
        authorization: `Bearer ${access.json.access_token}`,
        accept: 'application/vnd.oci.image.manifest.v1+json',
      },
    });
    expect(manifest.status).toBe(200);
  });

  test('with the password grant refused as ACR did (400), the GET with basic auth still answers', async () => {
    const refresh = await refreshToken();
    const form = { scope: 'repository:team/hello:pull', service: host, client_id: 'containerd-client' };
    service.passwordGrant = false;
    try {
      const post = await call(service.realm, {
        form: { ...form, grant_type: 'password', username: ACR_NULL_USER, password: refresh },
      });
      expect(post.status).toBe(400);
    } finally {
      service.passwordGrant = true;
    }
    const basic = Buffer.from(`${ACR_NULL_USER}:${refresh}`).toString('base64');
    const query = new URLSearchParams({ service: host, scope: form.scope });
    const get = await call(`${service.realm}?${query}`, { headers: { authorization: `Basic ${basic}` } });
    expect(get.status).toBe(200);
    expect(get.json.access_token).toMatch(/^eyJ/);
  });

  test('an expired refresh token is refused by the token service, so crane cannot pull', async () => {
    service.refreshTokenLifetimeSeconds = 1;
    let expired: string;
    try {
      expired = await refreshToken();
    } finally {
      service.refreshTokenLifetimeSeconds = 3 * 3600;
    }
    await new Promise((r) => setTimeout(r, 2100));
    const before = service.requests.length;
    const cli = crane(dockerConfigDir());
    await cli('auth', 'login', host, '-u', ACR_NULL_USER, '-p', expired);
    await expect(cli('digest', `${host}/team/hello:1`)).rejects.toThrow(/401|UNAUTHORIZED/);
    const asked = service.requests.slice(before).filter((r) => r.path === '/oauth2/token');
    expect(asked.map((r) => `${r.method} ${r.status} ${r.error}`)).toContain('GET 401 UNAUTHORIZED');
  });

  test('an Entra outage answers 503 and issues nothing; the registry on the same origin still answers', async () => {
    const issued = service.issued.entra;
    service.unavailable.add('entra');
    try {
      expect((await entra(withAssertion(assertion()))).status).toBe(503);
      expect((await call(`https://${host}/v2/`, {})).status).toBe(401);
    } finally {
      service.unavailable.delete('entra');
    }
    expect(service.issued.entra).toBe(issued);
    expect((await entra(withAssertion(assertion()))).status).toBe(200);
  });

  test('a stopped service refuses connections and answers again at the same address once started', async () => {
    await service.stop();
    try {
      await expect(entra(withAssertion(assertion()))).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await service.start();
    }
    expect((await entra(withAssertion(assertion()))).status).toBe(200);
  });
});

describe('Entra refuses what the federated credential does not match, with its codes', () => {
  test.each([
    { what: 'a wrong audience', jwt: () => assertion({ aud: ['api://SomethingElse'] }), code: 700212 },
    { what: 'a wrong subject', jwt: () => assertion({ sub: 'system:serviceaccount:default:default' }), code: 700213 },
    { what: 'a wrong issuer', jwt: () => assertion({ iss: 'https://kubernetes.default.svc' }), code: 700211 },
    { what: 'a signature by another key', jwt: () => assertion({}, strangerKeys.privateKey), code: 700027 },
    { what: 'an expired assertion', jwt: () => assertion({ exp: Math.floor(Date.now() / 1000) - 5 }), code: 700024 },
  ])('an assertion with $what is refused with AADSTS$code and no token', async ({ jwt, code }) => {
    const issued = service.issued.entra;
    const reply = await entra(withAssertion(jwt()));
    expect(reply.status).toBe(401);
    expect(reply.json).toMatchObject({ error: 'invalid_client', error_codes: [code] });
    expect(String(reply.json.error_description)).toMatch(new RegExp(`^AADSTS${code}: `));
    expect(reply.json.access_token).toBeUndefined();
    expect(service.issued.entra).toBe(issued);
  });

  test('the right client secret buys a Bearer token for the ACR audience, with its lifetime', async () => {
    const reply = await entra({ client_secret: SECRET });
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ token_type: 'Bearer', expires_in: 3600 });
    expect(claimsOf(String(reply.json.access_token))).toMatchObject({
      aud: 'https://containerregistry.azure.net',
      tid: TENANT,
    });
  });

  test('a wrong client secret is refused with AADSTS7000215', async () => {
    const reply = await entra({ client_secret: 'not-the-secret' });
    expect(reply.status).toBe(401);
    expect(reply.json).toMatchObject({ error: 'invalid_client', error_codes: [7000215] });
  });

  test('an ARM-audience scope is refused with AADSTS70011', async () => {
    const reply = await entra({ client_secret: SECRET, scope: 'https://management.azure.com/.default' });
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({ error: 'invalid_scope', error_codes: [70011] });
  });

  test('no request body ever reaches the record: only method, path, grant type, user and outcome', () => {
    const recorded = JSON.stringify(service.requests);
    expect(recorded).not.toContain(SECRET);
    expect(recorded).not.toContain('eyJ');
    expect(service.requests.some((r) => r.error === 'AADSTS700212')).toBe(true);
  });
});
