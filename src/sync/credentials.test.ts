import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp-dir.ts';
import { ConfigError, type RegistryEntry } from '../config/config.ts';
import {
  CredentialSource,
  credentialRedactor,
  readCredentials,
  secretValues,
  type RegistryCredential,
} from './credentials.ts';

const dir = tempDir('credentials');
const file = (name: string, content: string | Buffer): string => {
  writeFileSync(join(dir, name), content);
  return join(dir, name);
};
const entry = (usernameFile: string, passwordFile: string): RegistryEntry => ({
  server: 'myregistry.azurecr.io',
  secretName: 'acr-myregistry',
  credentials: { kind: 'files', usernameFile, passwordFile },
});
/** How every message about the first registry entry starts. */
const FIRST = 'config c.yaml: registries[0] (myregistry.azurecr.io -> acr-myregistry)';
const USER = file('user', '2c6d5e8f-0a1b-4c3d-9e8f-7a6b5c4d3e2f\n');
const PASS = file('pass', 'Xy8Q~secret:ä\r\n');

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('did not throw');
}

describe('reading credentials', () => {
  test('gives each entry its username and password without the trailing line break', () => {
    expect(readCredentials([entry(USER, PASS)], 'c.yaml')).toEqual([
      {
        server: 'myregistry.azurecr.io',
        secretName: 'acr-myregistry',
        username: '2c6d5e8f-0a1b-4c3d-9e8f-7a6b5c4d3e2f',
        password: 'Xy8Q~secret:ä',
      },
    ]);
  });

  test.each([
    {
      why: 'an entry has no credentials',
      entries: (): RegistryEntry[] => [entry(USER, PASS), { server: '*.azurecr.cn', secretName: 'acr-china' }],
      message:
        'config c.yaml: registries[1] (*.azurecr.cn -> acr-china): ' +
        'credentials: is required by sync-secrets (usernameFile and passwordFile, or azure)',
    },
    {
      why: 'the password file is missing',
      entries: () => [entry(USER, join(dir, 'nope'))],
      message: `${FIRST}: credentials.passwordFile ${join(dir, 'nope')}: cannot be read (ENOENT)`,
    },
    {
      why: 'the username file is empty',
      entries: () => [entry(file('empty', ''), PASS)],
      message: `${FIRST}: credentials.usernameFile ${join(dir, 'empty')}: is empty`,
    },
    {
      why: 'the password file holds only a line break',
      entries: () => [entry(USER, file('newline', '\n'))],
      message: `${FIRST}: credentials.passwordFile ${join(dir, 'newline')}: is empty`,
    },
    {
      why: 'the password file is not UTF-8',
      entries: () => [entry(USER, file('latin1', Buffer.from([0x70, 0xe4, 0x77])))],
      message: `${FIRST}: credentials.passwordFile ${join(dir, 'latin1')}: is not valid UTF-8`,
    },
    {
      why: 'the username contains a colon',
      entries: () => [entry(file('colon', 'a:b'), PASS)],
      message:
        `${FIRST}: credentials.usernameFile ${join(dir, 'colon')}: must not contain ':' ` +
        '(the kubelet splits user:password at the first one)',
    },
    {
      why: 'the password file is a directory',
      entries: () => [entry(USER, dir)],
      message: `${FIRST}: credentials.passwordFile ${dir}: cannot be read (EISDIR)`,
    },
  ])('fails naming the entry and the file when $why', ({ entries, message }) => {
    expect(errorOf(() => readCredentials(entries(), 'c.yaml'))).toBe(message);
  });

  test('a refused file is named, never quoted', () => {
    const message = errorOf(() => readCredentials([entry(file('refused', 'do-not-print-me:x'), PASS)], 'c.yaml'));
    expect(message).toContain(join(dir, 'refused'));
    expect(message).not.toContain('do-not-print-me');
  });
});

describe('a credential source', () => {
  function source(usernameFile: string, passwordFile: string, pollIntervalMs = 60_000) {
    const changes: (readonly RegistryCredential[])[] = [];
    const rejections: string[] = [];
    const credentials = new CredentialSource({
      registries: [entry(usernameFile, passwordFile)],
      source: 'c.yaml',
      pollIntervalMs,
      onChange: (next) => changes.push(next),
      onReject: (reason) => rejections.push(reason),
    });
    return { credentials, changes, rejections };
  }

  test('reports nothing when the bytes did not change', () => {
    const { credentials, changes } = source(USER, PASS);
    expect(credentials.reload()).toBe('unchanged');
    expect(changes).toEqual([]);
  });

  test('reports a rotated password once, and keeps the old one while the file is empty', () => {
    const pass = file('rotating', 'old');
    const { credentials, changes, rejections } = source(USER, pass);
    writeFileSync(pass, '');
    expect(credentials.reload()).toBe('rejected');
    expect(credentials.reload()).toBe('rejected');
    expect(rejections).toHaveLength(1);
    expect(credentials.current()[0]?.password).toBe('old');
    writeFileSync(pass, 'new\n');
    expect(credentials.reload()).toBe('changed');
    expect(changes.map((c) => c[0]?.password)).toEqual(['new']);
    expect(rejections.join('')).not.toContain('old');
  });

  test('notices a Secret-volume style ..data symlink swap within the poll interval', async () => {
    const volume = join(dir, 'volume');
    mkdirSync(join(volume, 'v1'), { recursive: true });
    mkdirSync(join(volume, 'v2'));
    writeFileSync(join(volume, 'v1', 'username'), 'u');
    writeFileSync(join(volume, 'v1', 'password'), 'p1');
    writeFileSync(join(volume, 'v2', 'username'), 'u');
    writeFileSync(join(volume, 'v2', 'password'), 'p2');
    symlinkSync('v1', join(volume, '..data'));
    symlinkSync('..data/username', join(volume, 'username'));
    symlinkSync('..data/password', join(volume, 'password'));
    const { credentials, changes } = source(join(volume, 'username'), join(volume, 'password'), 100);
    credentials.start();
    try {
      symlinkSync('v2', join(volume, '..data_tmp'));
      renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
      const deadline = Date.now() + 3_000;
      while (changes.length === 0 && Date.now() < deadline) await sleep(20);
      expect(changes.map((c) => c[0]?.password)).toEqual(['p2']);
    } finally {
      credentials.stop();
    }
  });
});

describe('azure entries', () => {
  const AZURE_ENTRY: RegistryEntry = {
    server: 'other.azurecr.io',
    secretName: 'acr-other',
    credentials: {
      kind: 'azure',
      azure: {
        tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
        clientId: '6731de76-14a6-49ae-97bc-6eba6914391e',
        secretSource: { kind: 'federated-token', file: '/var/run/secrets/azure/tokens/azure-identity-token' },
        cloud: 'AzurePublicCloud',
        authorityHost: 'https://login.microsoftonline.com/',
        scope: 'https://containerregistry.azure.net/.default',
      },
    },
  };

  test('an azure entry logs in as the null GUID with its refresh token as the password', () => {
    expect(readCredentials([entry(USER, PASS), AZURE_ENTRY], 'c.yaml', new Map([[1, 'eyJ.refresh.token']]))).toEqual([
      {
        server: 'myregistry.azurecr.io',
        secretName: 'acr-myregistry',
        username: '2c6d5e8f-0a1b-4c3d-9e8f-7a6b5c4d3e2f',
        password: 'Xy8Q~secret:ä',
      },
      {
        server: 'other.azurecr.io',
        secretName: 'acr-other',
        username: '00000000-0000-0000-0000-000000000000',
        password: 'eyJ.refresh.token',
      },
    ]);
  });

  test('a new token replaces the old one in the credentials, and a file change does not bring the old one back', () => {
    const pass = file('beside-azure', 'one');
    const changes: (readonly RegistryCredential[])[] = [];
    const credentials = new CredentialSource({
      registries: [entry(USER, pass), AZURE_ENTRY],
      source: 'c.yaml',
      pollIntervalMs: 60_000,
      tokens: new Map([[1, 'first-token']]),
      onChange: (next) => changes.push(next),
      onReject: () => {},
    });
    expect(credentials.current().map((c) => c.password)).toEqual(['one', 'first-token']);
    expect(credentials.setToken(1, 'second-token').map((c) => c.password)).toEqual(['one', 'second-token']);
    expect(credentials.current().map((c) => c.password)).toEqual(['one', 'second-token']);
    writeFileSync(pass, 'two');
    expect(credentials.reload()).toBe('changed');
    expect(changes.map((c) => c.map((x) => x.password))).toEqual([['two', 'second-token']]);
    expect(credentials.current().map((c) => c.password)).toEqual(['two', 'second-token']);
    expect(secretValues(credentials.current())).toContain('second-token');
  });

  test('the last tokens replaced stay redacted, as a write in flight may still carry one into an error', () => {
    const credentials = new CredentialSource({
      registries: [AZURE_ENTRY],
      source: 'c.yaml',
      pollIntervalMs: 60_000,
      tokens: new Map([[0, 'token-0']]),
      onChange: () => {},
      onReject: () => {},
    });
    for (let n = 1; n <= 10; n++) credentials.setToken(0, `token-${n}`);
    const redact = credentialRedactor(() => credentials.redactionValues());
    expect(redact('token-10 token-9 token-2 token-1')).toBe('[redacted] [redacted] [redacted] token-1');
    const auth = Buffer.from('00000000-0000-0000-0000-000000000000:token-5').toString('base64');
    expect(redact(`"auth":"${auth}"`)).toBe('"auth":"[redacted]"');
  });
});

describe('redaction', () => {
  test('replaces every current credential form, and leaves short strings alone', () => {
    const redact = credentialRedactor(() => ['hunter22', 'aHVudGVyMjI=', 'ab']);
    expect(redact('Invalid value: "hunter22" / aHVudGVyMjI= / ab')).toBe(
      'Invalid value: "[redacted]" / [redacted] / ab',
    );
  });

  test('knows the forms a credential takes in a pull secret: username, password, base64 user:password', () => {
    const values = secretValues([{ server: 's', secretName: 'n', username: 'sp-user', password: 'hunter22' }]);
    expect(values).toEqual(['sp-user', 'hunter22', Buffer.from('sp-user:hunter22').toString('base64')]);
  });
});
