// What the webhook adds to a pod create on a real kube-apiserver: pods created at a steady rate
// (open loop: a create starts every 1/rate seconds whether or not earlier ones have finished),
// alternately with no MutatingWebhookConfiguration at all ("without") and with the webhook
// registered as the chart registers it ("with"). Latency is the client's, from writing the POST to
// reading the whole response, over a keep-alive HTTPS agent with the admin client certificate.
// The apiserver's own view comes from its /metrics:
// apiserver_admission_webhook_admission_duration_seconds for our webhook during the "with" phases.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { INJECT_ENABLED, INJECT_LABEL } from '../../src/constants.ts';
import { createNamespace, startControlPlane } from '../../test/support/control-plane.ts';
import { registerWebhook } from '../../test/support/webhook-configuration.ts';
import { readFrom, startServer, type ServerFiles, type ServerSpec } from './processes.ts';
import { distribution, type Distribution } from './stats.ts';
import { typicalPod } from './typical-pod.ts';

const NAMESPACE = 'bench';
const CONFIGURATION = 'acr-pull-webhook-bench';
const WEBHOOK_NAME = 'pods.acr-pull-webhook.io';
const WEBHOOK_METRIC = 'apiserver_admission_webhook_admission_duration_seconds';

export interface ControlPlaneOptions {
  readonly ratePerSecond: number;
  readonly phaseSeconds: number;
  readonly warmupSeconds: number;
  readonly rounds: number;
  readonly webhook: ServerSpec;
  readonly files: ServerFiles;
  readonly caPem: string;
  readonly log: (line: string) => void;
}

export interface PhaseResult {
  readonly phase: 'without' | 'with';
  readonly round: number;
  readonly created: number;
  readonly failed: number;
  /** Creates answered without imagePullSecrets (in "with": the webhook was not applied). */
  readonly unpatched: number;
  /** Largest delay between a create's scheduled and actual start, ms (the driver keeping up). */
  readonly maxStartLagMs: number;
  /** Share of the machine's CPU time (all cores) that was busy during the phase, from /proc/stat. */
  readonly machineBusy: number;
  readonly latencyMs: Distribution;
  /** "with" only: the apiserver's histogram of calls to our webhook during the phase. */
  readonly apiserverWebhook?: WebhookHistogram;
  /** "with" only: the webhook's own durationMs log field during the phase. */
  readonly webhookServerMs?: Distribution;
  /** "with" only: the webhook process's CPU time per review, µs. */
  readonly webhookCpuMicrosPerReview?: number;
}

/** Busy and total jiffies of all CPUs so far (/proc/stat; idle and iowait count as not busy). */
function cpuJiffies(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

export interface WebhookHistogram {
  readonly count: number;
  readonly meanMs: number;
  /** Cumulative share of calls at or under each bucket bound (seconds). */
  readonly buckets: readonly { le: number; share: number }[];
}

export interface ControlPlaneResult {
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
    buckets: bounds.map((le) => ({ le, share: count === 0 ? Number.NaN : ((after.buckets.get(le) ?? 0) - (before.buckets.get(le) ?? 0)) / count })),
  };
}

export async function runControlPlanePhases(options: ControlPlaneOptions): Promise<ControlPlaneResult> {
  const { log } = options;
  log('control plane: starting etcd and kube-apiserver');
  const controlPlane = await startControlPlane();
  const webhook = await startServer(options.webhook, options.files);
  try {
    const kc = controlPlane.kubeConfig;
    await createNamespace(kc, NAMESPACE, { [INJECT_LABEL]: INJECT_ENABLED });
    const user = kc.getCurrentUser();
    const cluster = kc.getCurrentCluster();
    if (!user?.certData || !user.keyData || !cluster?.caData) throw new Error('admin kubeconfig without inline certificates');
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
          { agent, hostname: server.hostname, port: server.port, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
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

    const podBody = JSON.stringify(typicalPod());
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
    const setWebhook = async (on: boolean): Promise<void> => {
      if (on) {
        await registerWebhook(kc, { name: CONFIGURATION, port: webhook.port, caPem: options.caPem, probeNamespace: NAMESPACE });
        return;
      }
      await admission.deleteMutatingWebhookConfiguration({ name: CONFIGURATION }).catch(() => undefined);
      // Wait until the apiserver has dropped it: a dry-run probe comes back unpatched.
      const deadline = Date.now() + 30_000;
      for (;;) {
        const pod = await core.createNamespacedPod({
          namespace: NAMESPACE,
          dryRun: 'All',
          body: { metadata: { generateName: 'probe-' }, spec: { containers: [{ name: 'probe', image: 'myregistry.azurecr.io/probe' }] } },
        });
        if ((pod.spec?.imagePullSecrets ?? []).length === 0) return;
        if (Date.now() > deadline) throw new Error('the apiserver still calls the webhook 30 s after its configuration was deleted');
        await sleep(100);
      }
    };

    const phases: PhaseResult[] = [];
    for (let round = 1; round <= options.rounds; round += 1) {
      for (const phase of ['without', 'with'] as const) {
        await setWebhook(phase === 'with');
        log(`control plane: round ${round}, ${phase} the webhook: ${options.warmupSeconds} s warm-up, ${options.phaseSeconds} s at ${options.ratePerSecond} creates/s`);
        await drive(options.warmupSeconds);
        const before = parseWebhookHistogram((await call('GET', '/metrics')).text);
        const logStart = readFrom(webhook.logFile, 0).offset;
        const cpuBefore = cpuJiffies();
        const webhookCpuBefore = webhook.cpuSeconds();
        const run = await drive(options.phaseSeconds);
        const cpuAfter = cpuJiffies();
        const webhookCpu = webhook.cpuSeconds() - webhookCpuBefore;
        const after = parseWebhookHistogram((await call('GET', '/metrics')).text);
        let extra: Pick<PhaseResult, 'apiserverWebhook' | 'webhookServerMs' | 'webhookCpuMicrosPerReview'> = {};
        if (phase === 'with') {
          const durations = readFrom(webhook.logFile, logStart)
            .text.split('\n')
            .filter((line) => line.includes('"msg":"review"'))
            .map((line) => (JSON.parse(line) as { durationMs: number }).durationMs);
          extra = {
            apiserverWebhook: histogramDelta(before, after),
            webhookServerMs: distribution(durations),
            webhookCpuMicrosPerReview: (webhookCpu * 1e6) / Math.max(1, durations.length),
          };
        }
        phases.push({
          phase,
          round,
          created: run.latencies.length,
          failed: run.failed,
          unpatched: run.unpatched,
          maxStartLagMs: run.maxStartLagMs,
          machineBusy: (cpuAfter.busy - cpuBefore.busy) / (cpuAfter.total - cpuBefore.total),
          latencyMs: distribution(run.latencies),
          ...extra,
        });
      }
    }
    agent.destroy();
    return { ratePerSecond: options.ratePerSecond, phaseSeconds: options.phaseSeconds, phases };
  } finally {
    await webhook.stop();
    await controlPlane.stop();
  }
}
