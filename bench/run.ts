// `npm run bench`: the webhook as the image runs it (the bundle) side by side with the floor (bench/floor.ts), in
// one run on one machine, driven by autocannon over loopback, then the added latency of a pod
// create on a real kube-apiserver. Prints a table and writes bench/results/latest.json.
//
//   node bench/run.ts [--rounds N] [--duration S] [--warmup S] [--connections N] [--starts N]
//                     [--rate N] [--rate-connections N]
//                     [--variant-main PATH] [--variant-node-args="ARGS"] [--variant-name NAME]
//                     [--variant-args="ARGS"]   (after serve's own, e.g. "--log-level warn")
//                     [--webhook-main PATH] [--skip-load] [--skip-control-plane]
//                     [--scenarios small,typical,large,storm,rate]   (default: all of them)
//                     [--cp-rounds N (default 8)] [--cp-seconds S] [--cp-rate N] [--cp-pod small|typical]
//                     [--quick] [--out FILE]
//
//   node bench/run.ts --skip-load        the control-plane phase alone (and the ready-time starts)
//
// Every load run is bounded (duration × rounds) and goes to 127.0.0.1 only. Each scenario starts
// fresh server processes, warms them up, then runs floor and webhook alternately, in ABBA order
// over the rounds, so drift in the machine's load hits both alike; every figure is reported as the
// median over rounds with its range. A variant build (bench/variant.ts) can run as a third server.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { LOG_FLUSH_INTERVAL_MS } from '../src/process/log-destination.ts';
import { testPki } from '../test/support/certificates.ts';
import { toolPath } from '../test/support/control-plane.ts';
import { BODY_NAMES, loadBodies, type BodyName } from './lib/bodies.ts';
import {
  PHASE_PODS,
  runControlPlanePhases,
  type ControlPlaneResult,
  type PhasePod,
  type PhaseResult,
} from './lib/control-plane-phase.ts';
import { drive, type LoadResult } from './lib/load.ts';
import {
  imageNodeArgs,
  prometheusValue,
  readFrom,
  ROOT,
  sampleRss,
  startServer,
  WEBHOOK_MAIN,
  writeServerFiles,
  type ServerProcess,
  type ServerSpec,
} from './lib/processes.ts';
import { bucketQuantileBound, distribution, spread, type Distribution, type Spread } from './lib/stats.ts';
import { loadConfig } from '../src/config/config.ts';
import { decide } from '../src/mutation/decide.ts';

const { values: flags } = parseArgs({
  options: {
    // Nine paired rounds: with five, the typical pod's median ratio read 0.88 in one run and 1.01 in the
    // next (nine rounds) on the same build; a round's own ratio moves ±10 % on this machine.
    rounds: { type: 'string', default: '9' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '10' },
    'rate-connections': { type: 'string', default: '4' },
    rate: { type: 'string', default: '500' },
    starts: { type: 'string', default: '3' },
    'webhook-main': { type: 'string', default: WEBHOOK_MAIN },
    'variant-main': { type: 'string' },
    'variant-name': { type: 'string', default: 'variant' },
    'variant-node-args': { type: 'string', default: '' },
    'variant-args': { type: 'string', default: '' },
    'skip-load': { type: 'boolean', default: false },
    scenarios: { type: 'string', default: 'small,typical,large,storm,rate' },
    'skip-control-plane': { type: 'boolean', default: false },
    'cp-rounds': { type: 'string', default: '8' },
    'cp-seconds': { type: 'string', default: '15' },
    'cp-warmup': { type: 'string', default: '2' },
    'cp-rate': { type: 'string', default: '100' },
    // The small pod by default: see PhasePod.
    'cp-pod': { type: 'string', default: 'small' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'latest.json') },
  },
});
const quick = flags.quick;
const ROUNDS = quick ? 1 : Number(flags.rounds);
const DURATION = quick ? 2 : Number(flags.duration);
const WARMUP = quick ? 1 : Number(flags.warmup);
const CONNECTIONS = Number(flags.connections);
const RATE = Number(flags.rate);
const RATE_CONNECTIONS = Number(flags['rate-connections']);
const STARTS = quick ? 1 : Number(flags.starts);

const say = (line: string): void => void process.stdout.write(`${line}\n`);

const webhookMain = resolve(flags['webhook-main']);
if (!existsSync(webhookMain)) {
  process.stderr.write(`${webhookMain} not found: run 'npm run build' first (npm run bench does)\n`);
  process.exit(1);
}
if (!flags['skip-control-plane']) {
  if (!Object.hasOwn(PHASE_PODS, flags['cp-pod'])) {
    process.stderr.write(`--cp-pod ${flags['cp-pod']}: choose from ${Object.keys(PHASE_PODS).join(', ')}\n`);
    process.exit(2);
  }
  // Fail now rather than after the load scenarios: the last phase needs the control-plane binaries.
  try {
    toolPath('etcd');
    toolPath('kube-apiserver');
    toolPath('helm'); // renders the chart's webhook configuration
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n(or run with --skip-control-plane)\n`);
    process.exit(1);
  }
}
// Both servers get the image's node flags, so the comparison stays like for like and the webhook
// is measured as it ships.
const IMAGE_NODE_ARGS = imageNodeArgs();
const specs: ServerSpec[] = [
  { name: 'floor', kind: 'floor', nodeArgs: IMAGE_NODE_ARGS },
  { name: 'webhook', kind: 'webhook', main: webhookMain, nodeArgs: IMAGE_NODE_ARGS },
];
const variantNodeArgs = flags['variant-node-args'].split(' ').filter((arg) => arg !== '');
const variantArgs = flags['variant-args'].split(' ').filter((arg) => arg !== '');
if (flags['variant-main'] !== undefined || variantNodeArgs.length > 0 || variantArgs.length > 0) {
  const main = flags['variant-main'] === undefined ? webhookMain : resolve(flags['variant-main']);
  // The image's flags first, so a variant differs only in what it is given (a later node flag wins).
  const nodeArgs = [...IMAGE_NODE_ARGS, ...variantNodeArgs];
  specs.push({ name: flags['variant-name'], kind: 'webhook', main, nodeArgs, extraArgs: variantArgs });
}

// ---------------------------------------------------------------------------------------------
// Set-up: a throw-away certificate, the example configuration, the bodies.

const dir = mkdtempSync(join(tmpdir(), 'acr-pull-webhook-bench-'));
const pki = testPki();
const files = writeServerFiles(dir, pki.serving);
const bodies = loadBodies();

const live = new Set<ServerProcess>();
const cleanup = async (): Promise<void> => {
  await Promise.all([...live].map((server) => server.stop()));
  live.clear();
  rmSync(dir, { recursive: true, force: true });
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

async function start(spec: ServerSpec): Promise<ServerProcess> {
  const server = await startServer(spec, files);
  live.add(server);
  readyMs.get(spec.name)?.push(server.readyMs);
  return server;
}
async function stop(server: ServerProcess): Promise<void> {
  await server.stop();
  live.delete(server);
}

interface RunRecord {
  readonly scenario: string;
  readonly server: string;
  readonly round: number;
  readonly load: LoadResult;
  /**
   * Server CPU time (all threads, user + system) per answered request, µs: steadier than req/s on a shared machine.
   */
  readonly cpuMicrosPerRequest: number;
  /** Largest VmRSS sampled during the run. */
  readonly peakRssBytes: number;
  /** RssAnon / RssFile at the end of the run. */
  readonly rssAnonBytes: number;
  readonly rssFileBytes: number;
  /** Event-loop delay during the run (prom-client's nodejs_eventloop_lag_* for the webhook). */
  readonly eventLoopP99Ms: number;
  readonly eventLoopMaxMs: number;
  readonly loadAverage1m: number;
  /** Fixed-rate scenario, webhooks only: the per-review durationMs log field. */
  readonly serverDurationMs?: Distribution;
  /** Fixed-rate scenario, webhooks only: share of reviews at or under 5 ms in the webhook's own histogram. */
  readonly serverHistogramShareUnder5ms?: number;
}

const runs: RunRecord[] = [];
const readyMs = new Map<string, number[]>(specs.map((spec) => [spec.name, []]));
/** VmHWM of each scenario's processes when the scenario ends. */
const scenarioPeakRss: Record<string, Record<string, number>> = {};

function histogramCounts(text: string | undefined): { le5: number; count: number } {
  if (text === undefined) return { le5: Number.NaN, count: Number.NaN };
  const le5 = /^acr_pull_webhook_admission_duration_seconds_bucket\{le="0\.005"\} (\S+)$/m.exec(text);
  return {
    le5: le5 ? Number(le5[1]) : Number.NaN,
    count: prometheusValue(text, 'acr_pull_webhook_admission_duration_seconds_count'),
  };
}

async function measure(
  scenario: string,
  server: ServerProcess,
  round: number,
  run: () => Promise<LoadResult>,
  serverSide: boolean,
): Promise<void> {
  await server.eventLoop(); // resets the monitor: what follows covers this run only
  const webhookSide = serverSide && server.spec.kind === 'webhook';
  const logOffset = webhookSide ? readFrom(server.logFile, 0).offset : 0;
  const histogramBefore = webhookSide ? histogramCounts(await server.metrics()) : undefined;
  const rss = sampleRss(server);
  const cpuBefore = server.cpuSeconds();
  const load = await run();
  const cpuMicrosPerRequest = ((server.cpuSeconds() - cpuBefore) * 1e6) / load.responses;
  const peakRssBytes = rss.stop();
  const eventLoop = await server.eventLoop();
  const memory = server.memory();
  let record: RunRecord = {
    scenario,
    server: server.spec.name,
    round,
    load,
    cpuMicrosPerRequest,
    peakRssBytes,
    rssAnonBytes: memory.anon,
    rssFileBytes: memory.file,
    eventLoopP99Ms: eventLoop.p99 * 1000,
    eventLoopMaxMs: eventLoop.max * 1000,
    loadAverage1m: loadavg()[0] ?? Number.NaN,
  };
  if (webhookSide) {
    await sleep(2 * LOG_FLUSH_INTERVAL_MS); // review lines are written in batches
    const durations = readFrom(server.logFile, logOffset)
      .text.split('\n')
      .filter((line) => line.includes('"msg":"review"'))
      .map((line) => (JSON.parse(line) as { durationMs: number }).durationMs);
    const after = histogramCounts(await server.metrics());
    const before = histogramBefore ?? { le5: 0, count: 0 };
    record = {
      ...record,
      serverDurationMs: distribution(durations),
      serverHistogramShareUnder5ms: (after.le5 - before.le5) / (after.count - before.count),
    };
  }
  runs.push(record);
  const l = load.latencyMs;
  say(
    `  ${scenario.padEnd(8)} ${server.spec.name.padEnd(8)} round ${round}: ` +
      `${load.requestsPerSecond.toFixed(0).padStart(6)} req/s, ` +
      `CPU ${cpuMicrosPerRequest.toFixed(0)} µs/req, ` +
      `p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} p99.9 ${l.p999.toFixed(2)} ms, ` +
      `RSS ${(peakRssBytes / 2 ** 20).toFixed(0)} MiB, ELD p99 ${(eventLoop.p99 * 1000).toFixed(1)} ms, ` +
      `load ${record.loadAverage1m.toFixed(1)}` +
      (load.non2xx + load.errors > 0 ? `, ${load.non2xx} non-2xx, ${load.errors} errors` : '') +
      (record.serverDurationMs ? `, server p99 ${record.serverDurationMs.p99.toFixed(3)} ms` : ''),
  );
}

/** One POST, verifying the server's certificate against the throw-away CA. */
function post(target: string, body: Buffer): Promise<string> {
  return new Promise((resolveResponse, reject) => {
    const req = httpsRequest(
      target,
      { method: 'POST', ca: pki.ca.certPem, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolveResponse(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const url = (server: ServerProcess): string => `https://127.0.0.1:${server.port}/mutate`;

/** What each server answered to each body, checked once before anything is measured. */
const answers: Record<string, Record<string, unknown>> = {};
async function checkAnswers(server: ServerProcess): Promise<void> {
  const mine: Record<string, unknown> = {};
  for (const name of BODY_NAMES) {
    const text = await post(url(server), bodies[name]);
    const review = JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } };
    if (review.response?.allowed !== true)
      throw new Error(`${server.spec.name} did not allow the ${name} review: ${text.slice(0, 300)}`);
    const patch =
      review.response.patch === undefined
        ? null
        : (JSON.parse(Buffer.from(review.response.patch, 'base64').toString('utf8')) as unknown);
    if (server.spec.kind === 'webhook' && patch === null)
      throw new Error(`${server.spec.name} did not patch the ${name} pod, whose images are on myregistry.azurecr.io`);
    mine[name] = { allowed: true, patch };
  }
  answers[server.spec.name] = mine;
}

interface Scenario {
  readonly name: string;
  readonly label: string;
  readonly warmup: boolean;
  readonly serverSide: boolean;
  readonly run: (server: ServerProcess, seconds: number) => Promise<LoadResult>;
}

/**
 * A scenario that reads the webhook's server-side durations runs it at debug: they come from its review lines, which
 * info leaves out for patched pods. A later --log-level wins; debug costs a line per review, which a fixed-rate run
 * has time for.
 */
const serverSideSpec = (spec: ServerSpec): ServerSpec =>
  spec.kind === 'webhook' ? { ...spec, extraArgs: [...(spec.extraArgs ?? []), '--log-level', 'debug'] } : spec;

/** Fresh processes for every server, a warm-up, then `ROUNDS` rounds in ABBA order. */
async function runScenario(scenario: Scenario): Promise<void> {
  const servers: ServerProcess[] = [];
  for (const spec of specs) servers.push(await start(scenario.serverSide ? serverSideSpec(spec) : spec));
  try {
    for (const server of servers) if (answers[server.spec.name] === undefined) await checkAnswers(server);
    if (scenario.warmup) for (const server of servers) await scenario.run(server, WARMUP);
    for (let round = 1; round <= ROUNDS; round += 1) {
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      for (const server of order)
        await measure(scenario.name, server, round, () => scenario.run(server, DURATION), scenario.serverSide);
    }
    scenarioPeakRss[scenario.name] = Object.fromEntries(
      servers.map((server) => [server.spec.name, server.memory().hwm]),
    );
  } finally {
    for (const server of servers) await stop(server);
  }
}

// ---------------------------------------------------------------------------------------------

const started = new Date();
const machine =
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
  `Linux ${release()}, Node ${process.version}`;
say(
  `acr-pull-webhook benchmark on ${machine}; load average ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')}`,
);
say(
  `bodies: ${BODY_NAMES.map((name) => `${name} ${bodies[name].length} B`).join(', ')}; ` +
    `webhook ${webhookMain}, logging at info to a file in ${dir}`,
);

// Ready time: fresh processes, alternating (every scenario's start adds a sample too).
for (let i = 0; i < STARTS; i += 1) {
  for (const spec of i % 2 === 0 ? specs : [...specs].reverse()) await stop(await start(spec));
}

const keepAlive = (name: BodyName): Scenario => ({
  name,
  label: `${name} pod (${(bodies[name].length / 1024).toFixed(name === 'large' ? 0 : 1)} KiB), keep-alive`,
  warmup: true,
  serverSide: false,
  run: (server, seconds) =>
    drive({ url: url(server), body: bodies[name], connections: CONNECTIONS, durationSeconds: seconds }),
});
const scenarios: Scenario[] = [
  ...BODY_NAMES.map(keepAlive),
  {
    name: 'storm',
    label: 'typical, new TLS connection per request',
    warmup: true,
    serverSide: false,
    run: (server, seconds) =>
      drive({
        url: url(server),
        body: bodies.typical,
        connections: CONNECTIONS,
        durationSeconds: seconds,
        newConnectionPerRequest: true,
      }),
  },
  {
    name: `rate-${RATE}`,
    label: `typical at ${RATE} req/s, keep-alive`,
    warmup: true,
    serverSide: true,
    run: (server, seconds) =>
      drive({
        url: url(server),
        body: bodies.typical,
        connections: RATE_CONNECTIONS,
        durationSeconds: seconds,
        overallRate: RATE,
      }),
  },
];
const chosen = new Set(flags.scenarios.split(',').map((name) => name.trim()));
const unknown = [...chosen].filter(
  (name) => !scenarios.some((scenario) => scenario.name.replace(/-\d+$/, '') === name),
);
if (unknown.length > 0) {
  process.stderr.write(`unknown scenario ${unknown.join(', ')}: choose from small, typical, large, storm, rate\n`);
  process.exit(2);
}
for (const scenario of flags['skip-load'] ? [] : scenarios.filter((s) => chosen.has(s.name.replace(/-\d+$/, '')))) {
  const shape = scenario.name.startsWith('rate-') ? `${RATE_CONNECTIONS} connections` : `${CONNECTIONS} connections`;
  say(`\n${scenario.label}, ${shape}, ${DURATION} s × ${ROUNDS} rounds`);
  await runScenario(scenario);
}

let controlPlane: ControlPlaneResult | undefined;
if (!flags['skip-control-plane']) {
  const cpSeconds = quick ? 3 : Number(flags['cp-seconds']);
  const cpRounds = quick ? 1 : Number(flags['cp-rounds']);
  const pod = flags['cp-pod'] as PhasePod;
  say(`\ncontrol plane: ${pod} pod creates at ${flags['cp-rate']}/s, ${cpSeconds} s per phase × ${cpRounds} rounds`);
  const decision = decide(PHASE_PODS[pod](), loadConfig(files.configFile).rules);
  if (decision.kind !== 'patched')
    throw new Error(`the webhook would not patch the control-plane phase's pod (${decision.kind})`);
  controlPlane = await runControlPlanePhases({
    pod,
    ratePerSecond: Number(flags['cp-rate']),
    phaseSeconds: cpSeconds,
    warmupSeconds: quick ? 1 : Number(flags['cp-warmup']),
    rounds: cpRounds,
    // At debug: the phase reads the webhook's own duration of each review from its review lines.
    webhook: serverSideSpec({ name: 'webhook', kind: 'webhook', main: webhookMain, nodeArgs: IMAGE_NODE_ARGS }),
    // The floor answers with the webhook's patch for this pod, so both phases make the apiserver
    // apply the same patch and the difference between them is the webhook's own.
    floor: {
      name: 'floor',
      kind: 'floor',
      nodeArgs: IMAGE_NODE_ARGS,
      extraArgs: ['--patch', JSON.stringify(decision.ops)],
    },
    files,
    caPem: pki.ca.certPem,
    log: (line) => say(`  ${line}`),
  });
}

// ---------------------------------------------------------------------------------------------
// Summary

const ms = (value: number): string => (Number.isFinite(value) ? value.toFixed(value < 10 ? 2 : 1) : '-');
const fmtSpread = (s: Spread, format: (v: number) => string): string =>
  !Number.isFinite(s.median)
    ? '-'
    : s.min === s.max
      ? format(s.median)
      : `${format(s.median)} (${format(s.min)}–${format(s.max)})`;

interface ScenarioSummary {
  server: string;
  requestsPerSecond: Spread;
  ratioToFloor: Spread;
  cpuMicrosPerRequest: Spread;
  cpuRatioToFloor: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  p999Ms: Spread;
  peakRssMiB: Spread;
  rssAnonMiB: Spread;
  processPeakRssMiB: number;
  eventLoopP99Ms: Spread;
  serverP99Ms?: Spread;
  serverShareUnder5ms?: Spread;
}

function summarize(scenario: string): ScenarioSummary[] {
  const of = (server: string): RunRecord[] => runs.filter((run) => run.scenario === scenario && run.server === server);
  const floorRps = new Map(of('floor').map((run) => [run.round, run.load.requestsPerSecond]));
  const floorCpu = new Map(of('floor').map((run) => [run.round, run.cpuMicrosPerRequest]));
  return specs.map((spec) => {
    const list = of(spec.name);
    const summary: ScenarioSummary = {
      server: spec.name,
      requestsPerSecond: spread(list.map((run) => run.load.requestsPerSecond)),
      // Paired by round: the floor run next to it saw the same machine.
      ratioToFloor: spread(list.map((run) => run.load.requestsPerSecond / (floorRps.get(run.round) ?? Number.NaN))),
      cpuMicrosPerRequest: spread(list.map((run) => run.cpuMicrosPerRequest)),
      cpuRatioToFloor: spread(list.map((run) => (floorCpu.get(run.round) ?? Number.NaN) / run.cpuMicrosPerRequest)),
      p50Ms: spread(list.map((run) => run.load.latencyMs.p50)),
      p99Ms: spread(list.map((run) => run.load.latencyMs.p99)),
      p999Ms: spread(list.map((run) => run.load.latencyMs.p999)),
      peakRssMiB: spread(list.map((run) => run.peakRssBytes / 2 ** 20)),
      rssAnonMiB: spread(list.map((run) => run.rssAnonBytes / 2 ** 20)),
      processPeakRssMiB: (scenarioPeakRss[scenario]?.[spec.name] ?? Number.NaN) / 2 ** 20,
      eventLoopP99Ms: spread(list.map((run) => run.eventLoopP99Ms)),
    };
    if (list.some((run) => run.serverDurationMs)) {
      summary.serverP99Ms = spread(list.map((run) => run.serverDurationMs?.p99 ?? Number.NaN));
      summary.serverShareUnder5ms = spread(list.map((run) => run.serverHistogramShareUnder5ms ?? Number.NaN));
    }
    return summary;
  });
}

const ran = scenarios.filter((scenario) => runs.some((run) => run.scenario === scenario.name));
const summaries = Object.fromEntries(ran.map((scenario) => [scenario.name, summarize(scenario.name)]));

say('\n== Results: median over rounds (range); × floor is paired by round ==');
say(
  `machine: ${machine}; load average at the end ${loadavg()
    .map((v) => v.toFixed(2))
    .join(' ')}`,
);
say(
  '| scenario | server | req/s | × floor | CPU µs/req | p50 ms | p99 ms | p99.9 ms | ' +
    'peak RSS MiB (anon) | event-loop p99 ms |',
);
say('|---|---|---|---|---|---|---|---|---|---|');
for (const scenario of ran) {
  for (const s of summaries[scenario.name] ?? []) {
    const isFloor = s.server === 'floor';
    say(
      `| ${scenario.label} | ${s.server} | ${fmtSpread(s.requestsPerSecond, (v) => v.toFixed(0))} | ` +
        `${isFloor ? '1' : fmtSpread(s.ratioToFloor, (v) => v.toFixed(2))} | ` +
        `${fmtSpread(s.cpuMicrosPerRequest, (v) => v.toFixed(0))} | ${fmtSpread(s.p50Ms, ms)} | ` +
        `${fmtSpread(s.p99Ms, ms)} | ${fmtSpread(s.p999Ms, ms)} | ` +
        `${s.processPeakRssMiB.toFixed(0)} (${s.rssAnonMiB.median.toFixed(0)}) | ${fmtSpread(s.eventLoopP99Ms, ms)} |`,
    );
  }
}
say(
  "CPU µs/req: the server process's CPU time (all threads) per answer; " +
    'floor CPU / server CPU is the throughput ratio a server-bound, otherwise idle machine would show.',
);
say(
  `CPU ratio (floor µs / server µs): ${ran
    .map(
      (scenario) =>
        `${scenario.name} ${(summaries[scenario.name] ?? [])
          .filter((s) => s.server !== 'floor')
          .map((s) => `${s.server} ${fmtSpread(s.cpuRatioToFloor, (v) => v.toFixed(2))}`)
          .join(', ')}`,
    )
    .join('; ')}`,
);
for (const s of summaries[`rate-${RATE}`] ?? []) {
  if (s.serverP99Ms) {
    say(
      `server-side at ${RATE} req/s (${s.server}, durationMs log field): ` +
        `p99 ${fmtSpread(s.serverP99Ms, (v) => v.toFixed(3))} ms; ` +
        'share ≤ 5 ms in its own histogram ' +
        fmtSpread(s.serverShareUnder5ms as Spread, (v) => `${(v * 100).toFixed(2)}%`),
    );
  }
}
say(
  `ready after start, ms, median (range) over ${(readyMs.get('floor') ?? []).length} starts: ` +
    specs
      .map((spec) => `${spec.name} ${fmtSpread(spread(readyMs.get(spec.name) ?? []), (v) => v.toFixed(0))}`)
      .join('; '),
);

let controlPlaneSummary: Record<string, unknown> | undefined;
/** The apiserver-observed comparison, for the targets below. */
let apiserverComparison:
  | {
      readonly addedP99Ms: Spread;
      readonly floorAddedP99Ms: Spread;
      readonly overFloorP99Ms: Spread;
      readonly hasFloor: boolean;
    }
  | undefined;
if (controlPlane) {
  const withP = controlPlane.phases.filter((p) => p.phase === 'with');
  const withoutP = controlPlane.phases.filter((p) => p.phase === 'without');
  const floorP = controlPlane.phases.filter((p) => p.phase === 'floor');
  /** One latency's p50 and p99 per phase, and differences paired by round (phases of a round ran back to back). */
  const compare = (field: 'latencyMs' | 'apiserverLatencyMs') => {
    const of = (list: readonly PhaseResult[], key: 'p50' | 'p99'): Spread => spread(list.map((p) => p[field][key]));
    const minus = (a: readonly PhaseResult[], b: readonly PhaseResult[], key: 'p50' | 'p99'): Spread =>
      spread(a.map((p, i) => p[field][key] - (b[i]?.[field][key] ?? Number.NaN)));
    return {
      withoutP50Ms: of(withoutP, 'p50'),
      withoutP99Ms: of(withoutP, 'p99'),
      withP50Ms: of(withP, 'p50'),
      withP99Ms: of(withP, 'p99'),
      addedP50Ms: minus(withP, withoutP, 'p50'),
      addedP99Ms: minus(withP, withoutP, 'p99'),
      floorP50Ms: of(floorP, 'p50'),
      floorP99Ms: of(floorP, 'p99'),
      floorAddedP50Ms: minus(floorP, withoutP, 'p50'),
      floorAddedP99Ms: minus(floorP, withoutP, 'p99'),
      overFloorP50Ms: minus(withP, floorP, 'p50'),
      overFloorP99Ms: minus(withP, floorP, 'p99'),
    };
  };
  const clientObserved = compare('latencyMs');
  const apiserverObserved = compare('apiserverLatencyMs');
  const histograms = withP.flatMap((p) => (p.apiserverWebhook ? [p.apiserverWebhook] : []));
  const summary = {
    ...clientObserved,
    apiserverObserved,
    apiserverAudited: controlPlane.phases.reduce((sum, p) => sum + p.apiserverLatencyMs.count, 0),
    floorApiserverMeanMs: spread(floorP.map((p) => p.apiserverWebhook?.meanMs ?? Number.NaN)),
    apiserverWebhookCalls: histograms.reduce((sum, h) => sum + h.count, 0),
    apiserverWebhookMeanMs: spread(histograms.map((h) => h.meanMs)),
    apiserverWebhookShareUnder5ms: spread(
      histograms.map((h) => h.buckets.find((b) => b.le === 0.005)?.share ?? Number.NaN),
    ),
    apiserverWebhookP99BoundMs: spread(
      histograms.map(
        (h) =>
          bucketQuantileBound(
            h.buckets.map((b) => ({ le: b.le, count: b.share })),
            0.99,
          ) * 1000,
      ),
    ),
    webhookServerP99Ms: spread(withP.map((p) => p.webhookServerMs?.p99 ?? Number.NaN)),
    webhookEventLoopMaxMs: spread(withP.map((p) => p.webhookEventLoopMaxMs ?? Number.NaN)),
    unpatchedWith: withP.reduce((sum, p) => sum + p.unpatched, 0),
    failed: controlPlane.phases.reduce((sum, p) => sum + p.failed, 0),
    maxStartLagMs: Math.max(...controlPlane.phases.map((p) => p.maxStartLagMs)),
    machineBusyWithout: spread(withoutP.map((p) => p.machineBusy)),
    machineBusyWith: spread(withP.map((p) => p.machineBusy)),
    webhookCpuMicrosPerReview: spread(withP.map((p) => p.webhookCpuMicrosPerReview ?? Number.NaN)),
  };
  controlPlaneSummary = summary;
  apiserverComparison = { ...apiserverObserved, hasFloor: floorP.length > 0 };
  const table = (observer: string, c: typeof clientObserved): void => {
    say(
      `\ncontrol plane: ${controlPlane?.ratePerSecond} pod creates/s (${controlPlane?.pod} pod), ` +
        `${controlPlane?.phaseSeconds} s per phase, ${observer}; median over rounds (range):`,
    );
    say('| | p50 ms | p99 ms |');
    say('|---|---|---|');
    say(`| without the webhook | ${fmtSpread(c.withoutP50Ms, ms)} | ${fmtSpread(c.withoutP99Ms, ms)} |`);
    say(`| with the webhook | ${fmtSpread(c.withP50Ms, ms)} | ${fmtSpread(c.withP99Ms, ms)} |`);
    say(`| added (paired by round) | ${fmtSpread(c.addedP50Ms, ms)} | ${fmtSpread(c.addedP99Ms, ms)} |`);
    if (floorP.length > 0) {
      say(`| with the floor registered instead | ${fmtSpread(c.floorP50Ms, ms)} | ${fmtSpread(c.floorP99Ms, ms)} |`);
      say(
        `| added by the floor (paired by round) | ${fmtSpread(c.floorAddedP50Ms, ms)} | ` +
          `${fmtSpread(c.floorAddedP99Ms, ms)} |`,
      );
      say(
        `| webhook minus floor (paired by round) | ${fmtSpread(c.overFloorP50Ms, ms)} | ` +
          `${fmtSpread(c.overFloorP99Ms, ms)} |`,
      );
    }
  };
  table('client-observed', clientObserved);
  table(
    'apiserver-observed (audit log: request received to response complete, ' +
      `${summary.apiserverAudited} of ${controlPlane.phases.reduce((sum, p) => sum + p.created, 0)} creates found)`,
    apiserverObserved,
  );
  say(
    `apiserver_admission_webhook_admission_duration_seconds (${summary.apiserverWebhookCalls} calls): ` +
      `mean ${fmtSpread(summary.apiserverWebhookMeanMs, ms)} ms` +
      `${floorP.length > 0 ? ` (floor ${fmtSpread(summary.floorApiserverMeanMs, ms)} ms)` : ''}, ` +
      `${fmtSpread(summary.apiserverWebhookShareUnder5ms, (v) => `${(v * 100).toFixed(1)}%`)} ≤ 5 ms, ` +
      `p99 ≤ ${fmtSpread(summary.apiserverWebhookP99BoundMs, (v) => v.toFixed(0))} ms (bucket bound); ` +
      `the webhook's own p99 ${fmtSpread(summary.webhookServerP99Ms, (v) => v.toFixed(3))} ms, ` +
      `its longest event-loop delay ${fmtSpread(summary.webhookEventLoopMaxMs, ms)} ms; ` +
      `${summary.unpatchedWith} creates unpatched with the webhook, ${summary.failed} failed; ` +
      `driver start lag ≤ ${summary.maxStartLagMs.toFixed(1)} ms`,
  );
  const pct = (v: number): string => `${(v * 100).toFixed(0)}%`;
  say(
    'machine CPU busy (both cores, everything on the machine): ' +
      `${fmtSpread(summary.machineBusyWithout, pct)} without, ` +
      `${fmtSpread(summary.machineBusyWith, pct)} with the webhook; ` +
      `the webhook used ${fmtSpread(summary.webhookCpuMicrosPerReview, (v) => v.toFixed(0))} µs of CPU per review`,
  );
  const cores = (list: readonly PhaseResult[], who: keyof PhaseResult['cores']): string =>
    fmtSpread(spread(list.map((p) => p.cores[who] ?? Number.NaN)), (v) => v.toFixed(2));
  const coresOf = (list: readonly PhaseResult[], server?: string): string =>
    `apiserver ${cores(list, 'apiserver')}, etcd ${cores(list, 'etcd')}, driver ${cores(list, 'driver')}` +
    (server ? `, ${server} ${cores(list, 'server')}` : '');
  say(
    `cores busy (of ${cpus().length}; medians): without ${coresOf(withoutP)}; ` +
      `with the webhook ${coresOf(withP, 'webhook')}` +
      (floorP.length > 0 ? `; with the floor ${coresOf(floorP, 'floor')}` : ''),
  );
}

// The targets of issue #17 as this run measured them, each with the floor's own figure beside it:
// the webhook is held to what bare Fastify does on the same machine in the same run.
interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly floor: string;
  readonly met: boolean;
}
const targets: TargetCheck[] = [];
const summaryOf = (scenario: string, server: string): ScenarioSummary | undefined =>
  summaries[scenario]?.find((s) => s.server === server);
const ratio = (v: number): string => v.toFixed(2);
/** Throughput × floor, paired by round, median over rounds. */
const THROUGHPUT_TARGETS: readonly { scenario: BodyName; atLeast: number }[] = [
  { scenario: 'typical', atLeast: 0.9 },
  { scenario: 'small', atLeast: 0.8 },
];
for (const { scenario, atLeast } of THROUGHPUT_TARGETS) {
  const webhook = summaryOf(scenario, 'webhook');
  const floor = summaryOf(scenario, 'floor');
  if (!webhook || !floor) continue;
  targets.push({
    target: `${scenario}-pod throughput ≥ ${atLeast} × floor (keep-alive)`,
    measured:
      `${fmtSpread(webhook.ratioToFloor, ratio)} × floor, ${webhook.requestsPerSecond.median.toFixed(0)} req/s; ` +
      `CPU ${webhook.cpuMicrosPerRequest.median.toFixed(0)} µs/req`,
    floor:
      `${floor.requestsPerSecond.median.toFixed(0)} req/s; ` +
      `CPU ${floor.cpuMicrosPerRequest.median.toFixed(0)} µs/req`,
    met: webhook.ratioToFloor.median >= atLeast,
  });
}
/** Peak RSS: the scenario's VmHWM (every round, warm-up included), webhook over floor. */
const RSS_RATIO_LIMIT = 1.1;
for (const scenario of ran) {
  const webhook = summaryOf(scenario.name, 'webhook');
  const floor = summaryOf(scenario.name, 'floor');
  if (!webhook || !floor) continue;
  const over = webhook.processPeakRssMiB / floor.processPeakRssMiB;
  targets.push({
    target: `peak RSS ≤ ${RSS_RATIO_LIMIT} × floor: ${scenario.label}`,
    measured: `${webhook.processPeakRssMiB.toFixed(0)} MiB, ${ratio(over)} × floor`,
    floor: `${floor.processPeakRssMiB.toFixed(0)} MiB`,
    met: over <= RSS_RATIO_LIMIT,
  });
}
const rateWebhook = summaryOf(`rate-${RATE}`, 'webhook');
if (rateWebhook?.serverP99Ms) {
  targets.push({
    target: `server-side p99 at ${RATE} req/s (reported; #7 asked ≤ 5 ms)`,
    measured: `${fmtSpread(rateWebhook.serverP99Ms, (v) => v.toFixed(3))} ms`,
    floor: `client-observed p99 ${fmtSpread(summaryOf(`rate-${RATE}`, 'floor')?.p99Ms ?? spread([]), ms)} ms`,
    met: rateWebhook.serverP99Ms.median <= 5,
  });
}
const webhookReady = spread(readyMs.get('webhook') ?? []);
if (webhookReady.values.length > 0) {
  targets.push({
    target: 'ready after start (reported; #7 asked ≤ 1 s at every start)',
    measured: `${(webhookReady.median / 1000).toFixed(2)} s, slowest ${(webhookReady.max / 1000).toFixed(2)} s`,
    floor: `${(spread(readyMs.get('floor') ?? []).median / 1000).toFixed(2)} s`,
    met: webhookReady.max <= 1000,
  });
}
/** The control-plane target: per round, the webhook's added p99 minus the floor's, median over at least 8 rounds. */
const CP_OVER_FLOOR_LIMIT_MS = 3;
const CP_MIN_ROUNDS = 8;
if (apiserverComparison && controlPlane) {
  const c = apiserverComparison;
  const rounds = c.overFloorP99Ms.values.length;
  if (c.hasFloor) {
    const ofMedians = c.addedP99Ms.median - c.floorAddedP99Ms.median;
    targets.push({
      target:
        `added create p99 at ${controlPlane.ratePerSecond}/s ≤ the floor's + ${CP_OVER_FLOOR_LIMIT_MS} ms ` +
        `(apiserver-observed; median of per-round differences over ≥ ${CP_MIN_ROUNDS} rounds)`,
      measured:
        `webhook − floor ${fmtSpread(c.overFloorP99Ms, ms)} ms over ${rounds} rounds ` +
        `(difference of the medians ${ms(ofMedians)} ms); webhook adds ${fmtSpread(c.addedP99Ms, ms)} ms` +
        (rounds < CP_MIN_ROUNDS ? `; too few rounds to judge (--cp-rounds ${CP_MIN_ROUNDS})` : ''),
      floor: `adds ${fmtSpread(c.floorAddedP99Ms, ms)} ms`,
      met: rounds >= CP_MIN_ROUNDS && c.overFloorP99Ms.median <= CP_OVER_FLOOR_LIMIT_MS,
    });
  }
}
if (targets.length > 0) {
  say('\n== Targets of issue #17, medians of this run ==');
  say('| target | webhook | floor | met |');
  say('|---|---|---|---|');
  for (const t of targets) say(`| ${t.target} | ${t.measured} | ${t.floor} | ${t.met ? 'yes' : 'no'} |`);
}

const result = {
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
  },
  options: {
    rounds: ROUNDS,
    durationSeconds: DURATION,
    warmupSeconds: WARMUP,
    connections: CONNECTIONS,
    rate: RATE,
    rateConnections: RATE_CONNECTIONS,
    quick,
    servers: specs,
  },
  webhookLog:
    'pino JSON to a file: at info (no line for a patched pod) in the keep-alive scenarios, ' +
    'at debug (a line per review) in the fixed-rate scenario and the control-plane phase',
  bodies: Object.fromEntries(BODY_NAMES.map((name) => [name, bodies[name].length])),
  answers,
  readyMs: Object.fromEntries(specs.map((spec) => [spec.name, spread(readyMs.get(spec.name) ?? [])])),
  summaries,
  controlPlane: controlPlane ? { summary: controlPlaneSummary, ...controlPlane } : undefined,
  targets,
  runs,
};
mkdirSync(dirname(flags.out), { recursive: true });
writeFileSync(flags.out, `${JSON.stringify(result, null, 2)}\n`);
say(`\nwrote ${flags.out}`);
await cleanup();
