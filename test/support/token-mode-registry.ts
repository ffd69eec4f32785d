// The real `distribution` registry in token mode behind the local Entra + ACR token service (./acr-token-service.ts),
// as ACR serves it: one origin for /v2/ and /oauth2/ (the service passes /v2/ through to the registry's own port),
// tokens signed by the service's certificate. Shared by the integration, e2e and node tiers.
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as toYaml } from 'yaml';
import type { PemPair } from '../../certs-gen/generate.ts';
import { ACR_ISSUER } from './acr-token-service.ts';

export interface TokenModeRegistryConfig {
  /** host:port the registry listens on (the service's upstream). */
  readonly address: string;
  readonly storageDir: string;
  readonly tls: { readonly certificate: string; readonly key: string };
  /** The token service's realm and the `service` its tokens name. */
  readonly realm: string;
  readonly service: string;
  /** A file holding the certificate that signs the tokens (the service's signingCertificatePem). */
  readonly rootCertBundle: string;
  /** distribution's HTTP secret, which signs upload state; any value works for a single registry. */
  readonly httpSecret: string;
  /** Access log and blob deletion, for the node tier's pull diagnostics and clean-up. */
  readonly accessLog?: boolean;
  readonly deleteEnabled?: boolean;
}

/** distribution's configuration (configuration.Configuration, version 0.1) in token mode. */
export function tokenModeRegistryConfig(config: TokenModeRegistryConfig): string {
  return toYaml({
    version: 0.1,
    log: { level: 'info', ...(config.accessLog ? { accesslog: { disabled: false } } : {}) },
    storage: {
      filesystem: { rootdirectory: config.storageDir },
      ...(config.deleteEnabled ? { delete: { enabled: true } } : {}),
    },
    http: {
      addr: config.address,
      // Upload locations relative, so they stay on the origin the client used (the token service's).
      relativeurls: true,
      secret: config.httpSecret,
      tls: config.tls,
    },
    // registry/auth/token/accesscontroller.go: the realm and service its challenge names, the issuer it requires,
    // and the certificate the token's x5c must chain to.
    auth: {
      token: {
        realm: config.realm,
        service: config.service,
        issuer: ACR_ISSUER,
        rootcertbundle: config.rootCertBundle,
      },
    },
  });
}

export interface TokenModeRegistryOptions {
  /** The `registry` binary (tools/build.sh node). */
  readonly binary: string;
  /** Where its configuration, certificates, storage and log go. */
  readonly dir: string;
  /** host:port to listen on: the `upstream` the token service was started with. */
  readonly address: string;
  /** The token service in front: its host is the origin clients use. */
  readonly service: { readonly host: string; readonly realm: string; readonly signingCertificatePem: string };
  /** The registry's serving pair and the CA that signs it (trusted by the wait for readiness). */
  readonly serving: PemPair;
  readonly caPem: string;
  readonly httpSecret?: string;
}

/** GET https://HOST/v2/'s status, trusting `caPem` only. */
function v2Status(host: string, caPem: string): Promise<number> {
  return new Promise((ok, fail) => {
    request(`https://${host}/v2/`, { ca: caPem, agent: false }, (res) => {
      res.resume();
      ok(res.statusCode ?? 0);
    })
      .on('error', fail)
      .end();
  });
}

/** Starts the registry; resolves once the service's origin answers /v2/ with the registry's 401 challenge. */
export async function startTokenModeRegistry(options: TokenModeRegistryOptions): Promise<ChildProcess> {
  const { dir, service } = options;
  const file = (name: string): string => join(dir, name);
  writeFileSync(file('tls.crt'), options.serving.certPem);
  writeFileSync(file('tls.key'), options.serving.keyPem, { mode: 0o600 });
  writeFileSync(file('token-signer.crt'), service.signingCertificatePem);
  writeFileSync(
    file('registry.yaml'),
    tokenModeRegistryConfig({
      address: options.address,
      storageDir: file('storage'),
      tls: { certificate: file('tls.crt'), key: file('tls.key') },
      realm: service.realm,
      service: service.host,
      rootCertBundle: file('token-signer.crt'),
      httpSecret: options.httpSecret ?? 'not-shared-with-anyone',
    }),
  );
  const log = openSync(file('registry.log'), 'a');
  const registry = spawn(options.binary, ['serve', file('registry.yaml')], { stdio: ['ignore', log, log] });
  const deadline = Date.now() + 20_000;
  while ((await v2Status(service.host, options.caPem).catch(() => 0)) !== 401) {
    if (registry.exitCode !== null || Date.now() > deadline) {
      registry.kill();
      throw new Error(`registry did not start:\n${readFileSync(file('registry.log'), 'utf8')}`);
    }
    await sleep(100);
  }
  return registry;
}
