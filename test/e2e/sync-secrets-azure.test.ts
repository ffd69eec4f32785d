// sync-secrets with `credentials.azure` end to end: the real CLI against the real kube-apiserver, whose
// ServiceAccount tokens (TokenRequest API, audience api://AzureADTokenExchange) are the federated credential; a
// local Entra + ACR token service that checks them against the apiserver's own /openid/v1/jwks; the real
// `distribution` registry behind it in token mode; crane pulling with the Secret that was written.
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ApiException, CoreV1Api, EventsV1Api, KubeConfig, type V1Secret } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { stringify as toYaml } from 'yaml';
import {
  ACR_ISSUER,
  ACR_NULL_USER,
  ACR_SCOPE,
  type AcrTokenService,
  type JsonWebKeySet,
  startAcrTokenService,
  WORKLOAD_IDENTITY_AUDIENCE,
} from '../support/acr-token-service.ts';
import { testPki } from '../support/certificates.ts';
import { startTokenModeRegistry } from '../support/token-mode-registry.ts';
import { createNamespace } from '../support/control-plane.ts';
import { kubectlDockerConfigJson } from '../support/kubectl-docker-config.ts';
import { scrapeMetrics } from '../support/sync-metrics.ts';
import { everythingPrinted, runSync, startSyncWatcher, type SyncWatcher, timeUntil } from '../support/sync-process.ts';

const ADMIN_KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(ADMIN_KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const binDir = resolve(import.meta.dirname, '..', '..', '.tools', 'bin');
const dir = mkdtempSync(join(tmpdir(), 'e2e-sync-azure-'));
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

const TENANT = randomUUID();
const CLIENT = randomUUID();
const CLIENT_SECRET = `${randomBytes(3).toString('hex')}8Q~${randomBytes(27).toString('base64url')}`;
const SECRET_NAME = 'acr-private';
/** Where sync-secrets runs: its ServiceAccount (the federated credential's subject) and its Lease. */
const HOME_NAMESPACE = unique('azure-sync');
const SERVICE_ACCOUNT = 'acr-pull-webhook-sync';
const OPT_IN = `e2e.acr-pull-webhook/azure-${randomUUID().slice(0, 8)}`;

const pki = testPki();
const caPath = join(dir, 'ca.crt');
writeFileSync(caPath, pki.ca.certPem);
/** The child trusts the token service (and the registry behind it) the way a pod is told to: the extra CA file. */
const ENV = { NODE_EXTRA_CA_CERTS: caPath };
let service: AcrTokenService;
let registry: ChildProcess;
let host: string;
/** Every token and secret the tests handled, none of which may appear in any output. */
const secrets: string[] = [CLIENT_SECRET];

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

/** GET with the admin client certificate (the apiserver serves its discovery documents to authenticated users). */
async function apiserverJson(path: string): Promise<unknown> {
  const options: RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  const url = new URL(path, kc.getCurrentCluster()?.server);
  return new Promise((ok, fail) => {
    const req = request(url, { ...options, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () =>
        res.statusCode === 200 ? ok(JSON.parse(text)) : fail(new Error(`${path}: HTTP ${res.statusCode}`)),
      );
    });
    req.on('error', fail);
    req.end();
  });
}

/** A projected-style ServiceAccount token from the real TokenRequest API, written to a file as the kubelet would. */
async function serviceAccountToken(serviceAccount: string, audience: string): Promise<string> {
  const answer = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: HOME_NAMESPACE,
    body: { spec: { audiences: [audience], expirationSeconds: 3600 } },
  });
  const token = answer.status?.token ?? '';
  expect(token).toMatch(/^eyJ/);
  secrets.push(token);
  const path = join(dir, `${serviceAccount}-${randomUUID().slice(0, 8)}.token`);
  writeFileSync(path, token);
  return path;
}

function writeConfig(secret: { federatedTokenFile: string } | { clientSecretFile: string }): string {
  const path = join(dir, `config-${randomUUID().slice(0, 8)}.yaml`);
  writeFileSync(
    path,
    toYaml({
      registries: [
        {
          server: host,
          secretName: SECRET_NAME,
          credentials: {
            azure: {
              tenantId: TENANT,
              clientId: CLIENT,
              ...secret,
              // A loopback registry has no Azure suffix to take the cloud from; the service is the authority.
              cloud: 'AzurePublicCloud',
              authorityHost: service.url,
            },
          },
        },
      ],
      optIn: { label: OPT_IN, value: 'enabled' },
    }),
  );
  return path;
}

async function optedInNamespace(): Promise<string> {
  const name = unique('azure-in');
  await createNamespace(kc, name, { [OPT_IN]: 'enabled' });
  return name;
}

async function readSecret(namespace: string): Promise<V1Secret | undefined> {
  try {
    return await core.readNamespacedSecret({ namespace, name: SECRET_NAME });
  } catch (error) {
    if (error instanceof ApiException && error.code === 404) return undefined;
    throw error;
  }
}
const dockerConfigJsonOf = (secret: V1Secret | undefined): string =>
  Buffer.from(secret?.data?.['.dockerconfigjson'] ?? '', 'base64').toString('utf8');
/** The password the Secret holds for the registry: the ACR refresh token. */
function tokenOf(secret: V1Secret | undefined): string {
  const auths = (JSON.parse(dockerConfigJsonOf(secret) || '{}') as { auths?: Record<string, { password?: string }> })
    .auths;
  const token = auths?.[host]?.password ?? '';
  if (token !== '') secrets.push(token);
  return token;
}
const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString());

const run = promisify(execFile);
function crane(dockerConfig: string, ...args: string[]) {
  return run(join(binDir, 'crane'), args, {
    env: { ...process.env, SSL_CERT_FILE: caPath, DOCKER_CONFIG: dockerConfig },
  });
}
/** crane with a DOCKER_CONFIG holding exactly the Secret's .dockerconfigjson. */
async function pullWith(secret: V1Secret | undefined): Promise<string> {
  const config = join(dir, `docker-${randomUUID().slice(0, 8)}`);
  mkdirSync(config);
  writeFileSync(join(config, 'config.json'), dockerConfigJsonOf(secret));
  await crane(config, 'pull', `${host}/team/private:1`, join(config, 'image.tar'));
  return (await crane(config, 'digest', `${host}/team/private:1`)).stdout.trim();
}

/** A refresh token straight from the service (client secret), as an operator pushing the image would get one. */
async function pushImage(): Promise<string> {
  const post = (url: string, form: Record<string, string>) =>
    new Promise<Record<string, string>>((ok, fail) => {
      const headers = { 'content-type': 'application/x-www-form-urlencoded' };
      request(url, { method: 'POST', headers, ca: pki.ca.certPem, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.on('end', () => ok(JSON.parse(text)));
      })
        .on('error', fail)
        .end(new URLSearchParams(form).toString());
    });
  const entra = await post(`${service.url}/${TENANT}/oauth2/v2.0/token`, {
    grant_type: 'client_credentials',
    client_id: CLIENT,
    scope: ACR_SCOPE,
    client_secret: CLIENT_SECRET,
  });
  const { refresh_token: refresh = '' } = await post(`${service.url}/oauth2/exchange`, {
    grant_type: 'access_token',
    service: host,
    tenant: TENANT,
    access_token: entra['access_token'] ?? '',
  });
  secrets.push(refresh);
  const config = join(dir, 'pusher');
  mkdirSync(config);
  await crane(config, 'auth', 'login', host, '-u', ACR_NULL_USER, '-p', refresh);
  const layer = join(dir, 'layer');
  mkdirSync(join(layer, 'etc'), { recursive: true });
  writeFileSync(join(layer, 'etc', 'private'), 'only with a token\n');
  await run('tar', ['-C', layer, '-cf', join(dir, 'layer.tar'), 'etc']);
  await crane(config, 'append', '--new_layer', join(dir, 'layer.tar'), '--new_tag', `${host}/team/private:1`);
  return (await crane(config, 'digest', `${host}/team/private:1`)).stdout.trim();
}

let pushedDigest = '';
let federatedTokenFile = '';
let workloadIdentityConfig = '';

beforeAll(async () => {
  await createNamespace(kc, HOME_NAMESPACE);
  for (const name of [SERVICE_ACCOUNT, 'someone-else'])
    await core.createNamespacedServiceAccount({ namespace: HOME_NAMESPACE, body: { metadata: { name } } });
  // The federated identity credential as an operator registers it: the cluster's issuer (from its discovery
  // document), the ServiceAccount as subject, Azure's audience, and the keys the apiserver publishes.
  const discovery = (await apiserverJson('/.well-known/openid-configuration')) as { issuer: string };
  const registryAddress = `127.0.0.1:${await freePort()}`;
  service = await startAcrTokenService({
    tenantId: TENANT,
    clientId: CLIENT,
    tls: pki.serving,
    upstream: { url: `https://${registryAddress}`, ca: pki.ca.certPem },
    clientSecret: CLIENT_SECRET,
    federated: {
      issuer: discovery.issuer,
      subject: `system:serviceaccount:${HOME_NAMESPACE}:${SERVICE_ACCOUNT}`,
      jwks: async () => (await apiserverJson('/openid/v1/jwks')) as JsonWebKeySet,
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
    httpSecret: randomBytes(16).toString('hex'),
  });
  pushedDigest = await pushImage();
  federatedTokenFile = await serviceAccountToken(SERVICE_ACCOUNT, WORKLOAD_IDENTITY_AUDIENCE);
  workloadIdentityConfig = writeConfig({ federatedTokenFile });
}, 60_000);

afterAll(async () => {
  registry?.kill();
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The one line main.ts prints for a refused start, for the config `path`. */
const startLine = (path: string): string =>
  `acr-pull-webhook sync-secrets: config ${path}: registries[0] (${host} -> ${SECRET_NAME}): `;

describe('workload identity: a ServiceAccount token is the only credential', () => {
  test('--once writes the Secret kubectl would make with the ACR refresh token, and crane pulls with it', async () => {
    const namespace = await optedInNamespace();
    const issued = service.issued.refresh;
    const result = await runSync(['--config', workloadIdentityConfig, '--once', '--kubeconfig', ADMIN_KUBECONFIG], {
      env: ENV,
    });
    expect(result.status, result.stderr).toBe(0);
    expect(service.issued.refresh).toBe(issued + 1);
    const secret = await readSecret(namespace);
    const token = tokenOf(secret);
    expect(claimsOf(token)).toMatchObject({ iss: ACR_ISSUER, aud: host, tenant: TENANT, grant_type: 'refresh_token' });
    const kubectl = kubectlDockerConfigJson(host, '00000000-0000-0000-0000-000000000000', token);
    expect(secret?.type).toBe(kubectl.type);
    expect(dockerConfigJsonOf(secret)).toBe(kubectl.dockerConfigJson);
    expect(await pullWith(secret)).toBe(pushedDigest);
  });

  test('--dry-run --namespace -o json with no kubeconfig at all prints that Secret', async () => {
    const result = await runSync(
      ['--config', workloadIdentityConfig, '--dry-run', '--namespace', 'team-a', '-o', 'json'],
      { env: ENV, keepStdout: false },
    );
    expect(result.status, result.stderr).toBe(0);
    const secret = JSON.parse(result.stdout) as V1Secret;
    expect(secret).toMatchObject({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: SECRET_NAME, namespace: 'team-a' },
      type: 'kubernetes.io/dockerconfigjson',
    });
    const token = tokenOf(secret);
    expect(claimsOf(token)).toMatchObject({ iss: ACR_ISSUER, aud: host });
    expect(dockerConfigJsonOf(secret)).toBe(kubectlDockerConfigJson(host, ACR_NULL_USER, token).dockerConfigJson);
    expect(await pullWith(secret)).toBe(pushedDigest);
  });

  test.each([
    {
      what: 'a token for another audience',
      file: () => serviceAccountToken(SERVICE_ACCOUNT, 'api://SomethingElse'),
      code: 'AADSTS700212',
      field: 'audience',
    },
    {
      what: "another ServiceAccount's token",
      file: () => serviceAccountToken('someone-else', WORKLOAD_IDENTITY_AUDIENCE),
      code: 'AADSTS700213',
      field: 'subject',
    },
  ])('$what: --once exits 1 naming $code and the $field in one line; nothing written', async (c) => {
    const namespace = await optedInNamespace();
    const config = writeConfig({ federatedTokenFile: await c.file() });
    const result = await runSync(['--config', config, '--once', '--kubeconfig', ADMIN_KUBECONFIG], { env: ENV });
    expect(result.status).toBe(1);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]?.startsWith(startLine(config))).toBe(true);
    expect(lines[0]).toContain(c.code);
    expect(lines[0]).toContain(c.field);
    expect(result.stdout).toBe('');
    expect((await core.listNamespacedSecret({ namespace })).items).toEqual([]);
  });
});

describe('--watch keeps the token fresh', () => {
  const LIFETIME_SECONDS = 30;
  let namespace = '';
  let watcher: SyncWatcher;
  const EXPIRY = (): string => `acr_pull_webhook_sync_token_expiry_timestamp_seconds{server="${host}"}`;
  const REQUESTS = (result: string): string =>
    `acr_pull_webhook_sync_token_requests_total{server="${host}",result="${result}"}`;
  /** sync-secrets' TokenRequestRejected Events about the namespace (issue #18); Namespace Events live in default. */
  const tokenRejectedEvents = async (about: string) =>
    (await kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: 'default' })).items.filter(
      (event) => event.reason === 'TokenRequestRejected' && event.regarding?.name === about,
    );

  beforeAll(async () => {
    service.refreshTokenLifetimeSeconds = LIFETIME_SECONDS;
    namespace = await optedInNamespace();
    watcher = await startSyncWatcher({
      config: workloadIdentityConfig,
      kubeconfig: ADMIN_KUBECONFIG,
      leaseNamespace: HOME_NAMESPACE,
      identity: 'azure-watch',
      args: ['--token-refresh-fraction', '0.5'],
      env: ENV,
    });
  });
  afterAll(async () => {
    service.refreshTokenLifetimeSeconds = 3 * 3600;
    await watcher?.stop();
  });

  test('the Secret gets a new token before the old one expires: same UID, a newer version, the gauge too', async () => {
    await timeUntil('the Secret is written', async () => (await readSecret(namespace)) !== undefined);
    const first = await readSecret(namespace);
    const firstToken = tokenOf(first);
    const firstExp = Number(claimsOf(firstToken).exp);
    expect(firstExp - Date.now() / 1000).toBeLessThanOrEqual(LIFETIME_SECONDS);
    expect((await scrapeMetrics(watcher.healthUrl)).value(EXPIRY())).toBe(firstExp);

    await timeUntil(
      'the token in the Secret changes',
      async () => tokenOf(await readSecret(namespace)) !== firstToken,
      30_000,
    );
    expect(Date.now()).toBeLessThan(firstExp * 1000);
    const second = await readSecret(namespace);
    const secondToken = tokenOf(second);
    const secondExp = Number(claimsOf(secondToken).exp);
    expect(second?.metadata?.uid).toBe(first?.metadata?.uid);
    expect(Number(second?.metadata?.resourceVersion)).toBeGreaterThan(Number(first?.metadata?.resourceVersion));
    expect(secondExp).toBeGreaterThan(firstExp);
    expect(dockerConfigJsonOf(second)).toBe(kubectlDockerConfigJson(host, ACR_NULL_USER, secondToken).dockerConfigJson);
    const refreshed = await watcher.waitForLog((line) => line['msg'] === 'token refreshed');
    expect(refreshed).toMatchObject({ level: 30, server: host, expiresAt: new Date(secondExp * 1000).toISOString() });
    const scrape = await scrapeMetrics(watcher.healthUrl);
    expect(scrape.value(EXPIRY())).toBe(secondExp);
    expect(scrape.value(REQUESTS('issued'))).toBeGreaterThanOrEqual(2);
    expect(await pullWith(second)).toBe(pushedDigest);
  }, 60_000);

  test('Entra down: the current token stays, a warning and the failed count say so; back up: refreshed', async () => {
    const current = tokenOf(await readSecret(namespace));
    const currentExp = Number(claimsOf(current).exp);
    const failedBefore = (await scrapeMetrics(watcher.healthUrl)).value(REQUESTS('failed'));
    service.unavailable.add('entra');
    try {
      const warning = await watcher.waitForLog(
        (line) => line['msg'] === 'token refresh failed; keeping the current token',
        30_000,
      );
      expect(warning).toMatchObject({ level: 40, server: host, stage: 'entra' });
      expect(String(warning['error'])).toContain('503');
      const keptUntil = Date.parse(String(warning['keptUntil']));
      expect(keptUntil).toBeGreaterThan(Date.now() - 30_000);
      expect(keptUntil).toBeLessThan(currentExp * 1000);
      expect((await scrapeMetrics(watcher.healthUrl)).value(REQUESTS('failed'))).toBeGreaterThan(failedBefore);
      expect(tokenOf(await readSecret(namespace))).toBe(current);
    } finally {
      service.unavailable.delete('entra');
    }
    await timeUntil(
      'a new token once Entra answers again',
      async () => tokenOf(await readSecret(namespace)) !== current,
      30_000,
    );
    const recovered = await readSecret(namespace);
    expect(Number(claimsOf(tokenOf(recovered)).exp)).toBeGreaterThan(currentExp);
    expect((await scrapeMetrics(watcher.healthUrl)).value(EXPIRY())).toBe(Number(claimsOf(tokenOf(recovered)).exp));
  }, 60_000);

  test('the token file is read at every refresh: a refused one counts as rejected, a rotated one is used', async () => {
    const current = tokenOf(await readSecret(namespace));
    const rejectedBefore = (await scrapeMetrics(watcher.healthUrl)).value(REQUESTS('rejected'));
    // Entra down (above) was transient: no Event for it. A refusal is one, on the opted-in Namespace.
    expect(await tokenRejectedEvents(namespace)).toEqual([]);
    const good = readFileSync(federatedTokenFile, 'utf8');
    writeFileSync(
      federatedTokenFile,
      readFileSync(await serviceAccountToken('someone-else', WORKLOAD_IDENTITY_AUDIENCE)),
    );
    try {
      const warning = await watcher.waitForLog((line) => String(line['error']).includes('AADSTS700213'), 30_000);
      expect(warning).toMatchObject({
        level: 40,
        msg: 'token refresh failed; keeping the current token',
        stage: 'entra',
      });
      expect((await scrapeMetrics(watcher.healthUrl)).value(REQUESTS('rejected'))).toBeGreaterThan(rejectedBefore);
      expect(tokenOf(await readSecret(namespace))).toBe(current);
      await timeUntil('a TokenRequestRejected Event', async () => (await tokenRejectedEvents(namespace)).length > 0);
      expect((await tokenRejectedEvents(namespace))[0]).toMatchObject({
        type: 'Warning',
        action: 'RefreshToken',
        note:
          `The token request for registry ${host} was refused; pull secret ${SECRET_NAME}: ` +
          'it keeps its current token while that is valid',
        related: { kind: 'Secret', namespace, name: SECRET_NAME },
      });
    } finally {
      // As the kubelet rotates it: a new token of the right ServiceAccount.
      writeFileSync(
        federatedTokenFile,
        readFileSync(await serviceAccountToken(SERVICE_ACCOUNT, WORKLOAD_IDENTITY_AUDIENCE)),
      );
    }
    expect(readFileSync(federatedTokenFile, 'utf8')).not.toBe(good);
    await timeUntil(
      'a new token from the rotated file',
      async () => tokenOf(await readSecret(namespace)) !== current,
      30_000,
    );
  }, 60_000);
});

describe('a service principal: a client secret file instead of a ServiceAccount token', () => {
  test('--once writes the same kind of Secret, and crane pulls with it', async () => {
    const namespace = await optedInNamespace();
    const clientSecretFile = join(dir, 'client-secret');
    writeFileSync(clientSecretFile, `${CLIENT_SECRET}\n`);
    const config = writeConfig({ clientSecretFile });
    const result = await runSync(['--config', config, '--once', '--kubeconfig', ADMIN_KUBECONFIG], { env: ENV });
    expect(result.status, result.stderr).toBe(0);
    const secret = await readSecret(namespace);
    const token = tokenOf(secret);
    expect(claimsOf(token)).toMatchObject({ iss: ACR_ISSUER, aud: host, sub: CLIENT });
    expect(dockerConfigJsonOf(secret)).toBe(kubectlDockerConfigJson(host, ACR_NULL_USER, token).dockerConfigJson);
    expect(await pullWith(secret)).toBe(pushedDigest);
  });

  test('a wrong secret: --once exits 1 with one line naming AADSTS7000215, and writes nothing', async () => {
    const namespace = await optedInNamespace();
    const clientSecretFile = join(dir, 'wrong-client-secret');
    writeFileSync(clientSecretFile, 'not-the-secret');
    const config = writeConfig({ clientSecretFile });
    const result = await runSync(['--config', config, '--once', '--kubeconfig', ADMIN_KUBECONFIG], { env: ENV });
    expect(result.status).toBe(1);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]?.startsWith(startLine(config))).toBe(true);
    expect(lines[0]).toContain('AADSTS7000215');
    expect((await core.listNamespacedSecret({ namespace })).items).toEqual([]);
  });
});

test('no token, assertion or client secret was ever printed', () => {
  const printed = everythingPrinted();
  expect(secrets.length).toBeGreaterThan(5);
  for (const secret of secrets) expect(printed.includes(secret)).toBe(false);
  expect(readFileSync(federatedTokenFile, 'utf8')).toMatch(/^eyJ/);
});
