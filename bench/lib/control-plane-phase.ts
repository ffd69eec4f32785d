// What the webhook adds to a pod create on a real kube-apiserver: pods created at a steady rate
// (open loop: a create starts every 1/rate seconds whether or not earlier ones have finished) with
// no MutatingWebhookConfiguration at all ("without"), with the webhook registered as the chart
// registers it, CEL matchConditions included ("with"), and, if given, with the floor
// (bench/floor.ts) registered the same way ("floor"): what any webhook on this stack costs the
// apiserver. Each round runs every phase, in an order rotated from round to round, each from an
// empty namespace. Latency is measured twice: the client's, from writing the POST to reading the
// whole response, over a keep-alive HTTPS agent with the admin client certificate; and the
// apiserver's, from its audit log (batched, off the request path): requestReceivedTimestamp to
// stageTimestamp of ResponseComplete, in microseconds, which leaves out the driver's own delays on
// the shared cores. The apiserver's view of the webhook calls comes from its /metrics:
// apiserver_admission_webhook_admission_duration_seconds.
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import { loadConfig } from '../../src/config/config.ts';
import { LOG_FLUSH_INTERVAL_MS } from '../../src/process/log-destination.ts';
import { INJECT_ENABLED, INJECT_LABEL, MUTATE_PATH } from '../../src/constants.ts';
import { createNamespace, startControlPlane } from '../../test/support/control-plane.ts';
import { findObject, renderChart } from '../../test/support/helm.ts';
import {
  processCpuSeconds,
  readFrom,
  startServer,
  type ServerFiles,
  type ServerProcess,
  type ServerSpec,
} from './processes.ts';
import { distribution, type Distribution } from './stats.ts';
import { smallPod, typicalPod } from './pods.ts';

const NAMESPACE = 'bench';
const CONFIGURATION = 'acr-pull-webhook-bench';
const WEBHOOK_NAME = 'pods.acr-pull-webhook.io';
const WEBHOOK_METRIC = 'apiserver_admission_webhook_admission_duration_seconds';

/**
 * Which pod the phase creates. At 100/s the typical pod (20 KB) alone keeps the apiserver at a whole core
 * of this 2-core machine (its managed fields, JSON and GC: about 10 ms of CPU a create) and the machine
 * at 100 % with any server registered, where latency is queueing; the small pod leaves it half idle.
 */
export type PhasePod = 'small' | 'typical';
export const PHASE_PODS: Record<PhasePod, () => V1Pod> = { small: smallPod, typical: typicalPod };

export interface ControlPlaneOptions {
  readonly pod: PhasePod;
  readonly ratePerSecond: number;
  readonly phaseSeconds: number;
  readonly warmupSeconds: number;
  readonly rounds: number;
  readonly webhook: ServerSpec;
  /** Also measure creates with the floor registered in the webhook's place. */
  readonly floor?: ServerSpec;
  readonly files: ServerFiles;
  readonly caPem: string;
  readonly log: (line: string) => void;
}

export interface PhaseResult {
  readonly phase: Phase;
  readonly round: number;
  readonly created: number;
  readonly failed: number;
  /** Creates answered without imagePullSecrets (in "with": the webhook was not applied). */
  readonly unpatched: number;
  /** Largest delay between a create's scheduled and actual start, ms (the driver keeping up). */
  readonly maxStartLagMs: number;
  /** Share of the machine's CPU time (all cores) that was busy during the phase, from /proc/stat. */
  readonly machineBusy: number;
  /** Cores each process kept busy during the phase, on average: where the machine's CPU went. */
  readonly cores: ProcessCores;
  readonly latencyMs: Distribution;
  /** The apiserver's own latency for the same creates, from its audit log. */
  readonly apiserverLatencyMs: Distribution;
  /** "with" and "floor": the apiserver's histogram of calls to the registered server during the phase. */
  readonly apiserverWebhook?: WebhookHistogram;
  /** "with" only: the webhook's own durationMs log field during the phase. */
  readonly webhookServerMs?: Distribution;
  /** "with" and "floor": the registered server's CPU time per create, µs. */
  readonly webhookCpuMicrosPerReview?: number;
  /** "with" and "floor": the longest event-loop delay the registered server saw during the phase, ms. */
  readonly webhookEventLoopMaxMs?: number;
}

/** Busy and total jiffies of all CPUs so far (/proc/stat; idle and iowait count as not busy). */
function cpuJiffies(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export interface ProcessCores {
  readonly apiserver: number;
  readonly etcd: number;
  /** This process: the pod creates, their TLS and the parsing of their answers. */
  readonly driver: number;
  /** "with" and "floor": the registered server. */
  readonly server?: number;
}

export interface WebhookHistogram {
  readonly count: number;
  readonly meanMs: number;
  /** Cumulative share of calls at or under each bucket bound (seconds). */
  readonly buckets: readonly { le: number; share: number }[];
}

export type Phase = 'without' | 'floor' | 'with';

export interface ControlPlaneResult {
  readonly pod: PhasePod;
  readonly ratePerSecond: number;
  readonly phaseSeconds: number;
  readonly phases: readonly PhaseResult[];
}

type Buckets = Map<number, number>;
interface HistogramSample {
  buckets: Buckets;
  sum: number;
  count: number;
}

function parseWebhookHistogram(text: string): HistogramSample {
  const sample: HistogramSample = { buckets: new Map(), sum: 0, count: 0 };
  for (const line of text.split('\n')) {
    if (!line.startsWith(WEBHOOK_METRIC)) continue;
    const match = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!match) continue;
    const [, name, labelText = '', value = '0'] = match;
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels['name'] !== WEBHOOK_NAME || labels['type'] !== 'admit' || labels['operation'] !== 'CREATE') continue;
    if (name === `${WEBHOOK_METRIC}_bucket`) {
      const le = labels['le'] === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels['le']);
      sample.buckets.set(le, (sample.buckets.get(le) ?? 0) + Number(value));
    } else if (name === `${WEBHOOK_METRIC}_sum`) sample.sum += Number(value);
    else if (name === `${WEBHOOK_METRIC}_count`) sample.count += Number(value);
  }
  return sample;
}

function histogramDelta(before: HistogramSample, after: HistogramSample): WebhookHistogram {
  const count = after.count - before.count;
  const bounds = [...after.buckets.keys()].sort((a, b) => a - b);
  return {
    count,
    meanMs: count === 0 ? Number.NaN : ((after.sum - before.sum) / count) * 1000,
    buckets: bounds.map((le) => ({
      le,
      share: count === 0 ? Number.NaN : ((after.buckets.get(le) ?? 0) - (before.buckets.get(le) ?? 0)) / count,
    })),
  };
}

/**
 * The MutatingWebhookConfiguration the chart renders for the servers' own registries, CEL
 * matchConditions and all (the apiserver evaluates them on every create), pointed at `port` on
 * loopback instead of the in-cluster Service.
 */
function chartConfiguration(configFile: string): (port: number, caPem: string) => V1MutatingWebhookConfiguration {
  const registries = loadConfig(configFile).registries.map((entry) => ({
    server: entry.server,
    secretName: entry.secretName,
    credentials: { token: { name: 'bench', password: 'not-a-real-password' } },
  }));
  const rendered = findObject<V1MutatingWebhookConfiguration>(
    renderChart({ values: { registries } }),
    'MutatingWebhookConfiguration',
  );
  return (port, caPem) => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: CONFIGURATION },
    webhooks: (rendered.webhooks ?? []).map((webhook) => ({
      ...webhook,
      clientConfig: { url: `https://127.0.0.1:${port}${MUTATE_PATH}`, caBundle: Buffer.from(caPem).toString('base64') },
    })),
  });
}

/** Audit only what is measured, at the least detail that carries both timestamps. */
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'Metadata', verbs: ['create'], namespaces: [NAMESPACE], resources: [{ group: '', resources: ['pods'] }] },
    { level: 'None' },
  ],
};

/**
 * Milliseconds since the epoch of an RFC 3339 time with up to nanosecond digits (Date.parse keeps only milliseconds).
 */
export function microTimeMs(text: string): number {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/.exec(text);
  if (!match) return Number.NaN;
  return Date.parse(`${match[1]}Z`) + Number(`0.${match[2] ?? '0'}`) * 1000;
}

interface AuditEvent {
  stage?: string;
  verb?: string;
  requestURI?: string;
  objectRef?: { resource?: string; namespace?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp?: string;
  stageTimestamp?: string;
}

/**
 * Apiserver latencies (ms) of the pod creates in the namespace received within [fromMs, toMs], from audit log lines.
 */
export function auditedCreateLatencies(text: string, fromMs: number, toMs: number): number[] {
  const latencies: number[] = [];
  // The log is read while the apiserver appends to it: a last line without its newline is not whole yet.
  for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
    if (line === '') continue;
    const event = JSON.parse(line) as AuditEvent;
    if (event.stage !== 'ResponseComplete' || event.verb !== 'create' || event.objectRef?.resource !== 'pods') continue;
    if (
      event.objectRef.namespace !== NAMESPACE ||
      event.responseStatus?.code !== 201 ||
      event.requestURI?.includes('dryRun') === true
    )
      continue;
    const received = microTimeMs(event.requestReceivedTimestamp ?? '');
    if (received < fromMs || received > toMs) continue;
    latencies.push(microTimeMs(event.stageTimestamp ?? '') - received);
  }
  return latencies;
}

export async function runControlPlanePhases(options: ControlPlaneOptions): Promise<ControlPlaneResult> {
  const { log } = options;
  const configuration = chartConfiguration(options.files.configFile);
  log('control plane: starting etcd and kube-apiserver');
  const policyFile = join(options.files.dir, 'audit-policy.json');
  const auditLog = join(options.files.dir, 'audit.log');
  writeFileSync(policyFile, JSON.stringify(AUDIT_POLICY));
  const controlPlane = await startControlPlane({
    apiserverArgs: [
      `--audit-policy-file=${policyFile}`,
      `--audit-log-path=${auditLog}`,
      '--audit-log-format=json',
      // Batched, so writing the log is not part of any request's latency; flushed within a second.
      '--audit-log-mode=batch',
      '--audit-log-batch-max-wait=1s',
      // The apiserver compacts etcd every 5 minutes by default; a compaction stalls whichever
      // phase it lands in (creates of up to 800 ms were seen), which says nothing about webhooks.
      '--etcd-compaction-interval=0',
    ],
  });
  const webhook = await startServer(options.webhook, options.files);
  const floor = options.floor ? await startServer(options.floor, options.files) : undefined;
  try {
    const kc = controlPlane.kubeConfig;
    await createNamespace(kc, NAMESPACE, { [INJECT_LABEL]: INJECT_ENABLED });
    const user = kc.getCurrentUser();
    const cluster = kc.getCurrentCluster();
    if (!user?.certData || !user.keyData || !cluster?.caData)
      throw new Error('admin kubeconfig without inline certificates');
    const agent = new Agent({
      keepAlive: true,
      maxSockets: 64,
      ca: Buffer.from(cluster.caData, 'base64'),
      cert: Buffer.from(user.certData, 'base64'),
      key: Buffer.from(user.keyData, 'base64'),
    });
    const server = new URL(controlPlane.server);

    const call = (method: string, path: string, body?: string): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            agent,
            hostname: server.hostname,
            port: server.port,
            method,
            path,
            headers:
              body === undefined
                ? {}
                : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(body);
      });

    const podBody = JSON.stringify(PHASE_PODS[options.pod]());
    const createPath = `/api/v1/namespaces/${NAMESPACE}/pods?fieldManager=kube-controller-manager`;

    /** Creates pods at the rate for `seconds`; returns per-create latencies and outcomes. */
    const drive = async (seconds: number) => {
      const total = Math.round(seconds * options.ratePerSecond);
      const intervalMs = 1000 / options.ratePerSecond;
      const latencies: number[] = [];
      let failed = 0;
      let unpatched = 0;
      let maxStartLagMs = 0;
      const inFlight: Promise<void>[] = [];
      const t0 = performance.now() + 20;
      for (let i = 0; i < total; i += 1) {
        const due = t0 + i * intervalMs;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const started = performance.now();
        maxStartLagMs = Math.max(maxStartLagMs, started - due);
        inFlight.push(
          call('POST', createPath, podBody).then(
            ({ status, text }) => {
              const elapsed = performance.now() - started;
              if (status !== 201) {
                failed += 1;
                return;
              }
              latencies.push(elapsed);
              const pod = JSON.parse(text) as { spec?: { imagePullSecrets?: unknown[] } };
              if ((pod.spec?.imagePullSecrets ?? []).length === 0) unpatched += 1;
            },
            () => {
              failed += 1;
            },
          ),
        );
      }
      await Promise.all(inFlight);
      return { latencies, failed, unpatched, maxStartLagMs };
    };

    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const servers = floor ? [webhook, floor] : [webhook];
    const probe = () =>
      core.createNamespacedPod({
        namespace: NAMESPACE,
        dryRun: 'All',
        body: {
          metadata: { generateName: 'probe-' },
          spec: { containers: [{ name: 'probe', image: 'myregistry.azurecr.io/probe' }] },
        },
      });
    /**
     * Registers `target` (none: deletes the configuration), then waits until a dry-run create reaches it and no other
     * server.
     */
    const register = async (target: ServerProcess | undefined): Promise<void> => {
      await admission.deleteMutatingWebhookConfiguration({ name: CONFIGURATION }).catch(() => undefined);
      if (target)
        await admission.createMutatingWebhookConfiguration({ body: configuration(target.port, options.caPem) });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const before = await Promise.all(servers.map((server) => server.reviewsAnswered()));
        await probe();
        const after = await Promise.all(servers.map((server) => server.reviewsAnswered()));
        const reached = servers.filter((_, i) => (after[i] ?? 0) > (before[i] ?? 0));
        if (reached.length === (target ? 1 : 0) && (target === undefined || reached[0] === target)) return;
        if (Date.now() > deadline)
          throw new Error(`the apiserver did not switch to ${target?.spec.name ?? 'no webhook'} within 30 s`);
        await sleep(100);
      }
    };
    const targets: Record<Phase, ServerProcess | undefined> = { without: undefined, with: webhook, floor };

    // Every phase starts with an empty namespace: pods left by earlier phases slow the apiserver and
    // etcd down, which would count against whichever phase runs later. (Pods never scheduled to a
    // node are deleted at once, without a grace period.)
    const clearPods = async (): Promise<void> => {
      await core.deleteCollectionNamespacedPod({ namespace: NAMESPACE });
      const deadline = Date.now() + 120_000;
      while ((await core.listNamespacedPod({ namespace: NAMESPACE, limit: 1 })).items.length > 0) {
        if (Date.now() > deadline) throw new Error(`pods in ${NAMESPACE} still there 120 s after deleting them`);
        await sleep(200);
      }
    };

    const phases: PhaseResult[] = [];
    const kinds: Phase[] = floor ? ['without', 'floor', 'with'] : ['without', 'with'];
    for (let round = 1; round <= options.rounds; round += 1) {
      // Rotated each round, so that no phase always runs first or right after the same one.
      const order = kinds.map((_, i) => kinds[(i + round - 1) % kinds.length] as Phase);
      for (const phase of order) {
        await clearPods();
        await register(targets[phase]);
        const label = { without: 'without a webhook', with: 'with the webhook', floor: 'with the floor' }[phase];
        log(
          `control plane: round ${round}, ${label}: ${options.warmupSeconds} s warm-up, ` +
            `${options.phaseSeconds} s at ${options.ratePerSecond} creates/s`,
        );
        await drive(options.warmupSeconds);
        const before = parseWebhookHistogram((await call('GET', '/metrics')).text);
        const logStart = readFrom(webhook.logFile, 0).offset;
        const cpuBefore = cpuJiffies();
        const target = targets[phase];
        await target?.eventLoop(); // resets its event-loop monitor
        const targetCpuBefore = target?.cpuSeconds() ?? 0;
        const pids = controlPlane.pids();
        const processCpu = (): { apiserver: number; etcd: number; driver: number } => {
          const own = process.cpuUsage();
          return {
            apiserver: processCpuSeconds(pids.apiserver),
            etcd: processCpuSeconds(pids.etcd),
            driver: (own.user + own.system) / 1e6,
          };
        };
        const processCpuBefore = processCpu();
        // Events of this window are written after this point; earlier ones are skipped by time.
        const auditOffset = existsSync(auditLog) ? statSync(auditLog).size : 0;
        const windowStart = Date.now();
        const run = await drive(options.phaseSeconds);
        const windowEnd = Date.now();
        const targetCpu = (target?.cpuSeconds() ?? 0) - targetCpuBefore;
        const processCpuAfter = processCpu();
        const windowSeconds = (windowEnd - windowStart) / 1000;
        const cores: ProcessCores = {
          apiserver: (processCpuAfter.apiserver - processCpuBefore.apiserver) / windowSeconds,
          etcd: (processCpuAfter.etcd - processCpuBefore.etcd) / windowSeconds,
          driver: (processCpuAfter.driver - processCpuBefore.driver) / windowSeconds,
          ...(target ? { server: targetCpu / windowSeconds } : {}),
        };
        const targetEventLoop = await target?.eventLoop();
        const cpuAfter = cpuJiffies();
        const after = parseWebhookHistogram((await call('GET', '/metrics')).text);
        let extra: Pick<
          PhaseResult,
          'apiserverWebhook' | 'webhookServerMs' | 'webhookCpuMicrosPerReview' | 'webhookEventLoopMaxMs'
        > = {};
        if (target) {
          extra = {
            apiserverWebhook: histogramDelta(before, after),
            webhookCpuMicrosPerReview: (targetCpu * 1e6) / Math.max(1, run.latencies.length),
            webhookEventLoopMaxMs: (targetEventLoop?.max ?? Number.NaN) * 1000,
          };
        }
        if (phase === 'with') {
          await sleep(2 * LOG_FLUSH_INTERVAL_MS); // review lines are written in batches
          const durations = readFrom(webhook.logFile, logStart)
            .text.split('\n')
            .filter((line) => line.includes('"msg":"review"'))
            .map((line) => (JSON.parse(line) as { durationMs: number }).durationMs);
          extra = { ...extra, webhookServerMs: distribution(durations) };
        }
        // The audit backend writes in batches: wait until every create of the window is there.
        let apiserverLatencies: number[] = [];
        for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(250)) {
          const text = existsSync(auditLog) ? readFrom(auditLog, auditOffset).text : '';
          apiserverLatencies = auditedCreateLatencies(text, windowStart, windowEnd);
          if (apiserverLatencies.length >= run.latencies.length) break;
        }
        phases.push({
          phase,
          round,
          created: run.latencies.length,
          failed: run.failed,
          unpatched: run.unpatched,
          maxStartLagMs: run.maxStartLagMs,
          machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
          cores,
          latencyMs: distribution(run.latencies),
          apiserverLatencyMs: distribution(apiserverLatencies),
          ...extra,
        });
      }
    }
    agent.destroy();
    return { pod: options.pod, ratePerSecond: options.ratePerSecond, phaseSeconds: options.phaseSeconds, phases };
  } finally {
    await floor?.stop();
    await webhook.stop();
    await controlPlane.stop();
  }
}
