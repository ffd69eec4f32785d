// No module imports from a layer above its own: the pure core never reaches for the server, the
// Kubernetes access layer never reaches for sync-secrets, and certs-gen shares only the lower layers.
// Imports are read with TypeScript's own pre-processor (static imports, re-exports, import()).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');

/** Lowest first: a module may import from its own layer and the layers before it. */
const LAYERS: readonly { readonly layer: string; readonly holds: readonly string[] }[] = [
  { layer: 'the wire names and name patterns', holds: ['src/constants.ts', 'src/names.ts'] },
  { layer: 'Azure token rules (clouds, JWT times, refresh timing, request bodies)', holds: ['src/azure/'] },
  { layer: 'process plumbing (flags, start-up, crashes)', holds: ['src/process/'] },
  { layer: 'registry and image references', holds: ['src/registry/'] },
  { layer: 'the mutation decision', holds: ['src/mutation/'] },
  { layer: 'admission reviews', holds: ['src/admission/'] },
  { layer: 'the configuration', holds: ['src/config/'] },
  { layer: 'watched files', holds: ['src/files/'] },
  { layer: 'TLS', holds: ['src/tls/'] },
  { layer: 'the Kubernetes access layer', holds: ['src/k8s/'] },
  { layer: 'certs-gen', holds: ['certs-gen/'] },
  { layer: 'metrics', holds: ['src/metrics/'] },
  { layer: 'the HTTP servers', holds: ['src/server/'] },
  { layer: 'sync-secrets', holds: ['src/sync/'] },
  { layer: 'the doctor checks (pure)', holds: ['src/doctor/'] },
  { layer: 'the command line', holds: ['src/cli/'] },
];

/** Beside the layer order: the webhook's own code never imports certs-gen, a separate program. */
const NEVER: readonly { readonly from: string; readonly to: string }[] = [{ from: 'src/', to: 'certs-gen/' }];

function layerOf(file: string): number {
  const index = LAYERS.findIndex(({ holds }) => holds.some((prefix) => file === prefix || file.startsWith(prefix)));
  if (index === -1) throw new Error(`${file} is in no layer: add its directory to LAYERS`);
  return index;
}

/** Repository-relative paths of the modules `file` imports from this repository. */
function importsOf(file: string, source: string): string[] {
  const { importedFiles } = ts.preProcessFile(source, true, true);
  return importedFiles
    .map((imported) => imported.fileName)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => relative(ROOT, resolve(ROOT, dirname(file), specifier)));
}

/** Each import of `file` that goes up a layer, or to a layer it must never reach, as "file -> import". */
function upwardImports(file: string, source: string): string[] {
  const own = layerOf(file);
  return importsOf(file, source)
    .filter(
      (target) =>
        layerOf(target) > own || NEVER.some((rule) => file.startsWith(rule.from) && target.startsWith(rule.to)),
    )
    .map((target) => `${file} -> ${target}`);
}

function modules(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'))
    .map((name) => join(dir, name));
}

describe('the layers', () => {
  const files = [...modules('src'), ...modules('certs-gen')];

  test('every module under src/ and certs-gen/ is in a layer', () => {
    expect(files.length).toBeGreaterThan(30);
    for (const file of files) expect(() => layerOf(file), file).not.toThrow();
  });

  test('no module imports from a layer above its own', () => {
    const upward = files.flatMap((file) => upwardImports(file, readFileSync(join(ROOT, file), 'utf8')));
    expect(upward).toEqual([]);
  });

  test.each([
    {
      why: 'the Kubernetes access layer importing from sync-secrets is upward',
      file: 'src/k8s/secrets.ts',
      source: "import type { SecretObject } from '../sync/desired.ts';",
      upward: ['src/k8s/secrets.ts -> src/sync/desired.ts'],
    },
    {
      why: 'certs-gen re-exporting from the command line is upward',
      file: 'certs-gen/cluster.ts',
      source: "export { UsageError } from '../src/cli/sync-secrets.ts';",
      upward: ['certs-gen/cluster.ts -> src/cli/sync-secrets.ts'],
    },
    {
      why: 'the mutation decision loading the configuration lazily is upward',
      file: 'src/mutation/decide.ts',
      source: "const config = await import('../config/config.ts');",
      upward: ['src/mutation/decide.ts -> src/config/config.ts'],
    },
    {
      why: 'certs-gen importing the HTTP servers is upward',
      file: 'certs-gen/run.ts',
      source: "import { buildApp } from '../src/server/app.ts';",
      upward: ['certs-gen/run.ts -> src/server/app.ts'],
    },
    {
      why: 'sync-secrets importing certs-gen is forbidden, although certs-gen is a lower layer',
      file: 'src/sync/run-once.ts',
      source: "import { connect } from '../../certs-gen/cluster.ts';",
      upward: ['src/sync/run-once.ts -> certs-gen/cluster.ts'],
    },
    {
      why: 'the command line importing sync-secrets, the Kubernetes layer and packages is not',
      file: 'src/cli/sync-secrets.ts',
      source: "import { watch } from '../sync/run-watch.ts';\nimport '../k8s/client.ts';\nimport pino from 'pino';",
      upward: [],
    },
  ])('$why', ({ file, source, upward }) => {
    expect(upwardImports(file, source)).toEqual(upward);
  });
});
