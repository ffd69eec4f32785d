// The container image without a Docker engine: this test reads the Dockerfile, assembles exactly what
// its runtime stage holds (the build stage's bundle, tools/image/bundle.ts, and nothing else: no
// node_modules), from a build context filtered by .dockerignore, and runs every entry point from that
// folder on Node 24 the way the image and the chart start them: help, a serve smoke test over HTTPS,
// certs-gen, sync-secrets without a cluster and the API client against a closed port.
//
// The build stage's `npm ci` (all dependencies) is the one already in this checkout's node_modules, from
// the same lock file; the build itself (`npm run build`, `npm run bundle`) runs on the filtered context.
// Every folder it makes is removed at the end.
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testPki } from '../support/certificates.ts';
import { renderChart } from '../support/helm.ts';

const REPO = join(import.meta.dirname, '../..');
const DOCKERFILE = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
const PACKAGE = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
};

// ---------------------------------------------------------------------------------------------
// The Dockerfile, read

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of lines) {
    const [keyword = '', ...rest] = line.split(/\s+/);
    const argsText = rest.join(' ');
    if (keyword === 'FROM') {
      const [image = '', as, name] = argsText.split(/\s+/);
      const resolved = image.replace(/^\$\{(\w+)\}$/, (_, variable: string) => args.get(variable) ?? '');
      stages.push({ from: resolved, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else if (keyword === 'ARG' && stages.length === 0) {
      const [variable = '', value = ''] = argsText.split('=');
      args.set(variable, value);
    } else {
      stages.at(-1)?.instructions.push({ keyword, args: argsText });
    }
  }
  return { args, stages };
}

const { stages } = parseDockerfile(DOCKERFILE);
const runtime = stages.at(-1) as Stage;
const instructions = (stage: Stage, keyword: string): string[] =>
  stage.instructions.filter((instruction) => instruction.keyword === keyword).map((instruction) => instruction.args);
const workdir = (stage: Stage): string => instructions(stage, 'WORKDIR').at(-1) ?? '/';

/** COPY [--from=stage] [--chown=…] source… destination, as { from, sources, destination }. */
function copies(stage: Stage): { from: string | undefined; sources: string[]; destination: string }[] {
  return instructions(stage, 'COPY').map((text) => {
    const words = text.split(/\s+/);
    const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((word) => !word.startsWith('--'));
    return { from, sources: paths.slice(0, -1), destination: paths.at(-1) ?? '' };
  });
}

// ---------------------------------------------------------------------------------------------
// .dockerignore, as the builder applies it: the last matching rule wins; a rule matching a parent
// directory matches everything in it; `*` stays within one path segment, `**` crosses them.

const ignoreRules = readFileSync(join(REPO, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'))
  .map((line) => {
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/\/+$/, '');
    const source = pattern
      .split('**')
      .map((part) =>
        part
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replaceAll('*', '[^/]*')
          .replaceAll('?', '[^/]'),
      )
      .join('.*');
    return { negated, regex: new RegExp(`^${source.replace(/^\.\*\//, '(?:.*/)?')}$`) };
  });

function inContext(path: string): boolean {
  const parts = path.split('/');
  let included = true;
  for (const rule of ignoreRules) {
    const matches = parts.some((_, index) => rule.regex.test(parts.slice(0, index + 1).join('/')));
    if (matches) included = rule.negated;
  }
  return included;
}

/** COPY from the build context: the source with everything .dockerignore leaves out removed. */
function copyFromContext(source: string, destination: string): void {
  const from = join(REPO, source);
  cpSync(from, destination, {
    recursive: true,
    filter: (path) => inContext(relative(REPO, path) || '.') || relative(REPO, path) === '',
  });
}

// ---------------------------------------------------------------------------------------------
// Assembling the stages

const root = mkdtempSync(join(tmpdir(), 'image-content-'));
const stageRoots = new Map<string, string>();
let app = '';

function run(command: string, args: readonly string[], cwd: string): void {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    timeout: 240_000,
    // npm turns on Node's compile cache in os.tmpdir(), which would outlive the test.
    env: { ...process.env, npm_config_update_notifier: 'false', NODE_DISABLE_COMPILE_CACHE: '1' },
  });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(' ')} in ${cwd} failed (${String(result.status ?? result.error)}):\n` +
        `${result.stdout}${result.stderr}`,
    );
}

/** Runs one stage's COPY and RUN instructions in a folder standing for its WORKDIR. */
function assemble(stage: Stage, folder: string): void {
  mkdirSync(folder, { recursive: true });
  const target = (destination: string): string =>
    join(folder, destination.startsWith('/') ? relative(workdir(stage), destination) : destination);
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'COPY') {
      const [copy] = copies({ ...stage, instructions: [instruction] });
      if (copy === undefined) continue;
      for (const source of copy.sources) {
        const destination = target(
          copy.destination.endsWith('/') && !source.endsWith('/')
            ? join(copy.destination, source.split('/').at(-1) ?? '')
            : copy.destination,
        );
        if (copy.from === undefined) {
          copyFromContext(source.replace(/\/$/, ''), destination);
        } else {
          const other = stages.find((candidate) => candidate.name === copy.from);
          const otherRoot = stageRoots.get(copy.from) ?? '';
          cpSync(join(otherRoot, relative(workdir(other as Stage), source)), destination, { recursive: true });
        }
      }
    } else if (instruction.keyword === 'RUN') {
      const [command = '', ...args] = instruction.args.split(/\s+/);
      if (command !== 'npm') throw new Error(`RUN ${instruction.args}: the test knows only npm`);
      if (args[0] === 'ci' && !args.includes('--omit=dev')) {
        // The build stage's full install: this checkout's node_modules, from the same lock file.
        symlinkSync(join(REPO, 'node_modules'), join(folder, 'node_modules'), 'dir');
      } else {
        run('npm', args, folder);
      }
    }
  }
}

beforeAll(() => {
  for (const stage of stages.slice(0, -1)) {
    const folder = join(root, stage.name ?? 'stage');
    assemble(stage, folder);
    stageRoots.set(stage.name ?? '', folder);
  }
  app = join(root, 'runtime', workdir(runtime).replace(/^\//, ''));
  assemble(runtime, app);
}, 300_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Running what the image runs

const entrypoint = (): string[] => JSON.parse(instructions(runtime, 'ENTRYPOINT').at(-1) ?? '[]') as string[];
/** An absolute path in the image, in the assembled folder. */
const inImage = (path: string): string => join(app, relative(workdir(runtime), path));
const imageEnv = (): Record<string, string> => {
  const env: Record<string, string> = { PATH: '/nonexistent' };
  for (const text of instructions(runtime, 'ENV')) {
    const equals = text.indexOf('=');
    env[text.slice(0, equals)] = text.slice(equals + 1);
  }
  return env;
};

/** `node <program> args…` as the image runs it: Node 24 (this test's), from / with only the image's environment. */
function runInImage(program: string, args: readonly string[]) {
  const result = spawnSync(process.execPath, [inImage(program), ...args], {
    cwd: '/',
    encoding: 'utf8',
    env: imageEnv(),
    timeout: 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
const MAIN = (): string => entrypoint()[1] ?? '';
const CERTS_GEN = '/app/dist/certs-gen/cli.js';

describe('the Dockerfile', () => {
  test('builds on Node 24 and runs on distroless Node 24 as uid and gid 65532', () => {
    expect(stages.slice(0, -1).map((stage) => stage.from)).toEqual(['node:24-bookworm-slim']);
    expect(runtime.from).toBe('gcr.io/distroless/nodejs24-debian12:nonroot');
    expect(instructions(runtime, 'USER')).toEqual(['65532:65532']);
  });

  test('copies into the runtime only the bundle, as dist/, owned by root', () => {
    expect(
      copies(runtime).map(({ from, sources, destination }) => `${from}:${sources.join(',')} -> ${destination}`),
    ).toEqual(['build:/src/dist/bundle/ -> ./dist/']);
    expect(instructions(runtime, 'COPY').every((text) => text.includes('--chown=0:0'))).toBe(true);
    expect(instructions(runtime, 'RUN')).toEqual([]);
  });

  test('carries the OCI labels', () => {
    const labels = instructions(runtime, 'LABEL').join(' ');
    for (const key of ['title', 'description', 'licenses', 'version', 'revision', 'created', 'base.name'])
      expect(labels).toContain(`org.opencontainers.image.${key}=`);
  });

  test('starts the program with an exec-form ENTRYPOINT (no shell in the image)', () => {
    expect(entrypoint()).toEqual(['/nodejs/bin/node', '/app/dist/src/cli/main.js']);
    expect(instructions(runtime, 'CMD')).toEqual(['["--help"]']);
  });

  test('.dockerignore sends only what the build copies: no node_modules, dist, .tools, tests or charts', () => {
    for (const path of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'src/cli/main.ts',
      'certs-gen/cli.ts',
      'tools/image/bundle.ts',
    ])
      expect(inContext(path), path).toBe(true);
    for (const path of [
      'node_modules/yaml/package.json',
      'dist/src/cli/main.js',
      '.tools/bin/helm',
      '.git/HEAD',
      'test/integration/chart.test.ts',
      'src/cli/serve.test.ts',
      'charts/acr-pull-webhook/values.yaml',
      'README.md',
      'tools/image/build.sh',
    ]) {
      expect(inContext(path), path).toBe(false);
    }
  });
});

describe('the assembled image', () => {
  const files = (dir: string): string[] =>
    readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((path) => statSync(join(dir, path)).isFile());

  test('holds dist/ only: the two entry points, their chunks, package.json and the licenses', () => {
    expect(readdirSync(app).sort()).toEqual(['dist']);
    expect(readdirSync(join(app, 'dist')).sort()).toEqual([
      'THIRD_PARTY_LICENSES.txt',
      'certs-gen',
      'chunks',
      'package.json',
      'src',
    ]);
    expect(JSON.parse(readFileSync(join(app, 'dist', 'package.json'), 'utf8'))).toEqual({ type: 'module' });
  });

  test('dist/ holds JavaScript only besides those two files: no TypeScript, no tests, no source maps', () => {
    const all = files(join(app, 'dist'));
    expect(all.filter((path) => !path.endsWith('.js')).sort()).toEqual(['THIRD_PARTY_LICENSES.txt', 'package.json']);
    expect(all.filter((path) => /\.test\.js/.test(path))).toEqual([]);
    expect(all).toEqual(expect.arrayContaining(['src/cli/main.js', 'certs-gen/cli.js']));
  });

  test('every bundled package is a production dependency in package-lock.json, with its license shipped', () => {
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; version?: string }>;
    };
    const meta = JSON.parse(readFileSync(join(stageRoots.get('build') ?? '', 'dist', 'bundle-meta.json'), 'utf8')) as {
      inputs: Record<string, unknown>;
    };
    // Input paths run through the build stage's node_modules link to this checkout's: the lock file's key is
    // the part from the first node_modules/ on (node_modules/a/node_modules/b for a nested copy).
    const bundled = new Set<string>();
    for (const input of Object.keys(meta.inputs)) {
      const match = /^(?:node_modules\/(?:@[^/]+\/)?[^/]+\/)+/.exec(input.slice(input.indexOf('node_modules/')));
      if (input.includes('node_modules/') && match !== null) bundled.add(match[0].slice(0, -1));
    }
    expect(bundled.size).toBeGreaterThan(10);
    const development = [...bundled].filter((path) => lock.packages[path]?.dev === true);
    const unknown = [...bundled].filter((path) => lock.packages[path] === undefined);
    expect({ development, unknown }).toEqual({ development: [], unknown: [] });
    // Every dependency the shipped code imports is in (fast-json-patch, imported by tests only, is not).
    const shipped = ['src', 'certs-gen'].flatMap((dir) =>
      readdirSync(join(REPO, dir), { recursive: true, encoding: 'utf8' })
        .filter((path) => path.endsWith('.ts') && !path.endsWith('.test.ts'))
        .map((path) => readFileSync(join(REPO, dir, path), 'utf8')),
    );
    for (const name of Object.keys(PACKAGE.dependencies))
      if (shipped.some((text) => text.includes(`from '${name}'`) || text.includes(`from '${name}/`)))
        expect(bundled, name).toContain(`node_modules/${name}`);
    const licenses = readFileSync(join(app, 'dist', 'THIRD_PARTY_LICENSES.txt'), 'utf8');
    for (const path of bundled) {
      const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
      expect(licenses, name).toContain(`${name}@${lock.packages[path]?.version ?? ''} (`);
    }
  });

  test("the bundle loads only Node's built-ins and the optional packages it tries in try/catch", () => {
    // ws's native addons, and debug's supports-color (a development-only package here, left out of the bundle).
    const optional = new Set(['bufferutil', 'utf-8-validate', 'supports-color']);
    const loaded = new Set<string>();
    for (const file of files(join(app, 'dist')).filter((path) => path.endsWith('.js'))) {
      const text = readFileSync(join(app, 'dist', file), 'utf8');
      // esbuild writes an ES import statement per external module at the top, and require() as __require().
      const imports = text.matchAll(/^import\s[^'"]*?['"]([^'"]+)['"];?$/gm);
      const requires = text.matchAll(/\b__require\(\s*['"]([^'"]+)['"]\s*\)/g);
      for (const match of [...imports, ...requires]) loaded.add(match[1] ?? '');
    }
    const outside = [...loaded].filter(
      (name) =>
        !name.startsWith('./') &&
        !name.startsWith('../') &&
        !name.startsWith('node:') &&
        !builtinModules.includes(name) &&
        !optional.has(name),
    );
    expect(outside).toEqual([]);
    expect(loaded).toContain('node:module');
  });

  test('the chart starts programs that exist in the image', () => {
    const commands = new Set<string>();
    const collect = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(collect);
      else if (typeof value === 'object' && value !== null) {
        const record = value as Record<string, unknown>;
        if (Array.isArray(record['command']) && typeof record['image'] === 'string')
          commands.add(JSON.stringify(record['command']));
        Object.values(record).forEach(collect);
      }
    };
    collect(renderChart());
    const programs = [...commands].map((command) => JSON.parse(command) as string[]);
    expect(programs.map((command) => command[0])).toEqual(programs.map(() => entrypoint()[0]));
    expect(programs.map((command) => command[1]).sort()).toEqual([CERTS_GEN, MAIN()].sort());
    for (const command of programs) expect(existsSync(inImage(command[1] ?? '')), command[1]).toBe(true);
  });
});

describe('the entry points, run from the assembled image on Node 24', () => {
  test('acr-pull-webhook --help lists serve, explain and sync-secrets', () => {
    const result = runInImage(MAIN(), ['--help']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/serve\s/);
    expect(result.stdout).toMatch(/explain\s/);
    expect(result.stdout).toMatch(/sync-secrets\s/);
  });

  test.each(['serve', 'sync-secrets', 'explain'])('acr-pull-webhook %s --help', (command) => {
    const result = runInImage(MAIN(), [command, '--help']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain(`Usage: acr-pull-webhook ${command}`);
  });

  test('certs-gen --help lists local, create and patch', () => {
    const result = runInImage(CERTS_GEN, ['--help']);
    expect(result.status, result.stderr).toBe(0);
    for (const verb of ['local', 'create', 'patch']) expect(result.stdout).toMatch(new RegExp(`^  ${verb}\\s`, 'm'));
  });

  test('certs-gen local writes a CA and a serving pair', () => {
    const out = join(mkdtempSync(join(root, 'certs-')), 'out');
    const result = runInImage(CERTS_GEN, ['local', '--out', out, '--dns', 'webhook.example']);
    expect(result.status, result.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
  });

  test('the API client loads from the bundle and reports a closed port as such', () => {
    const dir = mkdtempSync(join(root, 'client-'));
    writeFileSync(join(dir, 'config.yaml'), 'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-x\n');
    writeFileSync(
      join(dir, 'kubeconfig'),
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{ name: c, cluster: { server: "https://127.0.0.1:9", insecure-skip-tls-verify: true } }]',
        'users: [{ name: u, user: { token: t } }]',
        'contexts: [{ name: x, context: { cluster: c, user: u } }]',
        'current-context: x',
        '',
      ].join('\n'),
    );
    const result = runInImage(MAIN(), [
      'check-injection',
      '--config',
      join(dir, 'config.yaml'),
      '--kubeconfig',
      join(dir, 'kubeconfig'),
    ]);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr).toContain('list namespaces: fetch failed (ECONNREFUSED)');
  });

  test('sync-secrets --dry-run --namespace prints the pull secret without a cluster', () => {
    const dir = mkdtempSync(join(root, 'sync-'));
    writeFileSync(join(dir, 'username'), 'token-name\n');
    writeFileSync(join(dir, 'password'), 'token-password\n');
    writeFileSync(
      join(dir, 'config.yaml'),
      [
        'registries:',
        '  - server: myregistry.azurecr.io',
        '    secretName: acr-myregistry',
        '    credentials:',
        `      usernameFile: ${join(dir, 'username')}`,
        `      passwordFile: ${join(dir, 'password')}`,
        '',
      ].join('\n'),
    );
    const result = runInImage(MAIN(), [
      'sync-secrets',
      '--config',
      join(dir, 'config.yaml'),
      '--dry-run',
      '--namespace',
      'team-a',
    ]);
    expect(result.status, result.stderr).toBe(0);
    const secret = parseYaml(result.stdout) as {
      kind: string;
      type: string;
      metadata: { name: string; namespace: string };
    };
    expect([secret.kind, secret.type, secret.metadata.name, secret.metadata.namespace]).toEqual([
      'Secret',
      'kubernetes.io/dockerconfigjson',
      'acr-myregistry',
      'team-a',
    ]);
  });

  test('serve answers an AdmissionReview over HTTPS with the patch, is ready, and exits 0 on SIGTERM', async () => {
    const pki = testPki();
    const dir = mkdtempSync(join(root, 'serve-'));
    writeFileSync(join(dir, 'tls.crt'), pki.serving.certPem);
    writeFileSync(join(dir, 'tls.key'), pki.serving.keyPem);
    writeFileSync(
      join(dir, 'config.yaml'),
      [
        'registries:',
        '  - server: myregistry.azurecr.io',
        '    secretName: acr-myregistry',
        '  - server: "*.azurecr.cn"',
        '    secretName: acr-china',
        '',
      ].join('\n'),
    );
    const child = spawn(
      process.execPath,
      [
        inImage(MAIN()),
        'serve',
        '--config',
        join(dir, 'config.yaml'),
        '--tls-cert',
        join(dir, 'tls.crt'),
        '--tls-key',
        join(dir, 'tls.key'),
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--health-port',
        '0',
        '--drain-delay',
        '0',
      ],
      { cwd: '/', env: imageEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    try {
      let listening: { admission: string; health: string } | undefined;
      for (let waited = 0; listening === undefined; waited += 50) {
        if (waited > 20_000 || child.exitCode !== null) throw new Error(`serve did not start:\n${output}`);
        listening = output
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as { msg: string; admission: string; health: string })
          .find((line) => line.msg === 'listening');
        if (listening === undefined) await sleep(50);
      }
      expect((await fetch(`${listening.health}/readyz`)).status).toBe(200);
      const review = readFileSync(join(REPO, 'examples/admission-review.json'), 'utf8');
      const answer = await new Promise<{ status: number; body: string }>((done, fail) => {
        const call = request(
          `${listening.admission}/mutate`,
          {
            method: 'POST',
            ca: pki.ca.certPem,
            servername: 'localhost',
            headers: { 'content-type': 'application/json' },
          },
          (response) => {
            let body = '';
            response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
            response.on('end', () => done({ status: response.statusCode ?? 0, body }));
          },
        );
        call.on('error', fail);
        call.end(review);
      });
      expect(answer.status).toBe(200);
      const response = (
        JSON.parse(answer.body) as { response: { uid: string; allowed: boolean; patchType: string; patch: string } }
      ).response;
      expect(response.uid).toBe('705ab4f5-6393-11e8-b7cc-42010a800002');
      expect(response.allowed).toBe(true);
      expect(JSON.parse(Buffer.from(response.patch, 'base64').toString())).toEqual([
        { op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'acr-myregistry' }, { name: 'acr-china' }] },
      ]);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, output).toBe(0);
  });
});
