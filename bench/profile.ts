// CPU profile of a server under a keep-alive load (the typical pod unless --body says otherwise):
// where its time goes, next to the floor's. Starts each server with `node --cpu-prof`, warms it up,
// drives it for --duration seconds with autocannon (same settings as run.ts), stops it (the profile
// is written on exit) and prints self time by category and the hottest functions.
//
//   node bench/profile.ts [--duration S] [--connections N] [--webhook-main PATH] [--top N] [--floor]
//                         [--body small|typical|large] [--rate N]   (requests a second over all
//                                                                 connections; unlimited without it)
//   node bench/profile.ts --analyze FILE.cpuprofile      (only print the summary of a profile; the
//                                                        load window is read from FILE.window.json)
//
// Profiles are kept in bench/results/profiles/ (git-ignored); open them in Chrome DevTools.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { testPki } from '../test/support/certificates.ts';
import { loadBodies } from './lib/bodies.ts';
import { drive } from './lib/load.ts';
import { ROOT, startServer, WEBHOOK_MAIN, writeServerFiles, type ServerSpec } from './lib/processes.ts';

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '10' },
    'webhook-main': { type: 'string', default: WEBHOOK_MAIN },
    name: { type: 'string', default: 'webhook' },
    top: { type: 'string', default: '30' },
    floor: { type: 'boolean', default: false },
    body: { type: 'string', default: 'typical' },
    analyze: { type: 'string' },
    rate: { type: 'string' },
  },
});
const say = (line: string): void => void process.stdout.write(`${line}\n`);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a function lives, coarsely: what a reader of the profile wants to add up. */
function category(url: string, name: string): string {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return 'native/program (TLS, syscalls, parser)';
  if (url === '') return `native: ${name || '(anonymous)'}`;
  const nodeModule = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (nodeModule) return nodeModule[1] as string;
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:').replace(/\/.*$/, '');
  const local = /\/(src|bench|dist\/src)\/(.*)$/.exec(url);
  if (local) return `${local[1]}/${local[2]}`;
  return url;
}

/** Microseconds on CLOCK_MONOTONIC, the clock V8 stamps profile samples with. */
const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n);

/** Self time per category and per function; only samples within `window` (monotonic µs) if given. */
export function summarize(profile: CpuProfile, top: number, window?: readonly [number, number]): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map<number, number>();
  let at = profile.startTime;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window[0] || at > window[1])) continue;
    const id = profile.samples[i] as number;
    selfMicros.set(id, (selfMicros.get(id) ?? 0) + delta);
    total += delta;
  }
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const [id, micros] of selfMicros) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const cat = category(url, functionName);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + micros);
    const source = url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(src|bench)\//, '$1/');
    const key = `${functionName || '(anonymous)'} ${source}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  }
  const idle = byCategory.get('idle') ?? 0;
  const busy = total - idle;
  const lines: string[] = [];
  const pct = (micros: number, of: number): string => `${((micros / of) * 100).toFixed(1).padStart(5)}%`;
  lines.push(
    `profile: ${(total / 1e6).toFixed(1)} s, busy ${(busy / 1e6).toFixed(1)} s ` +
      `(${pct(busy, total)} of the main thread)`,
  );
  lines.push('self time by category (% of busy):');
  for (const [cat, micros] of [...byCategory]
    .filter(([cat]) => cat !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)) {
    lines.push(`  ${pct(micros, busy)}  ${cat}`);
  }
  lines.push(`top ${top} functions by self time (% of busy):`);
  for (const [key, micros] of [...byFunction]
    .filter(([key]) => !key.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
    lines.push(`  ${pct(micros, busy)}  ${key}`);
  }
  return lines.join('\n');
}

if (flags.analyze !== undefined) {
  const windowFile = `${flags.analyze}.window.json`;
  const window = statSync(windowFile, { throwIfNoEntry: false })
    ? (JSON.parse(readFileSync(windowFile, 'utf8')) as [number, number])
    : undefined;
  say(summarize(JSON.parse(readFileSync(flags.analyze, 'utf8')) as CpuProfile, Number(flags.top), window));
  process.exit(0);
}

const profileDir = join(ROOT, 'bench', 'results', 'profiles');
mkdirSync(profileDir, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'acr-pull-webhook-profile-'));
const pki = testPki();
const files = writeServerFiles(dir, pki.serving);
const bodies = loadBodies();
if (!(flags.body in bodies)) throw new Error(`--body must be one of ${Object.keys(bodies).join(', ')}`);
const body = bodies[flags.body as keyof typeof bodies];

const specs: ServerSpec[] = [{ name: flags.name, kind: 'webhook', main: resolve(flags['webhook-main']) }];
if (flags.floor) specs.push({ name: 'floor', kind: 'floor' });
try {
  for (const spec of specs) {
    const stamp = `${spec.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const server = await startServer(
      { ...spec, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${stamp}.cpuprofile`] },
      files,
    );
    const url = `https://127.0.0.1:${server.port}/mutate`;
    await drive({ url, body, connections: Number(flags.connections), durationSeconds: Number(flags.warmup) });
    const from = monotonicMicros();
    const load = await drive({
      url,
      body,
      connections: Number(flags.connections),
      durationSeconds: Number(flags.duration),
      ...(flags.rate === undefined ? {} : { overallRate: Number(flags.rate) }),
    });
    const to = monotonicMicros();
    await server.stop();
    const file = join(profileDir, `${stamp}.cpuprofile`);
    if (!statSync(file, { throwIfNoEntry: false })) {
      throw new Error(`no profile written (${readdirSync(profileDir).join(', ')})`);
    }
    writeFileSync(`${file}.window.json`, JSON.stringify([from, to]));
    say(
      `\n== ${spec.name}: ${load.requestsPerSecond.toFixed(0)} req/s, ` +
        `p99 ${load.latencyMs.p99.toFixed(2)} ms under the profiler ==`,
    );
    say(`profile: ${file} (summary: the measured load only, not start-up or warm-up)`);
    say(summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(flags.top), [from, to]));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
