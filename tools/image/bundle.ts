// `npm run bundle`: the programs the image runs, as an esbuild bundle in dist/bundle/ (the Dockerfile's build
// stage runs it; bench:sync runs what it writes). Loading @kubernetes/client-node from node_modules is ~1,400
// modules and 2,742 generated model files: most of a second before `sync-secrets --once` sends its first request
// (0.82-0.99 s measured, 0.30 s for the same code bundled). The bundle also leaves node_modules out of the image.
//
// Layout (copied as /app/dist/ in the image, so the chart's commands are unchanged):
//   src/cli/main.js, certs-gen/cli.js   the two entry points
//   chunks/*.js                         code they share; each verb's own code loads only when the verb runs
//   package.json                        {"type": "module"}: the files are ES modules
//   THIRD_PARTY_LICENSES.txt            the license of every bundled package (their files are not shipped)
//
// esbuild's metafile (inputs and outputs) goes to DIR-meta.json, beside the bundle.
//
//   node tools/image/bundle.ts [--out DIR]
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const ROOT = join(import.meta.dirname, '..', '..');
const { values: flags } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist', 'bundle') } } });
const out = flags.out;

// A package the lock file installs for development only (debug's optional supports-color, present here because
// vitest needs it) stays out: the image's code must behave as on a production install, where it is missing.
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { dev?: boolean }>;
};
const developmentOnly = Object.entries(lock.packages)
  .filter(([path, entry]) => entry.dev === true && /^node_modules\/(?:@[^/]+\/)?[^/]+$/.test(path))
  .map(([path]) => path.slice('node_modules/'.length));

rmSync(out, { recursive: true, force: true });
const result = await build({
  absWorkingDir: ROOT,
  entryPoints: { 'src/cli/main': 'src/cli/main.ts', 'certs-gen/cli': 'certs-gen/cli.ts' },
  outdir: out,
  bundle: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node24',
  // CommonJS packages inside an ES module bundle still call require() for Node's built-ins.
  banner: {
    js:
      "import { createRequire as __bundleRequire } from 'node:module';\n" +
      'const require = __bundleRequire(import.meta.url);',
  },
  // The packages' license texts go to THIRD_PARTY_LICENSES.txt whole, not as scattered comments.
  legalComments: 'none',
  external: developmentOnly,
  metafile: true,
  logLevel: 'warning',
});

// pino's worker-thread transports resolve files next to their own (join(__dirname, 'worker.js')), which a bundle
// does not have: the programs must never start one (they log to a destination stream on the main thread).
for (const file of readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
  const text = readFileSync(join(ROOT, 'src', file), 'utf8');
  if (/from 'pino'/.test(text) && /pino\.transport\(|\btransports?\s*:\s*\{/.test(text))
    throw new Error(`src/${file} seems to start a pino transport, which a bundle cannot load`);
}

// Beside the bundle, not in it: which input files each output holds (test/integration/image-content.test.ts
// checks that every bundled package is a production dependency).
writeFileSync(`${out}-meta.json`, JSON.stringify(result.metafile));
writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'module' }, null, 2)}\n`);

// Every package a bundled file came from, with its license file(s), as npm would have shipped them.
const packages = new Map<string, string>();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match?.[1] !== undefined) packages.set(match[1], join(ROOT, match[1]));
}
const notices: string[] = [];
for (const [path, dir] of [...packages].sort(([a], [b]) => a.localeCompare(b))) {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    license?: string;
  };
  const licenseFiles = readdirSync(dir).filter((name) => /^(licen[sc]e|copying|notice)/i.test(name));
  if (licenseFiles.length === 0 && manifest.license === undefined)
    throw new Error(`${path}: no license file and no license field`);
  notices.push(
    [
      `${manifest.name}@${manifest.version} (${manifest.license ?? 'see below'})`,
      ...licenseFiles.map((name) => readFileSync(join(dir, name), 'utf8').trim()),
    ].join('\n\n'),
  );
}
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), `${notices.join(`\n\n${'-'.repeat(80)}\n\n`)}\n`);

const written = Object.keys(result.metafile.outputs).map((file) => relative(out, join(ROOT, file)));
for (const entry of ['src/cli/main.js', 'certs-gen/cli.js'])
  if (!written.includes(entry) || !existsSync(join(out, entry))) throw new Error(`the bundle has no ${entry}`);
process.stdout.write(`bundle: ${written.length} files, ${packages.size} packages, in ${relative(ROOT, out)}/\n`);
