// The only code that turns the configuration file into a typed Config. One JSON schema decides
// what is valid; its `x-hint` notes become the one line an operator reads when the process refuses
// to start, naming the file and the field.
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import type { AzureCredentials } from '../azure/azure-credentials.ts';
import { AZURE_CLOUDS, INJECT_ENABLED, INJECT_LABEL } from '../constants.ts';
import { DNS_SUBDOMAIN_BODY, DNS_SUBDOMAIN_MAX_LENGTH, DNS_SUBDOMAIN_PATTERN } from '../names.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { compileServerPattern, SERVER_PATTERN_SOURCE } from '../registry/server-pattern.ts';
import { buildCredentials, CLOUD_LIST, type CredentialsDocument, GUID_PATTERN } from './registry-credentials.ts';

/** A user name and password read from files: a service principal's or an ACR token's. */
export interface FileCredentials {
  readonly kind: 'files';
  /** File holding the username: a service principal's application (client) ID or an ACR token name. */
  readonly usernameFile: string;
  /** File holding the password: the client secret or one of the token's passwords. */
  readonly passwordFile: string;
}

/** Entra ID client credentials that sync-secrets exchanges for an ACR refresh token. */
export interface AzureRegistryCredentials {
  readonly kind: 'azure';
  readonly azure: AzureCredentials;
}

export type Credentials = FileCredentials | AzureRegistryCredentials;

export interface RegistryEntry {
  readonly server: string;
  readonly secretName: string;
  /** Read by sync-secrets only; serve ignores it. */
  readonly credentials?: Credentials;
}

/** The namespace label that opts a namespace in; must equal the chart's webhook namespaceSelector. */
export interface OptIn {
  readonly label: string;
  readonly value: string;
}

export interface Config {
  readonly registries: readonly RegistryEntry[];
  /** The registries compiled for matching, in configuration order. */
  readonly rules: readonly RegistryRule[];
  /** Read by sync-secrets: which namespaces get pull secrets. Default `acr-pull-webhook/inject: enabled`. */
  readonly optIn: OptIn;
  /** Read by sync-secrets: delete its own Secrets from namespaces that are no longer opted in. Default false. */
  readonly prune: boolean;
  /**
   * Read by serve: DNS suffixes (lowercase, no leading dot) whose hosts are Azure container registries too, beyond
   * azurecr.io, azurecr.cn and azurecr.us. Default none.
   */
  readonly acrHostSuffixes: readonly string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

// Kubernetes object names (Secrets included) are RFC 1123 subdomains.
const SECRET_NAME_PATTERN = DNS_SUBDOMAIN_PATTERN;
// Label keys are an optional DNS-subdomain prefix and '/', then a name of at most 63 characters;
// values are at most 63 characters of the same alphabet (the empty value is legal but is refused
// here: an opt-in that any `key=` label satisfies is a trap).
const LABEL_NAME = '[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?';
const LABEL_KEY_PATTERN = `^(${DNS_SUBDOMAIN_BODY}/)?${LABEL_NAME}$`;
const LABEL_VALUE_PATTERN = `^${LABEL_NAME}$`;
const GUID_HINT = 'must be a GUID (8-4-4-4-12 hexadecimal digits)';
const PATH_HINT = 'must be a file path';

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['registries'],
  properties: {
    registries: {
      type: 'array',
      minItems: 1,
      'x-hint': 'must list at least one registry',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['server', 'secretName'],
        properties: {
          server: {
            type: 'string',
            maxLength: 512,
            pattern: SERVER_PATTERN_SOURCE,
            'x-hint':
              'must be host[:port][/path-prefix] in lowercase, without a scheme; ' +
              "'*' is allowed only inside host labels",
          },
          secretName: {
            type: 'string',
            maxLength: 253,
            pattern: SECRET_NAME_PATTERN,
            'x-hint': 'must be a valid Secret name (lowercase RFC 1123 subdomain, at most 253 characters)',
          },
          // Either form's keys, all optional: which combinations are valid is checked in registry-credentials.ts.
          credentials: {
            type: 'object',
            additionalProperties: false,
            properties: {
              usernameFile: { type: 'string', minLength: 1 },
              passwordFile: { type: 'string', minLength: 1 },
              azure: {
                type: 'object',
                additionalProperties: false,
                required: ['tenantId', 'clientId'],
                properties: {
                  tenantId: { type: 'string', pattern: GUID_PATTERN, 'x-hint': GUID_HINT },
                  clientId: { type: 'string', pattern: GUID_PATTERN, 'x-hint': GUID_HINT },
                  federatedTokenFile: { type: 'string', minLength: 1, 'x-hint': PATH_HINT },
                  clientSecretFile: { type: 'string', minLength: 1, 'x-hint': PATH_HINT },
                  cloud: { type: 'string', enum: AZURE_CLOUDS, 'x-hint': `must be one of ${CLOUD_LIST}` },
                  authorityHost: { type: 'string' },
                },
              },
            },
          },
        },
      },
    },
    optIn: {
      type: 'object',
      additionalProperties: false,
      properties: {
        label: {
          type: 'string',
          maxLength: 317,
          pattern: LABEL_KEY_PATTERN,
          'x-hint':
            "must be a valid label key ([prefix/]name, name at most 63 characters of alphanumerics, '-', '_', '.')",
        },
        value: {
          type: 'string',
          pattern: LABEL_VALUE_PATTERN,
          'x-hint':
            'must be a non-empty label value ' +
            "(at most 63 characters of alphanumerics, '-', '_', '.', alphanumeric at both ends)",
        },
      },
    },
    prune: { type: 'boolean' },
    acrHostSuffixes: {
      type: 'array',
      items: {
        type: 'string',
        maxLength: DNS_SUBDOMAIN_MAX_LENGTH,
        pattern: DNS_SUBDOMAIN_PATTERN,
        'x-hint': 'must be a lowercase DNS name without a leading dot or wildcard (such as "registry.example.com")',
      },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false, verbose: true, strict: true });
ajv.addVocabulary(['x-hint']);
const validate = ajv.compile(CONFIG_SCHEMA);

/** `/registries/1/secretName` -> `registries[1].secretName` */
function fieldPath(instancePath: string, child?: string): string {
  const parts = instancePath.split('/').slice(1);
  if (child !== undefined) parts.push(child);
  return parts.reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), '');
}

function describe(error: ErrorObject): string {
  const hint = (error.parentSchema as { 'x-hint'?: string } | undefined)?.['x-hint'];
  switch (error.keyword) {
    case 'required':
      return `${fieldPath(error.instancePath, String(error.params['missingProperty']))}: is required`;
    case 'additionalProperties':
      return `${fieldPath(error.instancePath, String(error.params['additionalProperty']))}: unknown key`;
    case 'type':
      return `${fieldPath(error.instancePath) || '(top level)'}: must be ${String(error.params['type'])}`;
    default: {
      const value = typeof error.data === 'string' ? ` ${JSON.stringify(error.data)}` : '';
      return `${fieldPath(error.instancePath)}:${value} ${hint ?? error.message ?? 'is invalid'}`;
    }
  }
}

/** Validates an already-parsed document. `source` names the file in error messages. */
export function buildConfig(document: unknown, source: string): Config {
  if (!validate(document)) {
    const first = validate.errors?.[0];
    throw new ConfigError(`config ${source}: ${first ? describe(first) : 'is invalid'}`);
  }
  const registries = (document.registries as readonly RegistryDocument[]).map((entry, index) =>
    registryEntry(entry, `${source}: registries[${index}]`),
  );
  const optInDocument = (document as { optIn?: { label?: string; value?: string } }).optIn;
  const optIn = { label: optInDocument?.label ?? INJECT_LABEL, value: optInDocument?.value ?? INJECT_ENABLED };
  // The pattern cannot also bound the prefix length (a DNS subdomain, at most 253 characters).
  if (optIn.label.includes('/') && optIn.label.indexOf('/') > 253) {
    throw new ConfigError(
      `config ${source}: optIn.label: ${JSON.stringify(optIn.label)} has a prefix longer than 253 characters`,
    );
  }
  const seen = new Map<string, number>();
  const rules = registries.map((entry, index) => {
    const key = `${entry.secretName}\u0000${entry.server}`;
    const earlier = seen.get(key);
    if (earlier !== undefined) {
      throw new ConfigError(
        `config ${source}: registries[${index}]: repeats registries[${earlier}] (same server and secretName)`,
      );
    }
    seen.set(key, index);
    const pattern = compileServerPattern(entry.server);
    // The schema already checked the syntax; this only guards the two from drifting apart.
    if (pattern === undefined) throw new ConfigError(`config ${source}: registries[${index}].server: is invalid`);
    return { pattern, secretName: entry.secretName };
  });
  const { prune, acrHostSuffixes } = document as { prune?: boolean; acrHostSuffixes?: readonly string[] };
  return { registries, rules, optIn, prune: prune ?? false, acrHostSuffixes: acrHostSuffixes ?? [] };
}

interface RegistryDocument {
  readonly server: string;
  readonly secretName: string;
  readonly credentials?: CredentialsDocument;
}

/** The typed entry; `field` is `FILE: registries[i]` for messages. */
function registryEntry(entry: RegistryDocument, field: string): RegistryEntry {
  const { server, secretName } = entry;
  if (entry.credentials === undefined) return { server, secretName };
  const credentials = buildCredentials(entry.credentials, server);
  if (!credentials.ok) {
    const path = credentials.field === '' ? 'credentials' : `credentials.${credentials.field}`;
    throw new ConfigError(`config ${field}.${path}: ${credentials.problem}`);
  }
  return { server, secretName, credentials: credentials.value };
}

/** Parses YAML or JSON text (JSON is YAML) and validates it. */
export function parseConfig(text: string, source: string): Config {
  let document: unknown;
  try {
    document = parseYaml(text, { prettyErrors: false });
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(`config ${source}: not valid YAML or JSON: ${message}`);
  }
  return buildConfig(document ?? null, source);
}

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`config ${path}: cannot be read (${code})`);
  }
  return parseConfig(text, path);
}
