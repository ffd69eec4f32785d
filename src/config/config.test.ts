import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp-dir.ts';
import { ConfigError, loadConfig, parseConfig } from './config.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '0d1c6ba2-8c4e-4b8f-9d0a-5f3e2b1a4c6d';
/** A registry entry with these credentials, as one YAML line. */
const withCredentials = (credentials: string, server = 'a.azurecr.io') =>
  `registries: [{server: "${server}", secretName: s, credentials: ${credentials}}]`;
/** An azure block: tenant, client and a federated token file, then `extra` keys. */
const azure = (extra = '', ids = `tenantId: ${TENANT}, clientId: ${CLIENT}`) =>
  `{azure: {${ids}, federatedTokenFile: /t${extra}}}`;

describe('a valid configuration', () => {
  test('YAML gives the registries and compiled rules in file order', () => {
    const config = parseConfig(
      'registries:\n' +
        '  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
        '  - server: "*.azurecr.cn"\n    secretName: acr-china\n',
      'c.yaml',
    );
    expect(config.registries).toEqual([
      { server: 'myregistry.azurecr.io', secretName: 'acr-myregistry' },
      { server: '*.azurecr.cn', secretName: 'acr-china' },
    ]);
    expect(config.rules.map((rule) => [rule.pattern.server, rule.secretName])).toEqual([
      ['myregistry.azurecr.io', 'acr-myregistry'],
      ['*.azurecr.cn', 'acr-china'],
    ]);
  });

  test('JSON is accepted too, with credentials for sync-secrets', () => {
    const config = parseConfig(
      JSON.stringify({
        registries: [
          {
            server: 'a.azurecr.io:443/team',
            secretName: 'a.b-c',
            credentials: { usernameFile: '/u', passwordFile: '/p' },
          },
        ],
      }),
      'c.json',
    );
    expect(config.registries[0]?.credentials).toEqual({ kind: 'files', usernameFile: '/u', passwordFile: '/p' });
  });

  test('azure credentials with a federated token take the cloud, authority and ACR scope from the server name', () => {
    const config = parseConfig(
      'registries:\n' +
        '  - server: myregistry.azurecr.io\n    secretName: s\n    credentials:\n      azure:\n' +
        `        tenantId: ${TENANT}\n        clientId: ${CLIENT}\n` +
        '        federatedTokenFile: /var/run/secrets/azure/tokens/azure-identity-token\n',
      'c.yaml',
    );
    expect(config.registries[0]?.credentials).toEqual({
      kind: 'azure',
      azure: {
        tenantId: TENANT,
        clientId: CLIENT,
        secretSource: { kind: 'federated-token', file: '/var/run/secrets/azure/tokens/azure-identity-token' },
        cloud: 'AzurePublicCloud',
        authorityHost: 'https://login.microsoftonline.com/',
        scope: 'https://containerregistry.azure.net/.default',
      },
    });
  });

  test.each([
    {
      server: 'myregistry.azurecr.cn',
      given: 'nothing else',
      azure: {},
      cloud: 'AzureChinaCloud',
      authorityHost: 'https://login.chinacloudapi.cn/',
      scope: 'https://containerregistry.azure.cn/.default',
    },
    {
      server: 'myregistry.azurecr.us:443/team/',
      given: 'a port and a path prefix',
      azure: {},
      cloud: 'AzureUSGovernment',
      authorityHost: 'https://login.microsoftonline.us/',
      scope: 'https://containerregistry.azure.us/.default',
    },
    {
      server: 'myregistry.westeurope.data.azurecr.io',
      given: 'the cloud its name implies',
      azure: { cloud: 'AzurePublicCloud' },
      cloud: 'AzurePublicCloud',
      authorityHost: 'https://login.microsoftonline.com/',
      scope: 'https://containerregistry.azure.net/.default',
    },
    {
      server: 'registry.example.com:5000/mirror',
      given: 'a cloud (not an ACR name)',
      azure: { cloud: 'AzureChinaCloud' },
      cloud: 'AzureChinaCloud',
      authorityHost: 'https://login.chinacloudapi.cn/',
      scope: 'https://containerregistry.azure.cn/.default',
    },
    {
      server: '127.0.0.1:5000',
      given: 'a cloud and an authority host override',
      azure: { cloud: 'AzurePublicCloud', authorityHost: 'https://127.0.0.1:8443/entra' },
      cloud: 'AzurePublicCloud',
      authorityHost: 'https://127.0.0.1:8443/entra/',
      scope: 'https://containerregistry.azure.net/.default',
    },
  ])(
    'a client secret for $server given $given authenticates in $cloud at $authorityHost',
    ({ server, azure, given: _, ...want }) => {
      const config = parseConfig(
        JSON.stringify({
          registries: [
            {
              server,
              secretName: 's',
              credentials: { azure: { tenantId: TENANT, clientId: CLIENT, clientSecretFile: '/secret', ...azure } },
            },
          ],
        }),
        'c.json',
      );
      expect(config.registries[0]?.credentials).toEqual({
        kind: 'azure',
        azure: {
          tenantId: TENANT,
          clientId: CLIENT,
          secretSource: { kind: 'client-secret', file: '/secret' },
          ...want,
        },
      });
    },
  );

  test('tenant and client IDs may be uppercase GUIDs and are kept as written', () => {
    const config = parseConfig(
      JSON.stringify({
        registries: [
          {
            server: 'a.azurecr.io',
            secretName: 's',
            credentials: {
              azure: { tenantId: TENANT.toUpperCase(), clientId: CLIENT.toUpperCase(), clientSecretFile: '/s' },
            },
          },
        ],
      }),
      'c.json',
    );
    const credentials = config.registries[0]?.credentials;
    expect(credentials?.kind === 'azure' && [credentials.azure.tenantId, credentials.azure.clientId]).toEqual([
      TENANT.toUpperCase(),
      CLIENT.toUpperCase(),
    ]);
  });

  test('no extra ACR host suffixes unless listed', () => {
    expect(parseConfig('registries: [{server: a.io, secretName: s}]', 'c.yaml').acrHostSuffixes).toEqual([]);
    const config = parseConfig(
      'registries: [{server: a.io, secretName: s}]\nacrHostSuffixes: [acr.example.com, registry.internal]',
      'c.yaml',
    );
    expect(config.acrHostSuffixes).toEqual(['acr.example.com', 'registry.internal']);
  });

  test('sync-secrets opts namespaces in with acr-pull-webhook/inject=enabled and does not prune unless told', () => {
    const config = parseConfig('registries: [{server: a.io, secretName: s}]', 'c.yaml');
    expect(config.optIn).toEqual({ label: 'acr-pull-webhook/inject', value: 'enabled' });
    expect(config.prune).toBe(false);
  });

  test('the opt-in label, its value and pruning can be set', () => {
    const config = parseConfig(
      'registries: [{server: a.io, secretName: s}]\n' +
        'optIn: {label: example.com/pull-secrets, value: "yes_1.0"}\nprune: true',
      'c.yaml',
    );
    expect(config.optIn).toEqual({ label: 'example.com/pull-secrets', value: 'yes_1.0' });
    expect(config.prune).toBe(true);
  });

  test('an opt-in that sets only the value keeps the default label', () => {
    const config = parseConfig('registries: [{server: a.io, secretName: s}]\noptIn: {value: "on"}', 'c.yaml');
    expect(config.optIn).toEqual({ label: 'acr-pull-webhook/inject', value: 'on' });
  });
});

describe('an invalid configuration stops the process with one line naming the file and the field', () => {
  test.each([
    { why: 'the file is empty', text: '', message: 'config c.yaml: (top level): must be object' },
    { why: 'registries is missing', text: 'other: 1', message: 'config c.yaml: registries: is required' },
    {
      why: 'an unknown top-level key',
      text: 'registries: [{server: a.io, secretName: s}]\nregistry: x',
      message: 'config c.yaml: registry: unknown key',
    },
    {
      why: 'an unknown entry key',
      text: 'registries: [{server: a.io, secretName: s, secret: x}]',
      message: 'config c.yaml: registries[0].secret: unknown key',
    },
    {
      why: 'the list is empty',
      text: 'registries: []',
      message: 'config c.yaml: registries: must list at least one registry',
    },
    { why: 'registries is not a list', text: 'registries: a.io', message: 'config c.yaml: registries: must be array' },
    {
      why: 'an entry lacks secretName',
      text: 'registries: [{server: a.io}]',
      message: 'config c.yaml: registries[0].secretName: is required',
    },
    {
      why: 'a secret name is not a valid Secret name',
      text: 'registries: [{server: a.io, secretName: s}, {server: b.io, secretName: ACR_B}]',
      message:
        'config c.yaml: registries[1].secretName: "ACR_B" must be a valid Secret name ' +
        '(lowercase RFC 1123 subdomain, at most 253 characters)',
    },
    {
      why: 'a server has a scheme',
      text: 'registries: [{server: "https://a.azurecr.io", secretName: s}]',
      message:
        'config c.yaml: registries[0].server: "https://a.azurecr.io" must be host[:port][/path-prefix] in lowercase, ' +
        "without a scheme; '*' is allowed only inside host labels",
    },
    {
      why: 'a server is a bad pattern',
      text: 'registries: [{server: "a..azurecr.io", secretName: s}]',
      message:
        'config c.yaml: registries[0].server: "a..azurecr.io" must be host[:port][/path-prefix] in lowercase, ' +
        "without a scheme; '*' is allowed only inside host labels",
    },
    {
      why: 'a server is a number',
      text: 'registries: [{server: 42, secretName: s}]',
      message: 'config c.yaml: registries[0].server: must be string',
    },
    {
      why: 'credentials lack the password file',
      text: 'registries: [{server: a.io, secretName: s, credentials: {usernameFile: /u}}]',
      message: 'config c.yaml: registries[0].credentials.passwordFile: is required',
    },
    {
      why: 'credentials lack the username file',
      text: withCredentials('{passwordFile: /p}'),
      message: 'config c.yaml: registries[0].credentials.usernameFile: is required',
    },
    {
      why: 'credentials name neither form',
      text: withCredentials('{}'),
      message: 'config c.yaml: registries[0].credentials: needs either usernameFile and passwordFile, or azure',
    },
    {
      why: 'credentials mix both forms',
      text: withCredentials(
        `{usernameFile: /u, azure: {tenantId: ${TENANT}, clientId: ${CLIENT}, clientSecretFile: /s}}`,
      ),
      message:
        'config c.yaml: registries[0].credentials: has both usernameFile/passwordFile and azure: ' +
        'use one of the two forms',
    },
    {
      why: 'azure credentials have neither a federated token nor a client secret',
      text: withCredentials(`{azure: {tenantId: ${TENANT}, clientId: ${CLIENT}}}`),
      message:
        'config c.yaml: registries[0].credentials.azure: needs exactly one of federatedTokenFile and clientSecretFile',
    },
    {
      why: 'azure credentials have both a federated token and a client secret',
      text: withCredentials(azure(', clientSecretFile: /s')),
      message:
        'config c.yaml: registries[0].credentials.azure: needs exactly one of federatedTokenFile and clientSecretFile',
    },
    {
      why: 'the tenant ID is not a GUID',
      text: withCredentials(azure('', `tenantId: abc, clientId: ${CLIENT}`)),
      message:
        'config c.yaml: registries[0].credentials.azure.tenantId: "abc" must be a GUID (8-4-4-4-12 hexadecimal digits)',
    },
    {
      why: 'the client ID is a GUID in braces',
      text: withCredentials(azure('', `tenantId: ${TENANT}, clientId: "{${CLIENT}}"`)),
      message:
        `config c.yaml: registries[0].credentials.azure.clientId: "{${CLIENT}}" ` +
        'must be a GUID (8-4-4-4-12 hexadecimal digits)',
    },
    {
      why: 'the client ID is missing',
      text: withCredentials(`{azure: {tenantId: ${TENANT}, federatedTokenFile: /t}}`),
      message: 'config c.yaml: registries[0].credentials.azure.clientId: is required',
    },
    {
      why: 'the federated token file is empty',
      text: withCredentials(`{azure: {tenantId: ${TENANT}, clientId: ${CLIENT}, federatedTokenFile: ""}}`),
      message: 'config c.yaml: registries[0].credentials.azure.federatedTokenFile: "" must be a file path',
    },
    {
      why: 'the cloud is unknown',
      text: withCredentials(azure(', cloud: AzureGermanCloud')),
      message:
        'config c.yaml: registries[0].credentials.azure.cloud: "AzureGermanCloud" ' +
        'must be one of AzurePublicCloud, AzureChinaCloud, AzureUSGovernment',
    },
    {
      why: 'the cloud is missing for a server that is not an ACR name',
      text: withCredentials(azure(), 'registry.example.com:5000/team'),
      message:
        'config c.yaml: registries[0].credentials.azure.cloud: is required: "registry.example.com:5000" ' +
        'is not a *.azurecr.io, *.azurecr.cn, *.azurecr.us name; ' +
        'set cloud to one of AzurePublicCloud, AzureChinaCloud, AzureUSGovernment',
    },
    {
      why: "the cloud contradicts the server's suffix",
      text: withCredentials(azure(', cloud: AzureChinaCloud'), 'a.azurecr.io'),
      message:
        'config c.yaml: registries[0].credentials.azure.cloud: "AzureChinaCloud" contradicts the server ' +
        '"a.azurecr.io", which is in AzurePublicCloud (leave cloud out to follow the name)',
    },
    {
      why: 'the authority host is plain HTTP',
      text: withCredentials(azure(', authorityHost: "http://login.example.com/"')),
      message: 'config c.yaml: registries[0].credentials.azure.authorityHost: must be an https:// URL',
    },
    {
      why: 'the authority host carries a password',
      text: withCredentials(azure(', authorityHost: "https://user:hunter2@login.example.com/"')),
      message: 'config c.yaml: registries[0].credentials.azure.authorityHost: must not contain a user name or password',
    },
    {
      why: 'the authority host is not a URL',
      text: withCredentials(azure(', authorityHost: login.microsoftonline.com')),
      message: 'config c.yaml: registries[0].credentials.azure.authorityHost: is not an absolute URL',
    },
    {
      why: 'the authority host has a query',
      text: withCredentials(azure(', authorityHost: "https://login.example.com/?x=1"')),
      message: 'config c.yaml: registries[0].credentials.azure.authorityHost: must not have a query or fragment',
    },
    {
      why: 'azure credentials are given for a wildcard server',
      text: withCredentials(azure(), '*.azurecr.io'),
      message:
        'config c.yaml: registries[0].credentials.azure: cannot be used with the wildcard server "*.azurecr.io" ' +
        '(a token is issued for one registry)',
    },
    {
      why: 'azure credentials have an unknown key',
      text: withCredentials(azure(', subscriptionId: x')),
      message: 'config c.yaml: registries[0].credentials.azure.subscriptionId: unknown key',
    },
    {
      why: 'an ACR host suffix starts with a dot',
      text: 'registries: [{server: a.io, secretName: s}]\nacrHostSuffixes: [acr.example.com, .registry.internal]',
      message:
        'config c.yaml: acrHostSuffixes[1]: ".registry.internal" must be a lowercase DNS name without a leading dot ' +
        'or wildcard (such as "registry.example.com")',
    },
    {
      why: 'an ACR host suffix is a wildcard',
      text: 'registries: [{server: a.io, secretName: s}]\nacrHostSuffixes: ["*.example.com"]',
      message:
        'config c.yaml: acrHostSuffixes[0]: "*.example.com" must be a lowercase DNS name without a leading dot ' +
        'or wildcard (such as "registry.example.com")',
    },
    {
      why: 'an entry repeats another',
      text: 'registries: [{server: a.io, secretName: s}, {server: b.io, secretName: t}, {server: a.io, secretName: s}]',
      message: 'config c.yaml: registries[2]: repeats registries[0] (same server and secretName)',
    },
    {
      why: 'the opt-in label is not a label key',
      text: 'registries: [{server: a.io, secretName: s}]\noptIn: {label: "a b"}',
      message:
        'config c.yaml: optIn.label: "a b" must be a valid label key ' +
        "([prefix/]name, name at most 63 characters of alphanumerics, '-', '_', '.')",
    },
    {
      why: 'the opt-in label name is longer than 63 characters',
      text: `registries: [{server: a.io, secretName: s}]\noptIn: {label: "x/${'n'.repeat(64)}"}`,
      message:
        `config c.yaml: optIn.label: "x/${'n'.repeat(64)}" must be a valid label key ` +
        "([prefix/]name, name at most 63 characters of alphanumerics, '-', '_', '.')",
    },
    {
      why: 'the opt-in label prefix is longer than 253 characters',
      text: `registries: [{server: a.io, secretName: s}]\noptIn: {label: "${'p'.repeat(254)}/n"}`,
      message: `config c.yaml: optIn.label: "${'p'.repeat(254)}/n" has a prefix longer than 253 characters`,
    },
    {
      why: 'the opt-in value is empty',
      text: 'registries: [{server: a.io, secretName: s}]\noptIn: {value: ""}',
      message:
        'config c.yaml: optIn.value: "" must be a non-empty label value ' +
        "(at most 63 characters of alphanumerics, '-', '_', '.', alphanumeric at both ends)",
    },
    {
      why: 'the opt-in has an unknown key',
      text: 'registries: [{server: a.io, secretName: s}]\noptIn: {matchLabels: {a: b}}',
      message: 'config c.yaml: optIn.matchLabels: unknown key',
    },
    {
      why: 'prune is not a boolean',
      text: 'registries: [{server: a.io, secretName: s}]\nprune: "yes"',
      message: 'config c.yaml: prune: must be boolean',
    },
    { why: 'the YAML is broken', text: 'registries: [', message: /^config c\.yaml: not valid YAML or JSON: / },
    {
      why: 'a key appears twice',
      text: 'registries: []\nregistries: []',
      message: /^config c\.yaml: not valid YAML or JSON: Map keys must be unique/,
    },
  ])('when $why', ({ text, message }) => {
    let error: unknown;
    try {
      parseConfig(text, 'c.yaml');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const line = (error as Error).message;
    expect(line).not.toContain('\n');
    if (typeof message === 'string') expect(line).toBe(message);
    else expect(line).toMatch(message);
  });

  test('a missing file is named with the reason', () => {
    const dir = tempDir('config');
    expect(() => loadConfig(join(dir, 'nope.yaml'))).toThrow(
      `config ${join(dir, 'nope.yaml')}: cannot be read (ENOENT)`,
    );
    writeFileSync(join(dir, 'ok.yaml'), 'registries: [{server: a.io, secretName: s}]');
    expect(loadConfig(join(dir, 'ok.yaml')).registries).toHaveLength(1);
  });
});
