// Builds a variant of the webhook for a before/after comparison: a copy of this working tree's
// sources (src/, certs-gen/, the tsconfig files) with a patch applied, compiled like `npm run build`.
// The working tree itself is not touched.
//
//   node bench/variant.ts --patch bench/patches/NAME.diff [--out DIR]
//   node bench/run.ts --variant-main DIR/dist/src/cli/main.js --variant-name NAME
//
// Prints the path of the variant's main.js.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { ROOT } from './lib/processes.ts';

const { values } = parseArgs({ options: { patch: { type: 'string' }, out: { type: 'string' } } });
if (values.patch === undefined) {
  process.stderr.write('usage: node bench/variant.ts --patch FILE.diff [--out DIR]\n');
  process.exit(2);
}
const patch = resolve(values.patch);
const out = resolve(
  values.out ?? join(tmpdir(), `acr-pull-webhook-variant-${basename(patch).replace(/\.(diff|patch)$/, '')}`),
);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const entry of ['src', 'certs-gen', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) {
  if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(out, entry), { recursive: true });
}
symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'));
execFileSync('git', ['apply', '--verbose', patch], { cwd: out, stdio: ['ignore', 'inherit', 'inherit'] });
execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
  cwd: out,
  stdio: 'inherit',
});
process.stdout.write(`${join(out, 'dist', 'src', 'cli', 'main.js')}\n`);
