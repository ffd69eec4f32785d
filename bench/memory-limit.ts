// The webhook and the floor under the memory limit the chart gives the webhook
// (charts/acr-pull-webhook/values.yaml: webhook.resources.limits.memory), enforced by a memory
// cgroup as a container runtime enforces it: at the limit the kernel reclaims page cache, then
// kills the process. Each server runs in a fresh cgroup per load, with the image's node flags, and
// gets 1 MiB reviews (the largest pods etcd stores) on many keep-alive connections at once.
// Prints a table and writes bench/results/memory-limit.json. Needs root (see lib/memory-cgroup.ts).
//
//   node bench/memory-limit.ts [--connections 10,50,100] [--duration S] [--body large|typical|small]
//                              [--limit-mib N] [--webhook-main PATH] [--out FILE]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { testPki } from '../test/support/certificates.ts';
import { loadBodies, type BodyName } from './lib/bodies.ts';
import { drive, type LoadResult } from './lib/load.ts';
import { createMemoryCgroup } from './lib/memory-cgroup.ts';
import { imageNodeArgs, ROOT, startServer, WEBHOOK_MAIN, writeServerFiles, type ServerSpec } from './lib/processes.ts';

const { values: flags } = parseArgs({
  options: {
    connections: { type: 'string', default: '10,50,100' },
    duration: { type: 'string', default: '20' },
    body: { type: 'string', default: 'large' },
    'limit-mib': { type: 'string' },
    'webhook-main': { type: 'string', default: WEBHOOK_MAIN },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'memory-limit.json') },
  },
});
const say = (line: string): void => void process.stdout.write(`${line}\n`);
const MiB = 2 ** 20;

/** The chart's limit for the webhook container, in bytes ("256Mi", "1Gi"). */
function chartLimitBytes(): number {
  const values = parseYaml(readFileSync(join(ROOT, 'charts', 'acr-pull-webhook', 'values.yaml'), 'utf8')) as {
    webhook?: { resources?: { limits?: { memory?: string } } };
  };
  const quantity = values.webhook?.resources?.limits?.memory;
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity ?? '');
  if (!match)
    throw new Error(`webhook.resources.limits.memory in values.yaml is ${JSON.stringify(quantity)}; give --limit-mib`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1) * MiB;
}

const limitBytes = flags['limit-mib'] === undefined ? chartLimitBytes() : Number(flags['limit-mib']) * MiB;
const connectionCounts = flags.connections.split(',').map(Number);
const durationSeconds = Number(flags.duration);
const bodyName = flags.body as BodyName;
const body = loadBodies()[bodyName];
if (body === undefined) throw new Error(`--body must be small, typical or large, not ${flags.body}`);

const nodeArgs = imageNodeArgs();
const specs: ServerSpec[] = [
  { name: 'floor', kind: 'floor', nodeArgs },
  { name: 'webhook', kind: 'webhook', main: resolve(flags['webhook-main']), nodeArgs },
];

interface Row {
  readonly connections: number;
  readonly server: string;
  readonly load: LoadResult;
  readonly peakChargedBytes: number;
  readonly peakRssBytes: number;
  readonly oomKills: number;
  /** How the process ended during the load, if it did. */
  readonly ended: string | undefined;
}

const dir = mkdtempSync(join(tmpdir(), 'acr-pull-webhook-memory-'));
const files = writeServerFiles(dir, testPki().serving);
const rows: Row[] = [];
say(
  `limit ${(limitBytes / MiB).toFixed(0)} MiB, ${bodyName} body (${(body.length / 1024).toFixed(0)} KiB), ` +
    `${durationSeconds} s per run, node ${nodeArgs.join(' ')}`,
);
try {
  for (const connections of connectionCounts) {
    for (const spec of specs) {
      const cgroup = createMemoryCgroup(
        `acr-pull-webhook-bench-${process.pid}-${spec.name}-${connections}`,
        limitBytes,
      );
      try {
        const server = await startServer({ ...spec, launcher: cgroup.launcher }, files);
        let peakRssBytes = 0;
        const sampler = setInterval(() => {
          if (server.ended() === undefined) peakRssBytes = Math.max(peakRssBytes, server.memory().hwm);
        }, 200);
        const load = await drive({
          url: `https://127.0.0.1:${server.port}/mutate`,
          body,
          connections,
          durationSeconds,
        });
        clearInterval(sampler);
        const ended = server.ended();
        if (ended === undefined) peakRssBytes = Math.max(peakRssBytes, server.memory().hwm);
        const row: Row = {
          connections,
          server: spec.name,
          load,
          peakChargedBytes: cgroup.peakBytes(),
          peakRssBytes,
          oomKills: cgroup.oomKills(),
          ended,
        };
        rows.push(row);
        await server.stop();
        say(
          `  ${String(connections).padStart(3)} connections, ${spec.name.padEnd(7)}: ` +
            `${load.requestsPerSecond.toFixed(0).padStart(4)} req/s, ` +
            `${load.responses} answered, ${load.errors} errors, p99 ${load.latencyMs.p99.toFixed(0)} ms, ` +
            `peak charged ${(row.peakChargedBytes / MiB).toFixed(0)} MiB, ` +
            `peak RSS ${(peakRssBytes / MiB).toFixed(0)} MiB, ` +
            `OOM kills ${row.oomKills}${ended === undefined ? '' : `, ended: ${ended}`}`,
        );
      } finally {
        cgroup.remove();
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

say('');
say(
  '| connections | server | req/s | errors | p99 ms | ' +
    `peak charged MiB (of ${(limitBytes / MiB).toFixed(0)}) | peak RSS MiB | OOM kills |`,
);
say('|---|---|---|---|---|---|---|---|');
for (const row of rows) {
  say(
    `| ${row.connections} | ${row.server} | ${row.load.requestsPerSecond.toFixed(0)} | ${row.load.errors} | ` +
      `${row.load.latencyMs.p99.toFixed(0)} | ` +
      `${(row.peakChargedBytes / MiB).toFixed(0)} | ${(row.peakRssBytes / MiB).toFixed(0)} | ` +
      `${row.oomKills}${row.ended === undefined ? '' : ` (${row.ended})`} |`,
  );
}
mkdirSync(dirname(flags.out), { recursive: true });
writeFileSync(
  flags.out,
  `${JSON.stringify({ limitBytes, body: bodyName, durationSeconds, nodeArgs, rows }, null, 2)}\n`,
);
say(`\nwrote ${flags.out}`);
if (rows.some((row) => row.server === 'webhook' && (row.oomKills > 0 || row.ended !== undefined))) process.exitCode = 1;
