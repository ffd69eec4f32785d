// Pull secrets without a password, where users run them: the chart installed on the one-node cluster with a
// registry entry `credentials.azure.workloadIdentity`, and a registry that takes only ACR tokens
// (e2etoken.azurecr.io: the real distribution behind the local Entra + ACR token service). The sync-secrets
// pods send their projected ServiceAccount token to the Entra side, which checks it against the apiserver's
// JWKS, and write the ACR refresh token they get for it; the kubelet pulls with nothing else.
// Timings go to stderr as `[azure tokens e2e] …` lines.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, type V1Pod, type V1Secret } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ACR_REFRESH_TOKEN_USERNAME, DOCKERCONFIGJSON_KEY, INJECT_ENABLED, INJECT_LABEL } from '../../src/constants.ts';
import { ACR_ISSUER } from '../support/acr-token-service.ts';
import { type NodeCluster, netnsMembers, startNodeCluster } from '../support/node/cluster.ts';
import { publishRelease, RELEASE, type Release } from '../support/node/release.ts';
import { until } from '../support/node/story.ts';
import { TOKEN_REGISTRY_HOST, type TokenRegistry } from '../support/node/token-registry.ts';

const POD_MS = 90_000;
const FULLNAME = 'acr-acr-pull-webhook';
const SYNC_NAME = `${FULLNAME}-sync-secrets`;
const SECRET_NAME = 'acr-e2etoken';
/** The second entry's: the same registry (a path prefix of it) with the service-principal form. */
const SP_SECRET_NAME = 'acr-e2etoken-sp';
const CLIENT_SECRET_SECRET = 'e2etoken-client-secret';
const SP_SERVER = `${TOKEN_REGISTRY_HOST}/e2e`;
const TRUSTED_CA_CONFIGMAP = 'e2e-trusted-ca';
/** Short enough that refresh (at half of it) and expiry both happen within the test. */
const LIFETIME_SECONDS = 60;

let cluster: NodeCluster;
let release: Release;
let core: CoreV1Api;
let registry: TokenRegistry;
/** The opted-in namespace the scenarios share. */
const namespace = `tokens-${randomBytes(3).toString('hex')}`;
const log = (line: string): void => {
  process.stderr.write(`[azure tokens e2e] ${line}\n`);
};
const unique = (prefix: string): string => `${prefix}-${randomBytes(3).toString('hex')}`;

const claimsOf = (jwt: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString());

async function readSecret(name: string = SECRET_NAME): Promise<V1Secret> {
  return core.readNamespacedSecret({ name, namespace });
}

/** The username and password the pull secret holds under its entry's server (the `auths` key). */
function credentialOf(secret: V1Secret): { username: string; password: string } {
  const server = secret.metadata?.name === SP_SECRET_NAME ? SP_SERVER : TOKEN_REGISTRY_HOST;
  const json = Buffer.from(secret.data?.[DOCKERCONFIGJSON_KEY] ?? '', 'base64').toString();
  const auths = (JSON.parse(json) as { auths: Record<string, { username: string; password: string }> }).auths;
  const auth = auths[server];
  if (!auth) throw new Error(`no auths entry for ${server}, only ${Object.keys(auths).join(', ')}`);
  return auth;
}
const tokenOf = async (name: string = SECRET_NAME): Promise<string> => credentialOf(await readSecret(name)).password;

/** A plain pod as a user writes it: no imagePullSecrets of its own. */
async function createPod(ns: string, pullPolicy: 'IfNotPresent' | 'Always' = 'IfNotPresent'): Promise<string> {
  const name = unique('pull');
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name },
      spec: {
        containers: [{ name: 'main', image: registry.image, imagePullPolicy: pullPolicy }],
        terminationGracePeriodSeconds: 0,
      },
    },
  });
  return name;
}

async function waitRunning(ns: string, name: string): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await until(
    `pod ${ns}/${name} Running`,
    async () => {
      pod = await core.readNamespacedPod({ name, namespace: ns });
      if (pod.status?.phase !== 'Running') throw new Error(`saw ${JSON.stringify(pod.status?.containerStatuses)}`);
      return true;
    },
    POD_MS,
  );
  return pod as V1Pod;
}

async function syncPod(): Promise<string> {
  const pods = await core.listNamespacedPod({
    namespace: RELEASE.namespace,
    labelSelector: 'app.kubernetes.io/component=sync-secrets',
    fieldSelector: 'status.phase=Running',
  });
  const name = pods.items[0]?.metadata?.name;
  if (name === undefined) throw new Error('no running sync-secrets pod');
  return name;
}

/** The JSON log lines of the running sync-secrets --watch pod. */
async function syncLogs(): Promise<Record<string, unknown>[]> {
  const text = await core.readNamespacedPodLog({ name: await syncPod(), namespace: RELEASE.namespace });
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

beforeAll(async () => {
  let started = Date.now();
  cluster = await startNodeCluster({
    log,
    tokenRegistry: { subject: `system:serviceaccount:${RELEASE.namespace}:${SYNC_NAME}` },
  });
  if (!cluster.tokenRegistry) throw new Error('the cluster started without its token registry');
  registry = cluster.tokenRegistry;
  registry.service.refreshTokenLifetimeSeconds = LIFETIME_SECONDS;
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  log(`cluster with token registry: ${Date.now() - started} ms`);
  started = Date.now();
  release = await publishRelease(cluster, log);
  // The test CA, which the sync-secrets pods trust for the token registry and its Entra side (trustedCA).
  await core.createNamespacedConfigMap({
    namespace: RELEASE.namespace,
    body: { metadata: { name: TRUSTED_CA_CONFIGMAP }, data: { 'ca.crt': cluster.caPem } },
  });
  // The service principal's client secret, as a user keeps it: a Secret the chart mounts into sync-secrets only.
  await core.createNamespacedSecret({
    namespace: RELEASE.namespace,
    body: { metadata: { name: CLIENT_SECRET_SECRET }, stringData: { 'client-secret': registry.clientSecret } },
  });
  await core.createNamespace({ body: { metadata: { name: namespace, labels: { [INJECT_LABEL]: INJECT_ENABLED } } } });
  await release.install({
    webhook: { failurePolicy: 'Fail' },
    registries: [
      {
        server: registry.host,
        secretName: SECRET_NAME,
        // No cloud needed (the server's suffix says public); the authority is the local Entra side.
        credentials: { azure: { workloadIdentity: true, authorityHost: `https://${registry.host}` } },
      },
      {
        server: SP_SERVER,
        secretName: SP_SECRET_NAME,
        credentials: {
          azure: {
            tenantId: registry.tenantId,
            clientId: registry.clientId,
            authorityHost: `https://${registry.host}`,
            clientSecret: { existingSecret: { name: CLIENT_SECRET_SECRET } },
          },
        },
      },
    ],
    syncSecrets: {
      workloadIdentity: { enabled: true, clientId: registry.clientId, tenantId: registry.tenantId },
      hostAliases: [{ ip: registry.ip, hostnames: [registry.host] }],
      trustedCA: { configMap: TRUSTED_CA_CONFIGMAP },
    },
  });
  log(`release published and installed: ${Date.now() - started} ms`);
}, 900_000);

afterAll(async () => {
  await cluster?.stop();
}, 120_000);

describe('helm install with credentials.azure.workloadIdentity on the real node', () => {
  test('the pull secret holds the null-GUID user and a refresh token the service issued for the registry', async () => {
    await until('the pull secret in the opted-in namespace', async () => (await readSecret()) !== undefined, 60_000);
    const { username, password } = credentialOf(await readSecret());
    expect(username).toBe(ACR_REFRESH_TOKEN_USERNAME);
    expect(username).toBe('00000000-0000-0000-0000-000000000000');
    expect(claimsOf(password)).toMatchObject({
      iss: ACR_ISSUER,
      aud: registry.host,
      grant_type: 'refresh_token',
      tenant: registry.tenantId,
    });
    // Bought with the pods' ServiceAccount token: Entra requests carrying an assertion were answered.
    const entra = registry.service.requests.filter((r) => r.path === `/${registry.tenantId}/oauth2/v2.0/token`);
    expect(entra.some((r) => r.status === 200)).toBe(true);
  });

  test('an unchanged pod in the opted-in namespace pulls the private image from the token registry', async () => {
    const name = await createPod(namespace);
    const pod = await waitRunning(namespace, name);
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: SECRET_NAME }, { name: SP_SECRET_NAME }]);
    expect(pod.status?.containerStatuses?.[0]?.imageID).toMatch(/^e2etoken\.azurecr\.io\/e2e\/busybox@sha256:/);
    // containerd asked the token endpoint with the pull secret's refresh token, and was answered.
    expect(registry.service.requests.some((r) => r.path === '/oauth2/token' && r.status === 200)).toBe(true);
  });

  test('the same pod where no secret is injected cannot pull: the secret is the only credential', async () => {
    const outside = unique('not-opted-in');
    await core.createNamespace({ body: { metadata: { name: outside } } });
    const name = await createPod(outside);
    await until(
      `pod ${outside}/${name} refused its image`,
      async () => {
        const pod = await core.readNamespacedPod({ name, namespace: outside });
        const reason = pod.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
        return reason === 'ErrImagePull' || reason === 'ImagePullBackOff';
      },
      POD_MS,
    );
  });
});

describe('the service-principal form (credentials.azure.clientSecret)', () => {
  test('its own Secret holds a refresh token bought with the client secret, and that alone pulls', async () => {
    const { username, password } = credentialOf(await readSecret(SP_SECRET_NAME));
    expect(username).toBe('00000000-0000-0000-0000-000000000000');
    expect(claimsOf(password)).toMatchObject({ iss: ACR_ISSUER, aud: registry.host, sub: registry.clientId });
    expect(password).not.toBe(await tokenOf(SECRET_NAME));
    // crane inside the namespace with a docker config holding only this credential.
    const dockerConfig = join(cluster.dir, unique('sp-docker-config'));
    mkdirSync(dockerConfig);
    writeFileSync(
      join(dockerConfig, 'config.json'),
      JSON.stringify({ auths: { [registry.host]: { username, password } } }),
    );
    const crane = join(import.meta.dirname, '..', '..', '.tools', 'bin', 'crane');
    const digest = await cluster.runInside([crane, 'digest', registry.image], {
      SSL_CERT_FILE: cluster.caPath,
      DOCKER_CONFIG: dockerConfig,
    });
    expect(digest.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('the token is refreshed before it expires', () => {
  test(`lifetime ${LIFETIME_SECONDS} s: renewed in place before exp; after exp a new pod still pulls`, async () => {
    const first = await readSecret();
    const firstToken = credentialOf(first).password;
    const firstExp = Number(claimsOf(firstToken).exp);
    expect(firstExp - Date.now() / 1000).toBeLessThanOrEqual(LIFETIME_SECONDS);
    // A later exp, not just another token: the install's --once hook writes a token of its own, which the --watch
    // Deployment then puts back to the (earlier) one it holds.
    await until(
      'the Secret gets a token expiring later',
      async () => Number(claimsOf(await tokenOf()).exp) > firstExp,
      60_000,
    );
    expect(Date.now()).toBeLessThan(firstExp * 1000);
    const second = await readSecret();
    expect(second.metadata?.uid).toBe(first.metadata?.uid);
    expect(Number(claimsOf(credentialOf(second).password).exp)).toBeGreaterThan(firstExp);

    const wait = firstExp * 1000 + 2_000 - Date.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    const name = await createPod(namespace, 'Always');
    const pod = await waitRunning(namespace, name);
    expect(pod.status?.containerStatuses?.[0]?.imageID).toMatch(/^e2etoken\.azurecr\.io\/e2e\/busybox@sha256:/);
  }, 240_000);
});

describe('an Entra outage', () => {
  test('the Secret keeps its token, the sync-secrets log says so; once Entra answers again, a new token', async () => {
    const current = await tokenOf();
    registry.service.unavailable.add('entra');
    try {
      let warning: Record<string, unknown> | undefined;
      await until(
        'the sync-secrets pod logs a failed refresh',
        async () => {
          warning = (await syncLogs()).find(
            (l) => l.msg === 'token refresh failed; keeping the current token' && l.server === registry.host,
          );
          return warning !== undefined;
        },
        60_000,
      );
      expect(warning).toMatchObject({ level: 40, server: registry.host, stage: 'entra' });
      expect(String(warning?.error)).toContain('503');
      expect(await tokenOf()).toBe(current);
    } finally {
      registry.service.unavailable.delete('entra');
    }
    await until('a new token once Entra answers again', async () => (await tokenOf()) !== current, 60_000);
  }, 180_000);
});

describe('a ServiceAccount token for the wrong audience', () => {
  test('sync-secrets --once exits 1 with one line naming the audience, and changes no Secret', async () => {
    // Long-lived tokens again, so that the --watch Deployment writes nothing while the Secret is compared.
    registry.service.refreshTokenLifetimeSeconds = 3 * 3600;
    const longLived = async (name: string): Promise<boolean> =>
      Number(claimsOf(await tokenOf(name)).exp) * 1000 > Date.now() + 3600_000;
    await until(
      'both Secrets hold long-lived tokens',
      async () => (await longLived(SECRET_NAME)) && (await longLived(SP_SECRET_NAME)),
      90_000,
    );
    const before = await Promise.all([readSecret(SECRET_NAME), readSecret(SP_SECRET_NAME)]);

    // The Deployment's own pod, as a --once run with its projected token for another audience.
    const apps = cluster.kubeConfig.makeApiClient(AppsV1Api);
    const template = (await apps.readNamespacedDeployment({ name: SYNC_NAME, namespace: RELEASE.namespace })).spec
      ?.template;
    const spec = structuredClone(template?.spec);
    const container = spec?.containers[0];
    const token = spec?.volumes?.find((v) => v.name === 'azure-identity-token')?.projected?.sources?.[0];
    if (!spec || !container?.args || !token?.serviceAccountToken) throw new Error('unexpected Deployment shape');
    token.serviceAccountToken.audience = 'api://SomethingElse';
    container.args = [...container.args.filter((a) => a !== '--watch' && !a.startsWith('--health-port')), '--once'];
    delete container.livenessProbe;
    delete container.readinessProbe;
    delete container.startupProbe;
    spec.restartPolicy = 'Never';
    const name = unique('wrong-audience');
    await core.createNamespacedPod({ namespace: RELEASE.namespace, body: { metadata: { name }, spec } });
    let pod: V1Pod | undefined;
    await until(
      `pod ${name} finished`,
      async () => {
        pod = await core.readNamespacedPod({ name, namespace: RELEASE.namespace });
        return pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded';
      },
      POD_MS,
    );
    expect(pod?.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(1);
    const lines = (await core.readNamespacedPodLog({ name, namespace: RELEASE.namespace })).trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`registries[0] (${registry.host} -> ${SECRET_NAME})`);
    expect(lines[0]).toContain('AADSTS700212');
    expect(lines[0]).toContain('audience');
    const after = await Promise.all([readSecret(SECRET_NAME), readSecret(SP_SECRET_NAME)]);
    expect(after.map((s) => s.metadata?.resourceVersion)).toEqual(before.map((s) => s.metadata?.resourceVersion));
  }, 240_000);
});

describe('teardown', () => {
  test('stop() ends the token service, its registry and listener with the rest of the cluster', async () => {
    const port = Number(new URL(registry.service.url).port);
    await cluster.stop();
    expect(netnsMembers(cluster.netns)).toEqual([]);
    const refused = await new Promise<boolean>((ok) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        ok(false);
      });
      socket.once('error', () => ok(true));
    });
    expect(refused).toBe(true);
  });
});
