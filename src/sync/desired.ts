// Pure: what every opted-in namespace should hold. One Secret per configured `secretName`, holding
// one `auths` entry per registry entry that names it, so two registries never overwrite each other
// and the kubelet offers each credential for exactly the images the webhook matched.
import { createHash } from 'node:crypto';
import {
  CONTENT_HASH_ANNOTATION,
  DOCKERCONFIGJSON_KEY,
  DOCKERCONFIGJSON_TYPE,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
} from '../constants.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { RegistryCredential } from './credentials.ts';
import { dockerConfigJson } from './docker-config.ts';

export interface DesiredSecret {
  readonly name: string;
  /** The `.dockerconfigjson` text (not base64). */
  readonly dockerConfigJson: string;
  /** `sha256:<hex>` of the `.dockerconfigjson` bytes; the value of {@link CONTENT_HASH_ANNOTATION}. */
  readonly contentHash: string;
  /** The `auths` keys, in configuration order (for logs: servers are not secret). */
  readonly servers: readonly string[];
}

export function contentHash(dockerConfigJsonText: string): string {
  return `sha256:${createHash('sha256').update(dockerConfigJsonText, 'utf8').digest('hex')}`;
}

/** Groups credentials by secret name, in the order the names first appear in the configuration. */
export function desiredSecrets(credentials: readonly RegistryCredential[]): readonly DesiredSecret[] {
  const bySecret = new Map<string, RegistryCredential[]>();
  for (const credential of credentials) {
    const group = bySecret.get(credential.secretName);
    if (group === undefined) bySecret.set(credential.secretName, [credential]);
    else group.push(credential);
  }
  return [...bySecret].map(([name, group]) => {
    const text = dockerConfigJson(group);
    return {
      name,
      dockerConfigJson: text,
      contentHash: contentHash(text),
      servers: group.map((entry) => entry.server),
    };
  });
}

/**
 * The manifest to create, in kubectl's field order (kind, apiVersion, metadata, data, type).
 * `namespace` is left out when undefined, as kubectl does without `-n`.
 */
export function secretManifest(desired: DesiredSecret, namespace?: string): SecretObject {
  return {
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: {
      name: desired.name,
      ...(namespace === undefined ? {} : { namespace }),
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      annotations: { [CONTENT_HASH_ANNOTATION]: desired.contentHash },
    },
    data: { [DOCKERCONFIGJSON_KEY]: Buffer.from(desired.dockerConfigJson, 'utf8').toString('base64') },
    type: DOCKERCONFIGJSON_TYPE,
  };
}
