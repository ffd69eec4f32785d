// Properties of building `credentials` from any document: the only failure is a one-line ConfigError, and building
// never touches the filesystem (sync-secrets reads the files later, on every use), so no message can carry a
// credential file's content.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeEach, expect, test, vi } from 'vitest';
import { AZURE_CLOUDS } from '../constants.ts';
import { buildConfig, ConfigError, loadConfig } from './config.ts';

// Every lowercase function of node:fs (readFileSync, openSync, statSync, existsSync, readFile, ...) becomes a spy
// that still does the real work, so a test can assert none was called.
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<Record<string, unknown>>();
  const spied = Object.fromEntries(
    Object.entries(actual).map(([name, value]) => [
      name,
      typeof value === 'function' && /^[a-z]/.test(name) ? vi.fn(value as (...args: unknown[]) => unknown) : value,
    ]),
  );
  return { ...spied, default: spied };
});

const SECRET = `secret-${Math.random().toString(36).slice(2)}-content`;
const dir = fs.mkdtempSync(join(tmpdir(), 'config-credentials-'));
/** Credential files that exist and hold SECRET, and paths that do not exist. */
const FILES = ['username', 'password', 'token', 'client-secret'].map((name) => {
  fs.writeFileSync(join(dir, name), `${SECRET}\n`);
  return join(dir, name);
});

/** Mostly `valid`, sometimes `other`: most generated documents get past the schema to the checks in code. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<U>) =>
  fc.oneof({ arbitrary: valid, weight: 8 }, { arbitrary: other, weight: 1 });
const paths = mostly(fc.constantFrom(...FILES, join(dir, 'missing'), '/nonexistent/file'), fc.string());
const strings = fc.oneof(fc.string(), fc.integer(), fc.constant(null));
const optional = <T>(value: fc.Arbitrary<T>) => fc.option(value, { nil: undefined, freq: 2 });
const secretSource = fc.oneof(
  fc.record({ federatedTokenFile: paths }),
  fc.record({ clientSecretFile: paths }),
  fc.record({ federatedTokenFile: paths, clientSecretFile: paths }),
  fc.constant({}),
);
const azure = fc
  .record({
    ids: fc.record({ tenantId: mostly(fc.uuid(), strings), clientId: mostly(fc.uuid(), strings) }),
    secretSource,
    cloud: optional(mostly(fc.constantFrom(...AZURE_CLOUDS), fc.string())),
    authorityHost: optional(
      fc.oneof(
        fc.webUrl({ withQueryParameters: true, withFragments: true }),
        fc.constant(`https://user:${SECRET}@login.example.com/`),
        fc.constant(`http://login.example.com/${SECRET}`),
        fc.string(),
      ),
    ),
    unknown: mostly(fc.constant(undefined), fc.string()),
  })
  .map(({ ids, secretSource, ...rest }) => ({
    ...ids,
    ...secretSource,
    ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
  }));
const credentials = fc.oneof(
  { arbitrary: fc.record({ azure }), weight: 4 },
  fc.record({ usernameFile: paths, passwordFile: paths, azure }, { requiredKeys: [] }),
  fc.anything(),
);
const server = mostly(
  fc.constantFrom(
    'myregistry.azurecr.io',
    'myregistry.azurecr.cn:443/team',
    'myregistry.azurecr.us',
    '*.azurecr.io',
    'registry.example.com:5000/mirror/',
    '127.0.0.1:5000',
  ),
  fc.string(),
);

const fsSpies = () =>
  Object.entries(fs).filter(([, value]) => vi.isMockFunction(value)) as [string, ReturnType<typeof vi.fn>][];

beforeEach(() => vi.clearAllMocks());
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("the node:fs spies see the config module's reads (so the next tests can fail)", () => {
  expect(fsSpies().map(([name]) => name)).toEqual(
    expect.arrayContaining(['readFileSync', 'openSync', 'statSync', 'existsSync', 'readFile', 'accessSync']),
  );
  const file = join(dir, 'config.yaml');
  fs.writeFileSync(file, 'registries: [{server: a.io, secretName: s}]');
  vi.clearAllMocks();
  loadConfig(file);
  expect(
    fsSpies()
      .filter(([, spy]) => spy.mock.calls.length > 0)
      .map(([name]) => name),
  ).toEqual(['readFileSync']);
});

test('any credentials either build or fail with one ConfigError line, touching no file and naming no content', () => {
  const outcomes = { none: 0, files: 0, azure: 0, refused: 0 };
  fc.assert(
    fc.property(server, credentials, (server, credentials) => {
      vi.clearAllMocks();
      let line: string | undefined;
      try {
        const config = buildConfig({ registries: [{ server, secretName: 's', credentials }] }, 'c.yaml');
        outcomes[config.registries[0]?.credentials?.kind ?? 'none'] += 1;
      } catch (error) {
        outcomes.refused += 1;
        expect(error).toBeInstanceOf(ConfigError);
        line = (error as Error).message;
      }
      expect(
        fsSpies()
          .filter(([, spy]) => spy.mock.calls.length > 0)
          .map(([name]) => name),
      ).toEqual([]);
      if (line !== undefined) {
        expect(line).toMatch(/^config c\.yaml: /);
        expect(line).not.toContain('\n');
        expect(line).not.toContain(SECRET);
      }
    }),
    { numRuns: 1000 },
  );
  // Each branch was reached: the generators are not so wild that everything is refused by the schema.
  expect(outcomes).toEqual({
    none: expect.any(Number),
    files: expect.toSatisfy((n: number) => n > 0),
    azure: expect.toSatisfy((n: number) => n > 0),
    refused: expect.toSatisfy((n: number) => n > 0),
  });
});

test('a valid azure entry builds without its token or secret file existing', () => {
  const config = buildConfig(
    {
      registries: [
        {
          server: 'myregistry.azurecr.io',
          secretName: 's',
          credentials: {
            azure: {
              tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
              clientId: '0d1c6ba2-8c4e-4b8f-9d0a-5f3e2b1a4c6d',
              federatedTokenFile: join(dir, 'missing'),
            },
          },
        },
      ],
    },
    'c.yaml',
  );
  expect(config.registries[0]?.credentials?.kind).toBe('azure');
  expect(fsSpies().filter(([, spy]) => spy.mock.calls.length > 0)).toEqual([]);
});
