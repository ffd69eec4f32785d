// Pure: how --dry-run prints Secrets, shaped like kubectl's output so either can be piped into
// `kubectl apply -f -`: one object prints as itself, several as a v1 List; JSON is indented by four
// spaces in kubectl's field order, YAML has its keys sorted as kubectl prints them.
import { stringify as toYaml } from 'yaml';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { RegistryCredential } from './credentials.ts';
import { desiredSecrets, secretManifest } from './desired.ts';

export type OutputFormat = 'json' | 'yaml';

export function formatManifests(secrets: readonly SecretObject[], format: OutputFormat): string {
  const document: unknown =
    secrets.length === 1
      ? secrets[0]
      : { apiVersion: 'v1', items: secrets, kind: 'List', metadata: { resourceVersion: '' } };
  if (format === 'json') return `${JSON.stringify(document, null, 4)}\n`;
  return toYaml(document, { sortMapEntries: true, lineWidth: 0, indentSeq: false });
}

/** What --dry-run prints: every configured Secret in each of the namespaces. */
export function dryRunManifests(
  namespaces: readonly string[],
  credentials: readonly RegistryCredential[],
  format: OutputFormat,
): string {
  const desired = desiredSecrets(credentials);
  return formatManifests(
    namespaces.flatMap((namespace) => desired.map((secret) => secretManifest(secret, namespace))),
    format,
  );
}
