// Which Entra ID authority and which ACR token scope a registry's credentials use, per Azure cloud.
// Sources: hosts and scopes as in the Azure Go SDK's sdk/containers/azcontainerregistry/cloud_config.go and in
// Ratify's Azure auth provider (which also uses these three cloud names); the ACR audience, not ARM, as
// cloud-provider-azure #8592 moved to. Not confirmed in Microsoft Learn (see ../shared/notes/acr-tokens.md).
import { AZURE_CLOUDS } from '../constants.ts';

export type AzureCloudName = (typeof AZURE_CLOUDS)[number];

export interface AzureCloud {
  /** Entra ID authority host, HTTPS with a trailing slash (the tenant and token path are appended). */
  readonly authorityHost: string;
  /** Scope of the Entra token request: the ACR audience, never ARM (a registry may refuse ARM-audience tokens). */
  readonly acrScope: string;
  /** Registries of this cloud are named `<name>.<suffix>`. */
  readonly registrySuffix: string;
}

export const CLOUDS: Readonly<Record<AzureCloudName, AzureCloud>> = {
  AzurePublicCloud: {
    authorityHost: 'https://login.microsoftonline.com/',
    acrScope: 'https://containerregistry.azure.net/.default',
    registrySuffix: 'azurecr.io',
  },
  AzureChinaCloud: {
    authorityHost: 'https://login.chinacloudapi.cn/',
    acrScope: 'https://containerregistry.azure.cn/.default',
    registrySuffix: 'azurecr.cn',
  },
  AzureUSGovernment: {
    authorityHost: 'https://login.microsoftonline.us/',
    acrScope: 'https://containerregistry.azure.us/.default',
    registrySuffix: 'azurecr.us',
  },
};

export function isAzureCloudName(name: string): name is AzureCloudName {
  return (AZURE_CLOUDS as readonly string[]).includes(name);
}

/** The host (and port, when written) of a registry `server` as configured: any path prefix dropped. */
export function serverHost(server: string): string {
  const slash = server.indexOf('/');
  return slash === -1 ? server : server.slice(0, slash);
}

/**
 * The cloud a registry belongs to by its name's suffix, or undefined for any other host (a mirror, a proxy, a test
 * registry): guessing the public cloud there would turn a missing `cloud` into an Entra or ACR refusal that does not
 * name it, while undefined lets the configuration ask for `cloud` at start. Geo-replica and private-endpoint names
 * keep the suffix, so every real ACR name resolves.
 */
export function cloudOfServer(server: string): AzureCloudName | undefined {
  const host = serverHost(server).replace(/:\d*$/, '').toLowerCase();
  return AZURE_CLOUDS.find((name) => host.endsWith(`.${CLOUDS[name].registrySuffix}`));
}

export type AuthorityHostResult =
  | { readonly ok: true; readonly value: string }
  | { readonly ok: false; readonly problem: string };

/**
 * An `authorityHost` override as the token URL's base: HTTPS only (a client secret or assertion must never travel in
 * clear), no credentials, query or fragment, and a trailing slash so a path prefix survives appending the tenant.
 * Problems never echo the input's user information.
 */
export function normaliseAuthorityHost(input: string): AuthorityHostResult {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return { ok: false, problem: 'authorityHost is not an absolute URL' };
  }
  if (url.protocol !== 'https:') return { ok: false, problem: 'authorityHost must be an https:// URL' };
  if (url.username !== '' || url.password !== '') {
    return { ok: false, problem: 'authorityHost must not contain a user name or password' };
  }
  if (url.search !== '' || url.hash !== '' || input.includes('?') || input.includes('#')) {
    return { ok: false, problem: 'authorityHost must not have a query or fragment' };
  }
  if (url.hostname === '') return { ok: false, problem: 'authorityHost has no host' };
  const path = url.pathname.endsWith('/') ? url.pathname : `${url.pathname}/`;
  return { ok: true, value: `${url.origin}${path}` };
}
