// A registry entry's `credentials` as written (already checked by the schema for keys and types) turned into one of
// the two typed forms. The rules that span several keys live here, because Ajv's `oneOf` would report every branch
// instead of the one line naming the field. Pure: no file is read here (sync-secrets reads them, on every use).
import type { AzureCredentials } from '../azure/azure-credentials.ts';
import {
  type AzureCloudName,
  CLOUDS,
  cloudOfServer,
  isAzureCloudName,
  normaliseAuthorityHost,
  serverHost,
} from '../azure/clouds.ts';
import { AZURE_CLOUDS } from '../constants.ts';
import type { Credentials } from './config.ts';

/** `credentials` as the schema admits it: every key optional. */
export interface CredentialsDocument {
  readonly usernameFile?: string;
  readonly passwordFile?: string;
  readonly azure?: AzureDocument;
}

export interface AzureDocument {
  readonly tenantId: string;
  readonly clientId: string;
  readonly federatedTokenFile?: string;
  readonly clientSecretFile?: string;
  readonly cloud?: string;
  readonly authorityHost?: string;
}

export type CredentialsResult =
  | { readonly ok: true; readonly value: Credentials }
  /** `field`: the key below `credentials` the problem is about, such as `azure.cloud` (empty: `credentials`). */
  | { readonly ok: false; readonly field: string; readonly problem: string };

/** Tenant and client IDs: a GUID in the 8-4-4-4-12 form, either case (the Azure portal shows lowercase). */
export const GUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const CLOUD_LIST = AZURE_CLOUDS.join(', ');
const SUFFIXES = AZURE_CLOUDS.map((name) => `*.${CLOUDS[name].registrySuffix}`).join(', ');

const fail = (field: string, problem: string): CredentialsResult => ({ ok: false, field, problem });

/** The typed credentials of the entry for `server`, or the first problem. */
export function buildCredentials(document: CredentialsDocument, server: string): CredentialsResult {
  const { usernameFile, passwordFile, azure } = document;
  if (azure !== undefined) {
    if (usernameFile !== undefined || passwordFile !== undefined) {
      return fail('', 'has both usernameFile/passwordFile and azure: use one of the two forms');
    }
    return buildAzure(azure, server);
  }
  if (usernameFile === undefined && passwordFile === undefined) {
    return fail('', 'needs either usernameFile and passwordFile, or azure');
  }
  if (usernameFile === undefined) return fail('usernameFile', 'is required');
  if (passwordFile === undefined) return fail('passwordFile', 'is required');
  return { ok: true, value: { kind: 'files', usernameFile, passwordFile } };
}

function buildAzure(azure: AzureDocument, server: string): CredentialsResult {
  // A token is issued for one registry (the exchange names it as `service`), so it cannot serve a pattern.
  if (server.includes('*')) {
    return fail(
      'azure',
      `cannot be used with the wildcard server ${JSON.stringify(server)} (a token is issued for one registry)`,
    );
  }
  const { federatedTokenFile, clientSecretFile } = azure;
  if ((federatedTokenFile === undefined) === (clientSecretFile === undefined)) {
    return fail('azure', 'needs exactly one of federatedTokenFile and clientSecretFile');
  }
  const secretSource: AzureCredentials['secretSource'] =
    federatedTokenFile !== undefined
      ? { kind: 'federated-token', file: federatedTokenFile }
      : { kind: 'client-secret', file: clientSecretFile as string };

  const fromServer = cloudOfServer(server);
  let cloud: AzureCloudName;
  if (azure.cloud === undefined) {
    if (fromServer === undefined) {
      return fail(
        'azure.cloud',
        `is required: ${JSON.stringify(serverHost(server))} is not a ${SUFFIXES} name; ` +
          `set cloud to one of ${CLOUD_LIST}`,
      );
    }
    cloud = fromServer;
  } else {
    // The schema's enum has already refused any other name; this narrows the type.
    if (!isAzureCloudName(azure.cloud)) return fail('azure.cloud', `must be one of ${CLOUD_LIST}`);
    // An ACR name belongs to exactly one cloud: another cloud's scope and authority could only be refused.
    if (fromServer !== undefined && fromServer !== azure.cloud) {
      return fail(
        'azure.cloud',
        `${JSON.stringify(azure.cloud)} contradicts the server ${JSON.stringify(serverHost(server))}, ` +
          `which is in ${fromServer} (leave cloud out to follow the name)`,
      );
    }
    cloud = azure.cloud;
  }

  let authorityHost = CLOUDS[cloud].authorityHost;
  if (azure.authorityHost !== undefined) {
    const normalised = normaliseAuthorityHost(azure.authorityHost);
    // The problem text never echoes the URL: it may carry user information.
    if (!normalised.ok) return fail('azure.authorityHost', normalised.problem.replace(/^authorityHost /, ''));
    authorityHost = normalised.value;
  }
  return {
    ok: true,
    value: {
      kind: 'azure',
      azure: {
        tenantId: azure.tenantId,
        clientId: azure.clientId,
        secretSource,
        cloud,
        authorityHost,
        scope: CLOUDS[cloud].acrScope,
      },
    },
  };
}
