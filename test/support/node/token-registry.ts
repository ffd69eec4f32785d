// A third private registry for the node cluster, passwordless as ACR is: the real `distribution` registry in
// token mode behind the local Entra + ACR token service (../acr-token-service.ts), all on one origin,
// https://e2etoken.azurecr.io, as pods and containerd inside the cluster's namespace see it.
//
// The token service runs in the test process (so tests can switch outages and lifetimes); the registry runs
// inside the namespace on its loopback. Inside: a listener on TOKEN_REGISTRY_IP:443 passes each connection
// through a Unix socket to the service; the service passes /v2/ requests back in through a forward to the
// registry. The service's Entra side trusts the cluster's ServiceAccount tokens: the apiserver's issuer and
// its /openid/v1/jwks, for one ServiceAccount (the federated credential's subject).
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PemPair } from '../../../certs-gen/generate.ts';
import {
  ACR_NULL_USER,
  ACR_SCOPE,
  type AcrTokenService,
  type JsonWebKeySet,
  startAcrTokenService,
} from '../acr-token-service.ts';
import { tokenModeRegistryConfig } from '../token-mode-registry.ts';

export const TOKEN_REGISTRY_HOST = 'e2etoken.azurecr.io';
/** Its address inside the cluster's namespace: pods reach it through their default route to the node. */
export const TOKEN_REGISTRY_IP = '10.250.0.4';
export const TOKEN_TENANT_ID = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const TOKEN_CLIENT_ID = '6731de76-14a6-49ae-97bc-6eba6914391e';
const LOOPBACK_REGISTRY = '127.0.0.1:5443';
const listenerScript = join(import.meta.dirname, 'netns-listener.mjs');

export interface TokenRegistryOptions {
  /** The federated credential's subject: system:serviceaccount:NAMESPACE:NAME. */
  readonly subject: string;
}

export interface TokenRegistry {
  readonly host: string;
  readonly ip: string;
  readonly tenantId: string;
  readonly clientId: string;
  /** The service principal's client secret (the clientSecret form; also how the harness pushes). */
  readonly clientSecret: string;
  /** The token service: outages (`unavailable`), refresh token lifetime, the request log. */
  readonly service: AcrTokenService;
  /** The private test image, pushed with a token from the service. */
  readonly image: string;
  /** An ACR refresh token bought with the client secret, as a pusher would. */
  refreshToken(): Promise<string>;
  stop(): Promise<void>;
}

/** What the cluster harness lends: its files, CA, namespace and apiserver. */
export interface TokenRegistryHost {
  readonly dir: string;
  readonly binDir: string;
  readonly caPath: string;
  readonly caPem: string;
  readonly serviceAccountIssuer: string;
  /** https://127.0.0.1:PORT and the admin token: where the test process reads the apiserver's JWKS. */
  readonly apiserver: { readonly url: string; readonly token: string };
  servingPair(dnsNames: string[], ipAddresses: string[]): PemPair;
  launch(name: string, argv: string[]): { readonly logPath: string; readonly exitCode?: number | string };
  runInside(argv: string[], env?: Record<string, string>): Promise<string>;
  forward(target: string): Promise<number>;
}

export async function startTokenRegistry(
  host: TokenRegistryHost,
  options: TokenRegistryOptions,
): Promise<TokenRegistry> {
  const { dir } = host;
  const clientSecret = randomBytes(18).toString('base64url');
  const registryPair = host.servingPair([TOKEN_REGISTRY_HOST], ['127.0.0.1']);
  writeFileSync(join(dir, 'token-registry.crt'), registryPair.certPem);
  writeFileSync(join(dir, 'token-registry.key'), registryPair.keyPem, { mode: 0o600 });

  const registryPort = await host.forward(LOOPBACK_REGISTRY);
  const service = await startAcrTokenService({
    tenantId: TOKEN_TENANT_ID,
    clientId: TOKEN_CLIENT_ID,
    service: TOKEN_REGISTRY_HOST,
    // Its own IP too: the harness asks it for tokens at 127.0.0.1 from the test process.
    tls: host.servingPair([TOKEN_REGISTRY_HOST], ['127.0.0.1']),
    upstream: { url: `https://127.0.0.1:${registryPort}`, ca: host.caPem },
    clientSecret,
    federated: {
      issuer: host.serviceAccountIssuer,
      subject: options.subject,
      jwks: () => apiserverJwks(host.apiserver.url, host.apiserver.token, host.caPem),
    },
  });
  const servicePort = Number(new URL(service.url).port);

  // The service's way in: a Unix socket (visible in both namespaces through the file system) piped to it.
  const socketPath = join(dir, 'token-service.sock');
  rmSync(socketPath, { force: true });
  const sockets = new Set<net.Socket>();
  const bridge = net.createServer((client) => {
    const upstream = net.connect(servicePort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.once('close', () => sockets.delete(client));
    upstream.once('close', () => sockets.delete(upstream));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((ok) => bridge.listen(socketPath, ok));
  const stop = async (): Promise<void> => {
    bridge.close();
    for (const socket of sockets) socket.destroy();
    await service.stop();
  };

  try {
    writeFileSync(join(dir, 'token-signer.crt'), service.signingCertificatePem);
    const configPath = join(dir, 'token-registry.yaml');
    writeFileSync(
      configPath,
      tokenModeRegistryConfig({
        address: LOOPBACK_REGISTRY,
        storageDir: join(dir, 'token-registry'),
        tls: { certificate: join(dir, 'token-registry.crt'), key: join(dir, 'token-registry.key') },
        // The origin pods and containerd use, not the loopback the service listens on here.
        realm: `https://${TOKEN_REGISTRY_HOST}/oauth2/token`,
        service: TOKEN_REGISTRY_HOST,
        rootCertBundle: join(dir, 'token-signer.crt'),
        httpSecret: randomBytes(16).toString('hex'),
        accessLog: true,
        deleteEnabled: true,
      }),
    );
    const registry = host.launch('token-registry', [join(host.binDir, 'registry'), 'serve', configPath]);
    const listener = host.launch('token-listener', [
      process.execPath,
      listenerScript,
      `${TOKEN_REGISTRY_IP}:443`,
      socketPath,
    ]);

    const refreshToken = async (): Promise<string> => {
      const entra = await postForm(`${service.url}/${TOKEN_TENANT_ID}/oauth2/v2.0/token`, host.caPem, {
        grant_type: 'client_credentials',
        client_id: TOKEN_CLIENT_ID,
        scope: ACR_SCOPE,
        client_secret: clientSecret,
      });
      const exchange = await postForm(`${service.url}/oauth2/exchange`, host.caPem, {
        grant_type: 'access_token',
        service: TOKEN_REGISTRY_HOST,
        tenant: TOKEN_TENANT_ID,
        access_token: String(entra.access_token),
      });
      return String(exchange.refresh_token);
    };

    // Ready when crane, inside the namespace, gets the registry's token challenge through the whole chain.
    const craneEnv = { SSL_CERT_FILE: host.caPath, DOCKER_CONFIG: join(dir, 'token-docker-config') };
    mkdirSync(craneEnv.DOCKER_CONFIG, { recursive: true });
    const crane = (...args: string[]): Promise<string> =>
      host.runInside([join(host.binDir, 'crane'), ...args], craneEnv);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await crane('catalog', TOKEN_REGISTRY_HOST);
        break;
      } catch (err) {
        if (/UNAUTHORIZED|401/.test((err as Error).message)) break;
        for (const proc of [registry, listener])
          if (proc.exitCode !== undefined) throw new Error(`${proc.logPath}: exited (${proc.exitCode})`);
        if (Date.now() > deadline) throw new Error(`the token registry did not start: ${(err as Error).message}`);
      }
      await sleep(200);
    }

    // The test image with a layer naming this registry, so a pod's imageID shows where it came from.
    await crane('auth', 'login', TOKEN_REGISTRY_HOST, '-u', ACR_NULL_USER, '-p', await refreshToken());
    const image = `${TOKEN_REGISTRY_HOST}/e2e/busybox:1`;
    const imageDir = join(dir, 'images');
    const nameDir = join(imageDir, TOKEN_REGISTRY_HOST);
    mkdirSync(join(nameDir, 'etc'), { recursive: true });
    writeFileSync(join(nameDir, 'etc', 'registry'), `${TOKEN_REGISTRY_HOST}\n`);
    await host.runInside(['tar', '-C', nameDir, '-cf', `${nameDir}.tar`, 'etc']);
    const busybox = join(imageDir, 'busybox.tar');
    await crane('append', '--new_layer', busybox, '--new_layer', `${nameDir}.tar`, '--new_tag', image);
    // mutate pushes by digest unless told the tag; os/arch must be set for containerd's platform match.
    await crane(
      'mutate',
      image,
      '--tag',
      image,
      '--set-platform',
      'linux/amd64',
      '--entrypoint',
      '/bin/sleep',
      '--cmd',
      '3600',
    );
    rmSync(craneEnv.DOCKER_CONFIG, { recursive: true, force: true });

    return {
      host: TOKEN_REGISTRY_HOST,
      ip: TOKEN_REGISTRY_IP,
      tenantId: TOKEN_TENANT_ID,
      clientId: TOKEN_CLIENT_ID,
      clientSecret,
      service,
      image,
      refreshToken,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The apiserver's ServiceAccount token keys, read with the admin token (what an OIDC discovery client sees). */
function apiserverJwks(url: string, token: string, ca: string): Promise<JsonWebKeySet> {
  return new Promise((ok, fail) => {
    const req = request(`${url}/openid/v1/jwks`, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        if (res.statusCode !== 200) fail(new Error(`/openid/v1/jwks: HTTP ${res.statusCode}`));
        else ok(JSON.parse(text) as JsonWebKeySet);
      });
    });
    req.on('error', fail);
    req.end();
  });
}

function postForm(url: string, ca: string, form: Record<string, string>): Promise<Record<string, unknown>> {
  const body = new URLSearchParams(form).toString();
  return new Promise((ok, fail) => {
    const req = request(
      url,
      { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () =>
          res.statusCode === 200
            ? ok(JSON.parse(text) as Record<string, unknown>)
            : fail(new Error(`POST ${new URL(url).pathname}: HTTP ${res.statusCode} ${text.slice(0, 200)}`)),
        );
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}
