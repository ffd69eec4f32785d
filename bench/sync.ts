// `npm run bench:sync`: sync-secrets at scale on a real etcd + kube-apiserver (issue #17 part 2).
// Per scale (N opted-in namespaces × 2 registries, a fresh control plane each): the production build
// of `sync-secrets --once` cold and warm beside a minimal client creating the same Secrets 32 at a
// time; at one scale the minimal client at several concurrencies; at the largest the --once time at
// several --kube-api-qps values with another client's latency meanwhile; then --watch in a memory
// cgroup with the chart's limit (initial sync, steady-state request rate over ≥ 2 resync periods,
// newly labelled namespaces, a credential rotation), and the same steady state measured with the
// build from before the secret watch. Prints tables and the targets, writes bench/results/sync-latest.json.
//
// It runs the CLI as the image ships it, the bundle of `npm run bundle` (--main: another build's entry, e.g.
// dist/src/cli/main.js, the tsc output loading node_modules, for a comparison).
//
//   node bench/sync.ts [--scales 1000,5000,10000] [--quick] [--skip-watch] [--skip-qps] [--skip-before]
//                      [--before-max-scale N] [--resync-period S] [--new-namespaces K] [--out FILE] [--main FILE]
//                      [--once-runs N] [--skip-curve]
// --once-runs N (default 1): N pairs of (minimal client, --once cold) per scale, Secrets deleted before each, so a
// busy machine shows as a spread of ratios; the targets then take the median ratio.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import {
  INJECT_ENABLED,
  INJECT_LABEL,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  METRIC_SYNC_PASSES,
  SYNC_DEFAULTS,
} from '../src/constants.ts';
import { apiserverMetrics } from '../test/support/apiserver-metrics.ts';
import { createMemoryCgroup } from './lib/memory-cgroup.ts';
import { BUNDLE_MAIN, imageNodeArgs, ROOT } from './lib/processes.ts';
import { distribution, type Distribution } from './lib/stats.ts';
import { buildBefore, type BeforeBuild } from './lib/sync-before.ts';
import {
  countSecrets,
  createNamespaces,
  deleteSecrets,
  RELEASE_NAMESPACE,
  secretsResourceVersion,
  startSyncCluster,
  type SyncCluster,
} from './lib/sync-cluster.ts';
import { floorCreate, type FloorResult, type SecretManifest } from './lib/sync-floor.ts';
import { observeSecrets } from './lib/sync-observer.ts';
import { startProbe, type Probe } from './lib/sync-probe.ts';
import { cgroupCurrentBytes, dryRunManifests, runOnce, startWatch, type SyncBuild } from './lib/sync-process.ts';
import {
  byVerb,
  formatCounts,
  growth,
  parseRequestCounts,
  requestDelta,
  secretWrites,
  targetsTable,
  throttled,
  throughputKnee,
  totalRequests,
  type RequestCount,
  type Target,
  withoutProbe,
} from './lib/sync-stats.ts';

const { values: flags } = parseArgs({
  options: {
    scales: { type: 'string', default: '1000,5000,10000' },
    quick: { type: 'boolean', default: false },
    'skip-watch': { type: 'boolean', default: false },
    'skip-qps': { type: 'boolean', default: false },
    'skip-before': { type: 'boolean', default: false },
    'skip-curve': { type: 'boolean', default: false },
    'before-max-scale': { type: 'string', default: '5000' },
    'resync-period': { type: 'string' },
    'new-namespaces': { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'sync-latest.json') },
    main: { type: 'string', default: BUNDLE_MAIN },
    'once-runs': { type: 'string', default: '1' },
  },
});
const quick = flags.quick;
const scales = quick ? [300] : flags.scales.split(',').map(Number);
if (scales.some((scale) => !Number.isInteger(scale) || scale < 1)) throw new Error(`--scales: ${flags.scales}`);
const resyncSeconds = Number(flags['resync-period'] ?? (quick ? 5 : 30));
const newNamespaceCount = Number(flags['new-namespaces'] ?? (quick ? 10 : 50));
/** Where the minimal client's concurrency curve is taken: 5,000 as the issue asks, else the largest scale. */
const curveScale = scales.includes(5000) ? 5000 : Math.max(...scales);
const curveConcurrencies = quick ? [8, 32, 128] : [8, 16, 32, 64, 128];
/** Where the --kube-api-qps sweep runs: 10,000 as the issue asks, else the largest scale. */
const beforeMaxScale = Number(flags['before-max-scale']);
const qpsScale = scales.includes(10_000) ? 10_000 : Math.max(...scales);
const qpsValues = quick ? [0, 200] : [0, 1000, 500, 200];
const onceRuns = Number(flags['once-runs']);
if (!Number.isInteger(onceRuns) || onceRuns < 1) throw new Error(`--once-runs: ${flags['once-runs']}`);
const FLOOR_CONCURRENCY = 32;
const COLD_RATIO_TARGET = 1.5;
const HEADROOM_TARGET = 0.4;
const NEW_NAMESPACE_P99_TARGET_MS = 2000;
const SECRET_NAMES = ['acr-bench-a', 'acr-bench-b'] as const;
const OPTED_IN_PREFIX = 'sync-';
/** A full pass over every opted-in namespace without a failure: the initial sync is done. */
const PASSED = `${METRIC_SYNC_PASSES}{result="success"}`;
const MiB = 2 ** 20;

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const log = (line: string): void =>
  void process.stderr.write(`[bench:sync ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const row = (cells: readonly (string | number)[]): string => `| ${cells.join(' | ')} |`;
const latencies = (d: Distribution): string => `${d.p50.toFixed(0)} / ${d.p99.toFixed(0)} / ${d.max.toFixed(0)} ms`;
const load = (): string =>
  loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');

/** The chart's memory limit for sync-secrets (syncSecrets.resources.limits.memory), bytes. */
function chartSyncLimitBytes(): number {
  const values = parseYaml(readFileSync(join(ROOT, 'charts', 'acr-pull-webhook', 'values.yaml'), 'utf8')) as {
    syncSecrets?: { resources?: { limits?: { memory?: string } } };
  };
  const quantity = values.syncSecrets?.resources?.limits?.memory;
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity ?? '');
  if (!match) throw new Error(`syncSecrets.resources.limits.memory in values.yaml is ${JSON.stringify(quantity)}`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1) * MiB;
}
const limitBytes = chartSyncLimitBytes();

interface OnceRun {
  readonly ms: number;
  readonly status: number | null;
  readonly summary: string;
  readonly requests: Record<string, number>;
  readonly total: number;
  readonly writes: number;
  /** Answers 429 (API Priority and Fairness rejecting) the run got and retried. */
  readonly throttled: number;
}

interface QpsRun extends OnceRun {
  readonly qps: number;
  readonly burst: number | undefined;
  readonly probeMs: Distribution;
  readonly probeFailed: number;
}

interface WatchResult {
  readonly resyncSeconds: number;
  readonly initialSyncMs: number;
  readonly initialRequests: Record<string, number>;
  readonly peakBytes: number;
  readonly settledBytes: number;
  readonly headroom: number;
  readonly oomKills: number;
  readonly steady: SteadyState;
  readonly newNamespaces?: { count: number; latencyMs: Distribution; writes: number };
  readonly rotation?: { changed: number; ms: number; writes: number; requests: Record<string, number> };
}

interface SteadyState {
  readonly windowMs: number;
  readonly passes: number;
  readonly perMinute: Record<string, number>;
  readonly totalPerMinute: number;
  readonly writes: number;
}

interface BeforeResult {
  readonly commit: string;
  /** NaN: no full pass within firstPassWaitMs (the window then saw its passes back to back). */
  readonly initialSyncMs: number;
  readonly firstPassWaitMs: number;
  readonly peakBytes: number;
  readonly steady: SteadyState;
}

interface ScaleResult {
  readonly scale: number;
  readonly setup: { namespacesMs: number; namespaces: number };
  /** The minimal client at 32, just before --once cold and again after --once warm. */
  readonly floor: FloorResult;
  readonly floorAfter: FloorResult;
  readonly cold: OnceRun & { secrets: number };
  readonly warm: OnceRun;
  /** --once-runs beyond the first: the minimal client just before, then --once cold, each from no Secrets. */
  readonly repeats: { floor: FloorResult; cold: OnceRun & { secrets: number } }[];
  curve?: FloorResult[];
  knee?: number | undefined;
  qps?: QpsRun[];
  /** The probe's latencies over 5 s with nothing else running. */
  idleProbe?: Distribution | undefined;
  watch?: WatchResult;
  before?: BeforeResult;
  /** Phases that failed, with why: their figures are missing. */
  readonly errors: string[];
}

const nodeArgs = imageNodeArgs();
if (!existsSync(flags.main))
  throw new Error(`${flags.main} does not exist: run \`npm run bundle\` (or npm run bench:sync)`);
const build: SyncBuild = { main: flags.main, nodeArgs };
const dir = mkdtempSync(join(tmpdir(), 'acr-pull-webhook-sync-files-'));
const credentialFiles = SECRET_NAMES.map((name) => ({
  username: join(dir, `${name}-username`),
  password: join(dir, `${name}-password`),
}));
credentialFiles.forEach((files, index) => {
  writeFileSync(files.username, `bench-user-${index}`, { mode: 0o600 });
  writeFileSync(files.password, `bench-password-${index}-${'x'.repeat(40)}`, { mode: 0o600 });
});
const configPath = join(dir, 'config.yaml');
writeFileSync(
  configPath,
  toYaml({
    registries: SECRET_NAMES.map((secretName, index) => ({
      server: `bench${index}.azurecr.io`,
      secretName,
      credentials: { usernameFile: credentialFiles[index]?.username, passwordFile: credentialFiles[index]?.password },
    })),
    optIn: { label: INJECT_LABEL, value: INJECT_ENABLED },
  }),
);

say(
  `sync-secrets at scale: ${scales.join(', ')} opted-in namespaces × ${SECRET_NAMES.length} registries` +
    `${quick ? ' (--quick: a smoke test, not a result)' : ''}; ${relative(ROOT, build.main)}, ` +
    `node ${nodeArgs.join(' ')}; load ${load()}`,
);

let before: BeforeBuild | undefined;
const beforeBuilding = flags['skip-before'] || flags['skip-watch'] ? undefined : buildBefore(log);
// A failed build leaves the "before" figure to the fallback estimate rather than stopping the bench.
const beforeReady = beforeBuilding?.then(
  (built) => (before = built),
  (error: unknown) => log(`the build from before the secret watch failed, using the estimate: ${String(error)}`),
);
const results: ScaleResult[] = [];
try {
  const manifests = (await dryRunManifests(build, configPath)) as unknown as SecretManifest[];
  for (const scale of scales) results.push(await measureScale(scale, manifests));
} finally {
  await beforeReady;
  before?.remove();
  rmSync(dir, { recursive: true, force: true });
}
report();

async function measureScale(scale: number, manifests: readonly SecretManifest[]): Promise<ScaleResult> {
  log(`scale ${scale}: starting a fresh control plane (load ${load()})`);
  const cluster = await startSyncCluster(SECRET_NAMES, log);
  try {
    const pad = (index: number): string => String(index).padStart(5, '0');
    const optedIn = Array.from({ length: scale }, (_, index) => `${OPTED_IN_PREFIX}${pad(index)}`);
    // The floor writes into as many unlabelled namespaces, which --once lists too, as in a real cluster.
    const floorNamespaces = Array.from({ length: scale }, (_, index) => `floor-${pad(index)}`);
    const namespacesMs =
      (await createNamespaces(cluster.admin, optedIn, { [INJECT_LABEL]: INJECT_ENABLED })) +
      (await createNamespaces(cluster.admin, floorNamespaces, undefined));
    log(`scale ${scale}: ${scale * 2} namespaces created in ${seconds(namespacesMs)} (set-up, 32 at a time)`);
    await beforeReady;

    const counts = async (): Promise<RequestCount[]> =>
      parseRequestCounts(await apiserverMetrics(cluster.controlPlane.kubeConfig));
    const onceArgs = ['--config', configPath, '--kubeconfig', cluster.tokenKubeconfig];
    const onceTimeout = 120_000 + scale * 60;
    const measuredOnce = async (args: readonly string[], probe?: Probe): Promise<OnceRun> => {
      const start = await counts();
      const probedBefore = probe?.answered() ?? 0;
      const run = await runOnce(build, [...onceArgs, ...args], onceTimeout);
      const delta = withoutProbe(requestDelta(start, await counts()), (probe?.answered() ?? 0) - probedBefore);
      if (run.status !== 0) log(`--once exited ${run.status}:\n${run.stderrTail}`);
      return {
        ms: run.ms,
        status: run.status,
        summary: run.summary,
        requests: byVerb(delta),
        total: totalRequests(delta),
        writes: secretWrites(delta),
        throttled: throttled(delta),
      };
    };
    const floor = (concurrency: number, prefix: string): Promise<FloorResult> =>
      floorCreate({
        server: cluster.controlPlane.server,
        tls: { ca: cluster.controlPlane.caPem },
        token: cluster.token,
        namespaces: floorNamespaces,
        manifests,
        prefix,
        concurrency,
      });

    const floorResult = await floor(FLOOR_CONCURRENCY, 'floor-');
    log(`scale ${scale}: minimal client, ${floorResult.created} creates in ${seconds(floorResult.ms)}`);
    // At the sweep's scale the default's run doubles as the sweep's row of that value, probe and all.
    const defaultQps = SYNC_DEFAULTS.kubeApiQps;
    const sweeping = scale === qpsScale && !flags['skip-qps'];
    // The probe on an idle apiserver, for the latency the sync adds to everyone else's requests.
    let idleProbe: Distribution | undefined;
    if (sweeping) {
      const idle = startProbe(cluster.controlPlane.server, cluster.adminTls, floorNamespaces[0] ?? '');
      await sleep(5000);
      idleProbe = (await idle.stop()).latencyMs;
    }
    const probe = sweeping
      ? startProbe(cluster.controlPlane.server, cluster.adminTls, floorNamespaces[0] ?? '')
      : undefined;
    const coldRun = await measuredOnce([], probe);
    const coldProbe = await probe?.stop();
    const secrets = (
      await Promise.all(SECRET_NAMES.map((name) => countSecrets(cluster.admin, name, OPTED_IN_PREFIX)))
    ).reduce((sum, count) => sum + count, 0);
    const cold = { ...coldRun, secrets };
    log(`scale ${scale}: --once cold ${seconds(cold.ms)}, ${cold.summary}, ${secrets} secrets in place`);
    const warm = await measuredOnce([]);
    log(`scale ${scale}: --once warm ${seconds(warm.ms)}, ${warm.writes} writes, ${warm.summary}`);
    // The minimal client again after --once, so machine noise on one side shows as two differing floors.
    const floorAfter = await floor(FLOOR_CONCURRENCY, 'floor-again-');
    log(`scale ${scale}: minimal client again, ${floorAfter.created} creates in ${seconds(floorAfter.ms)}`);
    const repeats: ScaleResult['repeats'] = [];
    for (let run = 1; run < onceRuns; run++) {
      const selector = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;
      await deleteSecrets(cluster.admin, optedIn, selector);
      await deleteSecrets(cluster.admin, floorNamespaces, selector);
      const repeatFloor = await floor(FLOOR_CONCURRENCY, `floor-r${run}-`);
      const repeatCold = await measuredOnce([]);
      const repeatSecrets = (
        await Promise.all(SECRET_NAMES.map((name) => countSecrets(cluster.admin, name, OPTED_IN_PREFIX)))
      ).reduce((sum, count) => sum + count, 0);
      log(
        `scale ${scale}: run ${run + 1}/${onceRuns}: minimal client ${seconds(repeatFloor.ms)}, ` +
          `--once cold ${seconds(repeatCold.ms)} (${(repeatCold.ms / repeatFloor.ms).toFixed(2)}×)`,
      );
      repeats.push({ floor: repeatFloor, cold: { ...repeatCold, secrets: repeatSecrets } });
    }
    const result: ScaleResult = {
      scale,
      setup: { namespacesMs, namespaces: scale * 2 },
      floor: floorResult,
      floorAfter,
      cold,
      warm,
      repeats,
      errors: [],
    };
    // A failed phase is reported with what it measured so far, and the next phase still runs.
    const phase = async (name: string, work: () => Promise<void>): Promise<void> => {
      try {
        await work();
      } catch (error) {
        const message = `${name}: ${error instanceof Error ? error.message : String(error)}`.slice(0, 2000);
        log(`scale ${scale}: FAILED ${message}`);
        result.errors.push(message);
      }
    };

    if (scale === curveScale && !flags['skip-curve']) {
      result.curve = [];
      for (const concurrency of curveConcurrencies) {
        // Each point faces the same number of Secrets: without this, later points would face etcd and
        // the watch cache 2N Secrets larger than the one before them, and the curve would bend with order.
        const resetMs = await deleteSecrets(cluster.admin, floorNamespaces, `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`);
        log(`scale ${scale}: the minimal client's Secrets deleted in ${seconds(resetMs)}`);
        const point = await floor(concurrency, `c${concurrency}-`);
        log(`scale ${scale}: minimal client at ${concurrency}: ${point.perSecond.toFixed(0)} creates/s`);
        result.curve.push(point);
      }
      result.knee = throughputKnee(result.curve);
    }

    if (sweeping) {
      await phase('--kube-api-qps sweep', async () => {
        result.idleProbe = idleProbe;
        result.qps = [];
        for (const qps of qpsValues) {
          const burst = qps === 0 ? undefined : qps * 2;
          if (qps === defaultQps && burst === SYNC_DEFAULTS.kubeApiBurst && coldProbe !== undefined) {
            result.qps.push({ ...cold, qps, burst, probeMs: coldProbe.latencyMs, probeFailed: coldProbe.failed });
            continue;
          }
          const resetMs = await deleteSecrets(cluster.admin, optedIn, `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`);
          log(`scale ${scale}: secrets deleted in ${seconds(resetMs)} for --kube-api-qps ${qps}`);
          const sweepProbe = startProbe(cluster.controlPlane.server, cluster.adminTls, floorNamespaces[0] ?? '');
          const args = [
            '--kube-api-qps',
            String(qps),
            ...(burst === undefined ? [] : ['--kube-api-burst', String(burst)]),
          ];
          const run = await measuredOnce(args, sweepProbe);
          const probed = await sweepProbe.stop();
          log(
            `scale ${scale}: --kube-api-qps ${qps}: ${seconds(run.ms)}, ` +
              `probe p99 ${probed.latencyMs.p99.toFixed(1)} ms`,
          );
          result.qps.push({ ...run, qps, burst, probeMs: probed.latencyMs, probeFailed: probed.failed });
        }
      });
    }

    if (!flags['skip-watch']) {
      await phase('--watch', async () => {
        result.watch = await measureWatch(cluster, scale, counts);
      });
      const built = before;
      // The old build's passes are GETs of every Secret: past 5,000 namespaces one pass outlasts the window (at
      // 10,000 none finished in 6 minutes), so it costs many minutes to confirm what 1,000 and 5,000 show.
      if (!flags['skip-before'] && built !== undefined && scale <= beforeMaxScale)
        await phase('before the secret watch', async () => {
          result.before = await measureBefore(cluster, scale, counts, built);
        });
    }
    return result;
  } finally {
    await cluster.stop();
  }
}

function watchArgs(cluster: SyncCluster, identity: string): string[] {
  return [
    '--config',
    configPath,
    '--kubeconfig',
    cluster.tokenKubeconfig,
    '--lease-namespace',
    RELEASE_NAMESPACE,
    '--lease-identity',
    identity,
    '--resync-period',
    String(resyncSeconds),
  ];
}

/** Requests per minute over a window of at least two resync periods, after the initial sync. */
async function steadyState(counts: () => Promise<RequestCount[]>, passes: () => Promise<number>): Promise<SteadyState> {
  const windowMs = (2 * resyncSeconds + 5) * 1000;
  const passesBefore = await passes();
  const start = await counts();
  const started = performance.now();
  await sleep(windowMs);
  const delta = requestDelta(start, await counts());
  const elapsed = performance.now() - started;
  const perMinute = Object.fromEntries(
    Object.entries(byVerb(delta)).map(([key, count]) => [key, (count / elapsed) * 60_000]),
  );
  return {
    windowMs: elapsed,
    passes: (await passes()) - passesBefore,
    perMinute,
    totalPerMinute: (totalRequests(delta) / elapsed) * 60_000,
    writes: secretWrites(delta),
  };
}

async function measureWatch(
  cluster: SyncCluster,
  scale: number,
  counts: () => Promise<RequestCount[]>,
): Promise<WatchResult> {
  const newNamespaces = Array.from(
    { length: newNamespaceCount },
    (_, index) => `new-${String(index).padStart(4, '0')}`,
  );
  await createNamespaces(cluster.admin, newNamespaces, undefined);
  const observer = observeSecrets(
    cluster.controlPlane.server,
    cluster.adminTls,
    await secretsResourceVersion(cluster.admin),
  );
  const cgroup = createMemoryCgroup(`acr-pull-webhook-sync-bench-${process.pid}-${scale}`, limitBytes);
  try {
    const initialStart = await counts();
    const watch = await startWatch(build, watchArgs(cluster, 'bench-after'), cgroup.launcher);
    try {
      const synced = await watch.waitMetric(PASSED, 1, 60_000 + scale * 30);
      const initialRequests = byVerb(requestDelta(initialStart, await counts()));
      const initialSyncMs = synced - watch.startedAt;
      log(
        `scale ${scale}: --watch initial sync in ${seconds(initialSyncMs)}; ` +
          `steady state for ${2 * resyncSeconds + 5} s`,
      );
      const steady = await steadyState(counts, () => watch.metric(PASSED));
      const settledBytes = cgroupCurrentBytes(cgroup.path);
      log(`scale ${scale}: steady ${steady.totalPerMinute.toFixed(0)} requests/min; labelling ${newNamespaces.length}`);

      const labelStart = await counts();
      const labelled: { namespace: string; at: number }[] = [];
      for (const namespace of newNamespaces) {
        const answer = await cluster.admin.send(
          'PATCH',
          `/api/v1/namespaces/${namespace}`,
          { metadata: { labels: { [INJECT_LABEL]: INJECT_ENABLED } } },
          'application/merge-patch+json',
        );
        if (answer.status !== 200) throw new Error(`labelling ${namespace}: ${answer.status} ${answer.body}`);
        labelled.push({ namespace, at: performance.now() });
        await sleep(300);
      }
      const arrived = (namespace: string): number | undefined => {
        const times = SECRET_NAMES.map((name) => observer.seen.get(`${namespace}/${name}`)?.at);
        return times.every((time) => time !== undefined) ? Math.max(...(times as number[])) : undefined;
      };
      await observer.until(
        'secrets in every newly labelled namespace',
        () => labelled.every((entry) => arrived(entry.namespace) !== undefined),
        30_000,
      );
      await sleep(1000);
      const labelWrites = secretWrites(requestDelta(labelStart, await counts()));
      const latencyMs = distribution(labelled.map((entry) => Math.max(0, (arrived(entry.namespace) ?? 0) - entry.at)));
      log(`scale ${scale}: newly labelled p50 ${latencyMs.p50.toFixed(0)} ms, p99 ${latencyMs.p99.toFixed(0)} ms`);

      // Rotation: the first registry's password changes, so its Secret changes in every opted-in namespace.
      const rotated = SECRET_NAMES[0];
      const allOptedIn = [
        ...Array.from({ length: scale }, (_, index) => `${OPTED_IN_PREFIX}${String(index).padStart(5, '0')}`),
        ...newNamespaces,
      ];
      const rotationStart = await counts();
      const rotatedAt = performance.now();
      writeFileSync(credentialFiles[0]?.password ?? '', `bench-password-rotated-${Date.now()}`, { mode: 0o600 });
      const updated = (): number[] =>
        allOptedIn
          .map((namespace) => observer.seen.get(`${namespace}/${rotated}`)?.at ?? 0)
          .filter((at) => at > rotatedAt);
      await observer.until(
        'the rotated secret in every namespace',
        () => updated().length === allOptedIn.length,
        60_000 + scale * 40,
      );
      const rotationMs = Math.max(...updated()) - rotatedAt;
      await sleep(2000);
      const rotationDelta = requestDelta(rotationStart, await counts());
      log(`scale ${scale}: rotation reached ${allOptedIn.length} namespaces in ${seconds(rotationMs)}`);
      const peakBytes = cgroup.peakBytes();
      return {
        resyncSeconds,
        initialSyncMs,
        initialRequests,
        peakBytes,
        settledBytes,
        headroom: (limitBytes - peakBytes) / limitBytes,
        oomKills: cgroup.oomKills(),
        steady,
        newNamespaces: { count: labelled.length, latencyMs, writes: labelWrites },
        rotation: {
          changed: allOptedIn.length,
          ms: rotationMs,
          writes: secretWrites(rotationDelta),
          requests: byVerb(rotationDelta),
        },
      };
    } finally {
      await watch.stop();
    }
  } finally {
    observer.stop();
    cgroup.remove();
  }
}

async function measureBefore(
  cluster: SyncCluster,
  scale: number,
  counts: () => Promise<RequestCount[]>,
  built: BeforeBuild,
): Promise<BeforeResult> {
  const cgroup = createMemoryCgroup(`acr-pull-webhook-sync-bench-${process.pid}-${scale}-before`, limitBytes);
  try {
    const watch = await startWatch({ main: built.main, nodeArgs }, watchArgs(cluster, 'bench-before'), cgroup.launcher);
    try {
      // A GET per Secret per pass: at 10,000 namespaces one pass outlasts any wait worth making. Its
      // passes then run back to back, which is its steady state; the window measures that.
      const firstPassMs = Math.max(60_000, (2 * resyncSeconds + 30) * 1000);
      let initialSyncMs = Number.NaN;
      try {
        initialSyncMs = (await watch.waitMetric(PASSED, 1, firstPassMs)) - watch.startedAt;
      } catch (error) {
        if (watch.ended() !== undefined) throw error;
      }
      log(
        `scale ${scale}: before (${built.commit.slice(0, 10)}) ` +
          `${Number.isNaN(initialSyncMs) ? `still in its first pass after ${seconds(firstPassMs)}` : 'synced'}; ` +
          `steady state for ${2 * resyncSeconds + 5} s`,
      );
      const steady = await steadyState(counts, () => watch.metric(PASSED));
      return {
        commit: built.commit,
        initialSyncMs,
        firstPassWaitMs: firstPassMs,
        peakBytes: cgroup.peakBytes(),
        steady,
      };
    } finally {
      await watch.stop();
    }
  } finally {
    cgroup.remove();
  }
}

/** The first run against the mean of the floors around it, and each repeat against the floor just before it. */
function coldRatios(r: ScaleResult): number[] {
  return [
    r.cold.ms / ((r.floor.ms + r.floorAfter.ms) / 2),
    ...r.repeats.map((repeat) => repeat.cold.ms / repeat.floor.ms),
  ];
}

function medianRatio(r: ScaleResult): number {
  const sorted = coldRatios(r).sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? NaN)
    : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2;
}

function report(): void {
  const targets: Target[] = [];
  say('');
  say(`## --once (the ServiceAccount's token; default --kube-api-qps ${SYNC_DEFAULTS.kubeApiQps})`);
  say('');
  say(
    row([
      'namespaces',
      'set-up',
      'minimal client (32) before, after',
      '--once cold',
      'ratio',
      'secrets',
      'requests cold',
      '429s',
      'warm',
    ]).concat(' warm writes | requests warm |'),
  );
  say('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const floorMs = (r.floor.ms + r.floorAfter.ms) / 2;
    const ratio = medianRatio(r);
    say(
      `| ${r.scale} | ${seconds(r.setup.namespacesMs)} | ` +
        `${seconds(r.floor.ms)}, ${seconds(r.floorAfter.ms)} (${r.floor.failed + r.floorAfter.failed} failed) | ` +
        `${seconds(r.cold.ms)} | ${ratio.toFixed(2)}× | ${r.cold.secrets} | ${formatCounts(r.cold.requests)} | ` +
        `${r.cold.throttled} | ` +
        `${seconds(r.warm.ms)} | ${r.warm.writes} | ${formatCounts(r.warm.requests)} |`,
    );
    targets.push({
      what: `--once cold, ${r.scale} namespaces: time vs the minimal client at 32`,
      measured:
        r.repeats.length === 0
          ? `${seconds(r.cold.ms)} (${ratio.toFixed(2)}×), ${r.cold.secrets}/${r.scale * 2} secrets`
          : `median ${ratio.toFixed(2)}× of ${r.repeats.length + 1} runs, ${r.cold.secrets}/${r.scale * 2} secrets`,
      floor: `${seconds(floorMs)} (mean of ${seconds(r.floor.ms)} before, ${seconds(r.floorAfter.ms)} after)`,
      target: `≤ ${COLD_RATIO_TARGET}×, all secrets`,
      met:
        ratio <= COLD_RATIO_TARGET &&
        [r.cold, ...r.repeats.map((repeat) => repeat.cold)].every(
          (run) => run.secrets === r.scale * 2 && run.status === 0,
        ),
    });
    targets.push({
      what: `--once warm, ${r.scale} namespaces: writes`,
      measured: `${r.warm.writes} (${seconds(r.warm.ms)})`,
      floor: '0',
      target: '= 0',
      met: r.warm.writes === 0 && r.warm.status === 0,
    });
  }
  if (results.some((r) => r.repeats.length > 0)) {
    say('');
    say(`## --once cold, each run (--once-runs ${onceRuns}; the table above shows the first and the median ratio)`);
    say('');
    say('| namespaces | run | minimal client (32) | --once cold | ratio | secrets |');
    say('|---|---|---|---|---|---|');
    for (const r of results) {
      const ratios = coldRatios(r);
      const floors = [(r.floor.ms + r.floorAfter.ms) / 2, ...r.repeats.map((repeat) => repeat.floor.ms)];
      [r.cold, ...r.repeats.map((repeat) => repeat.cold)].forEach((run, index) => {
        const cells = [r.scale, index + 1, seconds(floors[index] ?? NaN), seconds(run.ms)];
        say(row([...cells, `${(ratios[index] ?? NaN).toFixed(2)}×`, run.secrets]));
      });
    }
  }
  for (const r of results) {
    if (r.curve === undefined) continue;
    say('');
    say(`## The minimal client's concurrency at ${r.scale} namespaces (${r.scale * 2} creates each)`);
    say('');
    say('| concurrency | time | creates/s | failed |');
    say('|---|---|---|---|');
    for (const point of r.curve)
      say(`| ${point.concurrency} | ${seconds(point.ms)} | ${point.perSecond.toFixed(0)} | ${point.failed} |`);
    say('');
    say(`Throughput stops growing (next step < +10 %) at concurrency ${r.knee ?? '?'}.`);
  }
  for (const r of results) {
    if (r.qps === undefined) continue;
    say('');
    say(`## --once cold at ${r.scale} namespaces by --kube-api-qps (burst 2×), another client's GET every 50 ms`);
    say('');
    say('| qps | burst | time | requests | 429s | probe p50 | probe p99 | probe max | probe failed |');
    say('|---|---|---|---|---|---|---|---|---|');
    if (r.idleProbe !== undefined)
      say(
        `| idle (no sync) | - | 5.0 s | - | - | ` +
          `${r.idleProbe.p50.toFixed(1)} ms | ${r.idleProbe.p99.toFixed(1)} ms | ` +
          `${r.idleProbe.max.toFixed(1)} ms | 0 |`,
      );
    for (const run of r.qps)
      say(
        `| ${run.qps === 0 ? '0 (unlimited)' : run.qps} | ${run.burst ?? '-'} | ${seconds(run.ms)} | ` +
          `${run.total} | ${run.throttled} | ` +
          `${run.probeMs.p50.toFixed(1)} ms | ${run.probeMs.p99.toFixed(1)} ms | ${run.probeMs.max.toFixed(1)} ms | ` +
          `${run.probeFailed} |`,
      );
  }
  const watched = results.filter((r) => r.watch !== undefined);
  if (watched.length > 0) {
    say('');
    say(
      `## --watch in a memory cgroup of ${(limitBytes / MiB).toFixed(0)} MiB (the chart's limit), ` +
        `--resync-period ${resyncSeconds} s`,
    );
    say('');
    say(
      row([
        'namespaces',
        'initial sync',
        'peak MiB',
        'settled MiB',
        'headroom',
        'OOM',
        'newly labelled p50/p99/max',
      ]).concat(' rotation | rotation writes (changed) |'),
    );
    say('|---|---|---|---|---|---|---|---|---|');
    for (const r of watched) {
      const w = r.watch as WatchResult;
      const n = w.newNamespaces;
      say(
        `| ${r.scale} | ${seconds(w.initialSyncMs)} | ${(w.peakBytes / MiB).toFixed(0)} | ` +
          `${(w.settledBytes / MiB).toFixed(0)} | ` +
          `${(w.headroom * 100).toFixed(0)} % | ${w.oomKills} | ` +
          `${n === undefined ? '-' : `${latencies(n.latencyMs)} (${n.count}, ${n.writes} writes)`} | ` +
          `${w.rotation === undefined ? '-' : seconds(w.rotation.ms)} | ` +
          `${w.rotation === undefined ? '-' : `${w.rotation.writes} (${w.rotation.changed})`} |`,
      );
      targets.push({
        what: `--watch, ${r.scale} namespaces: memory headroom under the chart's limit`,
        measured: `${(w.headroom * 100).toFixed(0)} % (peak ${(w.peakBytes / MiB).toFixed(0)} MiB)`,
        floor: `${(limitBytes / MiB).toFixed(0)} MiB limit`,
        target: `≥ ${HEADROOM_TARGET * 100} %`,
        met: w.headroom >= HEADROOM_TARGET && w.oomKills === 0,
      });
      if (n !== undefined)
        targets.push({
          what: `--watch, ${r.scale} namespaces: newly labelled namespace, both secrets (p99 of ${n.count})`,
          measured: `${n.latencyMs.p99.toFixed(0)} ms`,
          floor: '-',
          target: `≤ ${NEW_NAMESPACE_P99_TARGET_MS} ms`,
          met: n.latencyMs.p99 <= NEW_NAMESPACE_P99_TARGET_MS,
        });
      if (w.rotation !== undefined)
        targets.push({
          what: `--watch, ${r.scale} namespaces: credential rotation writes`,
          measured: `${w.rotation.writes} in ${seconds(w.rotation.ms)}`,
          floor: `${w.rotation.changed} secrets changed`,
          target: '= secrets changed',
          met: w.rotation.writes === w.rotation.changed,
        });
    }
    say('');
    say('### Steady state: requests per minute over a window of ≥ 2 resync periods after the initial sync');
    say('');
    say(
      row(['namespaces', 'build', 'window', 'passes', 'requests/min', 'by verb and resource (per minute)']).concat(
        ' secret writes | peak MiB |',
      ),
    );
    say('|---|---|---|---|---|---|---|---|');
    for (const r of watched) {
      const w = r.watch as WatchResult;
      say(
        `| ${r.scale} | this tree | ${seconds(w.steady.windowMs)} | ${w.steady.passes} | ` +
          `${w.steady.totalPerMinute.toFixed(0)} | ` +
          `${formatCounts(w.steady.perMinute, 1, 1)} | ${w.steady.writes} | ${(w.peakBytes / MiB).toFixed(0)} |`,
      );
      const b = r.before;
      const firstPass =
        b === undefined || !Number.isNaN(b.initialSyncMs)
          ? seconds(b?.initialSyncMs ?? Number.NaN)
          : `not done in ${seconds(b.firstPassWaitMs)}`;
      if (r.before !== undefined)
        say(
          `| ${r.scale} | before the watch (${r.before.commit.slice(0, 10)}; first pass ${firstPass}) | ` +
            `${seconds(r.before.steady.windowMs)} | ` +
            `${r.before.steady.passes} | ${r.before.steady.totalPerMinute.toFixed(0)} | ` +
            `${formatCounts(r.before.steady.perMinute, 1, 1)} | ${r.before.steady.writes} | ` +
            `${(r.before.peakBytes / MiB).toFixed(0)} |`,
        );
      // Without a measured "before": a GET per Secret per resync, which is what that design did.
      const estimate = ((r.scale * SECRET_NAMES.length) / resyncSeconds) * 60;
      const beforeRate = r.before?.steady.totalPerMinute ?? estimate;
      targets.push({
        what: `--watch, ${r.scale} namespaces: steady-state requests/min vs before the secret watch`,
        measured: `${w.steady.totalPerMinute.toFixed(0)}/min, ${w.steady.writes} writes`,
        floor: `${beforeRate.toFixed(0)}/min${r.before === undefined ? ' (estimate: a GET per Secret a period)' : ''}`,
        target: '< before, 0 writes',
        met: w.steady.totalPerMinute < beforeRate && w.steady.writes === 0,
      });
    }
  }
  if (results.length > 1) {
    say('');
    say('## Cost growth (per namespace; ratio to the smallest scale, 1.00 = linear)');
    say('');
    const rows: [string, (r: ScaleResult) => number | undefined, (v: number) => string][] = [
      ['--once cold time', (r) => r.cold.ms, (v) => `${v.toFixed(2)} ms`],
      ['--once cold requests', (r) => r.cold.total, (v) => v.toFixed(2)],
      ['--once warm time', (r) => r.warm.ms, (v) => `${v.toFixed(2)} ms`],
      ['--once warm requests', (r) => r.warm.total, (v) => v.toFixed(2)],
      ['--watch peak memory', (r) => r.watch?.peakBytes, (v) => `${(v / 1024).toFixed(1)} KiB`],
      ['--watch initial sync', (r) => r.watch?.initialSyncMs, (v) => `${v.toFixed(2)} ms`],
      ['--watch rotation time', (r) => r.watch?.rotation?.ms, (v) => `${v.toFixed(2)} ms`],
    ];
    say(`| figure | ${results.map((r) => r.scale).join(' | ')} |`);
    say(`|---|${results.map(() => '---').join('|')}|`);
    for (const [name, pick, format] of rows) {
      const points = results.flatMap((r) => {
        const value = pick(r);
        return value === undefined ? [] : [{ scale: r.scale, value }];
      });
      if (points.length < 2) continue;
      const cells = growth(points).map(
        (point) =>
          `${format(point.perNamespace)} (${point.ratio.toFixed(2)}${point.ratio > 1.25 ? ', not linear' : ''})`,
      );
      say(`| ${name} | ${cells.join(' | ')} |`);
    }
  }
  for (const r of results) for (const error of r.errors) say(`\n**${r.scale} namespaces, failed**: ${error}`);
  say('');
  say(`## Targets (issue #17 part 2)${quick ? ' — --quick, a smoke test' : ''}`);
  say('');
  for (const line of targetsTable(targets)) say(line);
  say('');
  say(`load average at the end: ${load()}`);
  mkdirSync(dirname(flags.out), { recursive: true });
  writeFileSync(
    flags.out,
    `${JSON.stringify(
      {
        quick,
        scales,
        resyncSeconds,
        limitBytes,
        nodeArgs,
        defaults: SYNC_DEFAULTS,
        results,
        targets,
        load: loadavg(),
      },
      null,
      2,
    )}\n`,
  );
  say(`wrote ${flags.out}`);
  if (results.some((r) => r.cold.status !== 0 || r.errors.length > 0)) process.exitCode = 1;
}
