import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from './config.ts';

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
    const dir = mkdtempSync(join(tmpdir(), 'config-'));
    expect(() => loadConfig(join(dir, 'nope.yaml'))).toThrow(
      `config ${join(dir, 'nope.yaml')}: cannot be read (ENOENT)`,
    );
    writeFileSync(join(dir, 'ok.yaml'), 'registries: [{server: a.io, secretName: s}]');
    expect(loadConfig(join(dir, 'ok.yaml')).registries).toHaveLength(1);
  });
});
