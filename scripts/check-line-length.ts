// Lines at most 120 characters (issue #13). Biome wraps code, but not comments, strings, YAML, shell or JSON
// values, so this reads every tracked (or new, unignored) text file and lists the lines that are longer.
//
//   node scripts/check-line-length.ts      exit 1 and one `file:line: N characters` line per offender
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const MAX = 120;
const CHECKED = /\.(ts|mjs|sh|ya?ml|tpl|json)$|(^|\/)Dockerfile$/;
const EXEMPT = /(^|\/)package-lock\.json$|^(test|bench)\/fixtures\//;

/** Longer lines allowed, each with why: `path` is a file or, ending in '/', a directory; `line` a substring. */
const ALLOWED: readonly { path: string; line?: string; reason: string }[] = [
  { path: 'package.json', line: '"description": ', reason: 'a JSON string cannot be wrapped' },
  { path: 'package.json', line: '"test": ', reason: 'a JSON string cannot be wrapped' },
  { path: 'charts/acr-pull-webhook/values.schema.json', line: '"pattern": ', reason: 'a JSON regex cannot be wrapped' },
  {
    path: 'charts/acr-pull-webhook/values.schema.json',
    line: '"description": ',
    reason: 'a JSON string cannot be wrapped',
  },
  {
    path: 'charts/acr-pull-webhook/files/grafana-dashboard.json',
    line: '"expr": ',
    reason: 'a PromQL query in a JSON string cannot be wrapped',
  },
];

const allowed = (file: string, text: string): boolean =>
  ALLOWED.some(
    ({ path, line }) =>
      (path.endsWith('/') ? file.startsWith(path) : file === path) && (line === undefined || text.includes(line)),
  );

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' })
  .split('\n')
  .filter((file) => CHECKED.test(file) && !EXEMPT.test(file) && existsSync(file));

const offenders: string[] = [];
for (const file of files) {
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, index) => {
      const length = [...text].length;
      if (length > MAX && !allowed(file, text)) offenders.push(`${file}:${index + 1}: ${length} characters`);
    });
}
if (offenders.length > 0) {
  process.stderr.write(`${offenders.join('\n')}\nlines must be at most ${MAX} characters (issue #13)\n`);
  process.exit(1);
}
