// The token client over real HTTPS: the local Entra + ACR token service (test/support/acr-token-service.ts) in front
// of the real `distribution` registry in token mode. Each request runs in a child Node started as the product is,
// trusting the test CA only through NODE_EXTRA_CA_CERTS, so these tests also show that the global fetch honours it.
import { type ChildProcess, execFile } from 'node:child_process';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AcrRefreshToken } from '../../src/azure/acr-token-client.ts';
import type { AzureCredentials } from '../../src/azure/azure-credentials.ts';
import {
  ACR_NULL_USER,
  type AcrTokenService,
  startAcrTokenService,
  WORKLOAD_IDENTITY_AUDIENCE,
} from '../support/acr-token-service.ts';
import { testPki } from '../support/certificates.ts';
import { startTokenModeRegistry } from '../support/token-mode-registry.ts';

const root = resolve(import.meta.dirname, '..', '..');
const binDir = join(root, '.tools', 'bin');
const CLIENT_MODULE = join(root, 'src', 'azure', 'acr-token-client.ts');
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '6731de76-14a6-49ae-97bc-6eba6914391e';
const ISSUER = 'https://oidc.test.invalid/cluster';
const SUBJECT = 'system:serviceaccount:acr-pull-webhook:acr-pull-webhook-sync';
const SECRET = 'the-service-principal-secret';
/** Not ACR's 3 hours, so a lifetime read from anywhere but the token's own claims would show. */
const LIFETIME_SECONDS = 5400;

const pki = testPki();
const dir = mkdtempSync(join(tmpdir(), 'acr-token-client-'));
const caPath = join(dir, 'ca.crt');
const issuerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const run = promisify(execFile);
let service: AcrTokenService;
let registry: ChildProcess;
let server: string;

function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, address, () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

/** A ServiceAccount-token-shaped JWT (RS256, `kid`), as the apiserver projects it into the federated token file. */
function assertion(claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${b64({ alg: 'RS256', kid: 'issuer-key-1' })}.${b64({
    iss: ISSUER,
    sub: SUBJECT,
    aud: [WORKLOAD_IDENTITY_AUDIENCE],
    iat: now,
    exp: now + 600,
    ...claims,
  })}`;
  return `${signed}.${createSign('RSA-SHA256').update(signed).sign(issuerKeys.privateKey).toString('base64url')}`;
}

let files = 0;
/** A credential file as the kubelet or a Secret volume writes it: the value and a trailing newline. */
function credentialFile(content: string): string {
  const path = join(dir, `credential-${++files}`);
  writeFileSync(path, content);
  return path;
}

function credentials(
  source: AzureCredentials['secretSource'],
  authorityHost: string = `${service.url}/`,
): AzureCredentials {
  return {
    tenantId: TENANT,
    clientId: CLIENT,
    secretSource: source,
    cloud: 'AzurePublicCloud',
    authorityHost,
    scope: 'https://containerregistry.azure.net/.default',
  };
}
const federated = (content: string) => credentials({ kind: 'federated-token', file: credentialFile(content) });
const clientSecret = (content: string) => credentials({ kind: 'client-secret', file: credentialFile(content) });

type Outcome =
  | { readonly ok: true; readonly token: AcrRefreshToken }
  | ({ readonly ok: false; readonly name: string; readonly stage: string; readonly retriable: boolean } & {
      readonly message: string;
      readonly stack: string;
    });

const CHILD = `
const { requestAcrRefreshToken } = await import(process.argv[1]);
const [server, azure, options] = process.argv.slice(2).map((arg, i) => (i === 0 ? arg : JSON.parse(arg)));
const outcome = await requestAcrRefreshToken(server, azure, options).then(
  (token) => ({ ok: true, token }),
  (e) => ({ ok: false, name: e.name, stage: e.stage, retriable: e.retriable, message: e.message, stack: e.stack }),
);
process.stdout.write(JSON.stringify(outcome));
`;

/** requestAcrRefreshToken in a fresh Node, trusting the test CA through NODE_EXTRA_CA_CERTS unless told not to. */
async function requestToken(
  azure: AzureCredentials,
  options: { registry?: string; trustTestCa?: boolean; timeoutMs?: number } = {},
): Promise<Outcome> {
  const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
  const clientOptions = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
  const { stdout } = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      CHILD,
      CLIENT_MODULE,
      options.registry ?? server,
      JSON.stringify(azure),
      JSON.stringify(clientOptions),
    ],
    // Killed if it hangs, so a client without a working timeout fails the test instead of outliving it.
    { env: options.trustTestCa === false ? env : { ...env, NODE_EXTRA_CA_CERTS: caPath }, timeout: 20_000 },
  );
  return JSON.parse(stdout) as Outcome;
}

async function tokenOf(azure: AzureCredentials): Promise<AcrRefreshToken> {
  const outcome = await requestToken(azure);
  if (!outcome.ok) throw new Error(`expected a token, got ${outcome.stage}: ${outcome.message}`);
  return outcome.token;
}

async function failureOf(azure: AzureCredentials, options?: Parameters<typeof requestToken>[1]) {
  const outcome = await requestToken(azure, options);
  if (outcome.ok) throw new Error('expected the token request to fail');
  expect(outcome.name).toBe('AcrTokenError');
  expect(outcome.message).not.toContain('\n');
  // No secret, assertion or token of any kind (every JWT here starts with eyJ) in the message or the stack.
  for (const text of [outcome.message, outcome.stack]) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('eyJ');
  }
  return outcome;
}

let configs = 0;
/** crane with the docker config a pull secret of this refresh token holds, trusting the test CA. */
function crane(refreshToken: string) {
  const config = join(dir, `docker-config-${++configs}`);
  mkdirSync(config);
  const auth = Buffer.from(`${ACR_NULL_USER}:${refreshToken}`).toString('base64');
  writeFileSync(
    join(config, 'config.json'),
    JSON.stringify({ auths: { [server]: { username: ACR_NULL_USER, password: refreshToken, auth } } }),
  );
  return (...args: string[]) =>
    run(join(binDir, 'crane'), args, { env: { ...process.env, SSL_CERT_FILE: caPath, DOCKER_CONFIG: config } });
}

let pushed: string;

beforeAll(async () => {
  writeFileSync(caPath, pki.ca.certPem);
  // As in acr-token-service.test.ts: the token service is the registry's one origin and passes /v2/ through.
  const registryAddress = `127.0.0.1:${await freePort()}`;
  service = await startAcrTokenService({
    tenantId: TENANT,
    clientId: CLIENT,
    tls: pki.serving,
    upstream: { url: `https://${registryAddress}`, ca: pki.ca.certPem },
    clientSecret: SECRET,
    refreshTokenLifetimeSeconds: LIFETIME_SECONDS,
    federated: {
      issuer: ISSUER,
      subject: SUBJECT,
      jwks: { keys: [{ ...issuerKeys.publicKey.export({ format: 'jwk' }), kid: 'issuer-key-1', alg: 'RS256' }] },
    },
  });
  server = service.host;
  registry = await startTokenModeRegistry({
    binary: join(binDir, 'registry'),
    dir,
    address: registryAddress,
    service,
    serving: pki.serving,
    caPem: pki.ca.certPem,
  });
  // An image to pull, pushed with a token from the client itself (ACR's refresh tokens carry push rights too).
  const push = crane((await tokenOf(clientSecret(`${SECRET}\n`))).refreshToken);
  const layer = join(dir, 'layer');
  mkdirSync(join(layer, 'etc'), { recursive: true });
  writeFileSync(join(layer, 'etc', 'hello'), 'hello\n');
  await run('tar', ['-C', layer, '-cf', join(dir, 'layer.tar'), 'etc']);
  await push('append', '--new_layer', join(dir, 'layer.tar'), '--new_tag', `${server}/team/hello:1`);
  pushed = (await push('digest', `${server}/team/hello:1`)).stdout.trim();
}, 60_000);

afterAll(async () => {
  registry?.kill();
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('a refresh token is issued over HTTPS trusted through NODE_EXTRA_CA_CERTS, and crane pulls with it', () => {
  test.each([
    { form: 'a federated ServiceAccount token', azure: () => federated(`${assertion()}\n`) },
    { form: 'a client secret', azure: () => clientSecret(`${SECRET}\n`) },
  ])('with $form, exp is the service’s lifetime and the null-GUID user pulls the image', async ({ azure }) => {
    const before = Date.now();
    const token = await tokenOf(azure());
    expect(token.times.exp - (token.times.iat ?? 0)).toBe(LIFETIME_SECONDS);
    expect(token.receivedAt).toBeGreaterThanOrEqual(before);
    expect(token.receivedAt).toBeLessThanOrEqual(Date.now());
    expect(Math.abs(token.times.exp * 1000 - (token.receivedAt + LIFETIME_SECONDS * 1000))).toBeLessThan(5_000);
    const pull = crane(token.refreshToken);
    await pull('pull', `${server}/team/hello:1`, join(dir, `pulled-${configs}.tar`));
    expect((await pull('digest', `${server}/team/hello:1`)).stdout.trim()).toBe(pushed);
  });

  test('the federated token file is read again on each call: an expired token, rotated, then works', async () => {
    const file = credentialFile(`${assertion({ exp: Math.floor(Date.now() / 1000) - 5 })}\n`);
    const azure = credentials({ kind: 'federated-token', file });
    const before = service.requests.length;
    const expired = await failureOf(azure);
    expect(expired).toMatchObject({ stage: 'entra', retriable: false });
    expect(expired.message).toContain('AADSTS700024');
    writeFileSync(file, `${assertion()}\n`);
    expect((await tokenOf(azure)).refreshToken).toMatch(/^eyJ/);
    const entra = service.requests.slice(before).filter((r) => r.path.endsWith('/oauth2/v2.0/token'));
    expect(entra.map((r) => `${r.status} ${r.error ?? ''}`)).toEqual(['401 AADSTS700024', '200 ']);
  });
});

describe('a refusal is not retriable and names the code and the field to check, never the credential', () => {
  test.each([
    { what: 'a wrong client secret', azure: () => clientSecret('not-the-secret\n'), code: 7000215, field: 'secret' },
    {
      what: 'a wrong audience',
      azure: () => federated(assertion({ aud: ['api://SomethingElse'] })),
      code: 700212,
      field: 'audience',
    },
    {
      what: 'a wrong subject',
      azure: () => federated(assertion({ sub: 'system:serviceaccount:default:default' })),
      code: 700213,
      field: 'subject',
    },
    {
      what: 'a wrong issuer',
      azure: () => federated(assertion({ iss: 'https://kubernetes.default.svc' })),
      code: 700211,
      field: 'issuer',
    },
  ])('$what: AADSTS$code, check the $field', async ({ azure, code, field }) => {
    const credential = azure();
    const issued = service.issued.entra;
    const error = await failureOf(credential);
    expect(error).toMatchObject({ stage: 'entra', retriable: false });
    expect(error.message).toMatch(
      new RegExp(`^Entra ID refused the token request \\(HTTP 401, invalid_client, AADSTS${code}\\): .*${field}`),
    );
    const sent = readFileSync(credential.secretSource.file, 'utf8').trim();
    expect(error.message).not.toContain(sent);
    expect(error.stack).not.toContain(sent);
    expect(service.issued.entra).toBe(issued);
  });
});

describe('an outage or an unreachable host is retriable; an untrusted certificate is not', () => {
  test.each([
    { endpoint: 'entra', stage: 'entra', message: 'Entra ID is unavailable (HTTP 503)' },
    { endpoint: 'exchange', stage: 'exchange', message: "the registry's token exchange is unavailable (HTTP 503)" },
  ] as const)('the token service answering 503 at $endpoint fails stage $stage, retriable', async (row) => {
    service.unavailable.add(row.endpoint);
    try {
      const error = await failureOf(clientSecret(SECRET));
      expect(error).toMatchObject({ stage: row.stage, retriable: true });
      expect(error.message).toContain(row.message);
    } finally {
      service.unavailable.delete(row.endpoint);
    }
  });

  test('a refused connection names the host and ECONNREFUSED, retriable', async () => {
    const closed = `127.0.0.1:${await freePort()}`;
    const error = await failureOf(
      credentials({ kind: 'client-secret', file: credentialFile(SECRET) }, `https://${closed}/`),
    );
    expect(error).toMatchObject({ stage: 'entra', retriable: true });
    expect(error.message).toBe(`the Entra ID token request to ${closed} failed (ECONNREFUSED)`);
  });

  test('an answer whose body stalls times out (the timeout covers the body too), retriable', async () => {
    const stalled = createHttpsServer({ key: pki.serving.keyPem, cert: pki.serving.certPem }, (_, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"token_type":"Bearer",');
    });
    await new Promise<void>((ok) => stalled.listen(0, '127.0.0.1', ok));
    try {
      const host = `127.0.0.1:${(stalled.address() as { port: number }).port}`;
      const azure = credentials({ kind: 'client-secret', file: credentialFile(SECRET) }, `https://${host}/`);
      const started = Date.now();
      const error = await failureOf(azure, { timeoutMs: 500 });
      expect(error).toMatchObject({ stage: 'entra', retriable: true });
      expect(error.message).toBe(`the Entra ID token request to ${host} timed out after 500 ms`);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      stalled.closeAllConnections();
      await new Promise((ok) => stalled.close(ok));
    }
  });

  test('the exchange at a registry that refuses connections fails stage exchange, retriable', async () => {
    const closed = `127.0.0.1:${await freePort()}`;
    const error = await failureOf(clientSecret(SECRET), { registry: closed });
    expect(error).toMatchObject({ stage: 'exchange', retriable: true });
    expect(error.message).toBe(`the registry's token exchange to ${closed} failed (ECONNREFUSED)`);
  });

  test('without NODE_EXTRA_CA_CERTS the test CA is untrusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)', async () => {
    const issued = service.issued.entra;
    const error = await failureOf(clientSecret(SECRET), { trustTestCa: false });
    expect(error).toMatchObject({ stage: 'entra', retriable: false });
    expect(error.message).toContain(`to ${server} failed: the server's TLS certificate is not accepted`);
    expect(error.message).toContain('(UNABLE_TO_VERIFY_LEAF_SIGNATURE)');
    expect(service.issued.entra).toBe(issued);
  });

  test('a trusted certificate that does not name the host: ERR_TLS_CERT_ALTNAME_INVALID, not retriable', async () => {
    // The serving certificate names localhost and 127.0.0.1 only; another loopback address is not among them.
    const other = createHttpsServer({ key: pki.serving.keyPem, cert: pki.serving.certPem }, (_, res) => res.end());
    await new Promise<void>((ok) => other.listen(0, '127.0.0.2', ok));
    try {
      const host = `127.0.0.2:${(other.address() as { port: number }).port}`;
      const error = await failureOf(
        credentials({ kind: 'client-secret', file: credentialFile(SECRET) }, `https://${host}/`),
      );
      expect(error).toMatchObject({ stage: 'entra', retriable: false });
      expect(error.message).toContain(`to ${host} failed: the server's TLS certificate is not accepted`);
      expect(error.message).toContain('(ERR_TLS_CERT_ALTNAME_INVALID)');
    } finally {
      await new Promise((ok) => other.close(ok));
    }
  });
});

describe('a redirect is refused, so the credential is posted to the configured host only', () => {
  test('a 307 to the real token endpoint is not followed: nothing is issued, not retriable', async () => {
    // 307 keeps the method and the body: followed, it would post the secret on and buy a token.
    const target = `${service.url}/${TENANT}/oauth2/v2.0/token`;
    const redirector = createHttpsServer({ key: pki.serving.keyPem, cert: pki.serving.certPem }, (_, res) =>
      res.writeHead(307, { location: target }).end(),
    );
    await new Promise<void>((ok) => redirector.listen(0, '127.0.0.1', ok));
    try {
      const host = `127.0.0.1:${(redirector.address() as { port: number }).port}`;
      const issued = service.issued.entra;
      const before = service.requests.length;
      const error = await failureOf(
        credentials({ kind: 'client-secret', file: credentialFile(SECRET) }, `https://${host}/`),
      );
      expect(error).toMatchObject({ stage: 'entra', retriable: false });
      expect(error.message).toContain(`to ${host} was answered with a redirect (HTTP 307), which is not followed`);
      expect(service.requests.length).toBe(before);
      expect(service.issued.entra).toBe(issued);
    } finally {
      await new Promise((ok) => redirector.close(ok));
    }
  });
});

describe('an unreadable credential file fails stage read, naming the field and the path, before any request', () => {
  test.each([
    { what: 'a missing client secret file', kind: 'client-secret', content: undefined, says: '(ENOENT)' },
    { what: 'an empty client secret file', kind: 'client-secret', content: '', says: 'is empty' },
    { what: 'a federated token file of one newline', kind: 'federated-token', content: '\n', says: 'is empty' },
  ] as const)('$what: $says', async ({ kind, content, says }) => {
    const file = content === undefined ? join(dir, 'no-such-file') : credentialFile(content);
    const before = service.requests.length;
    const error = await failureOf(credentials({ kind, file }));
    expect(error).toMatchObject({ stage: 'read', retriable: false });
    const field = kind === 'client-secret' ? 'clientSecretFile' : 'federatedTokenFile';
    expect(error.message).toContain(`${field} ${file}`);
    expect(error.message).toContain(says);
    expect(service.requests.length).toBe(before);
  });
});
