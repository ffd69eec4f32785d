// The chart's dashboard and alerts on a real Prometheus (tools/build.sh): it scrapes the real `serve` and
// `sync-secrets --watch` (with token credentials from the local Entra + ACR token service) on the local control
// plane through static targets relabelled by the chart's own PodMonitor relabelings, loads the chart's rule file,
// and answers every dashboard query through its HTTP API.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { type AcrTokenService, startAcrTokenService } from '../support/acr-token-service.ts';
import { testPki } from '../support/certificates.ts';
import { terminate } from '../support/child-process.ts';
import { createNamespace, toolPath } from '../support/control-plane.ts';
import { CHART_DIR, findObject, type Manifest, renderChart } from '../support/helm.ts';
import { startSyncWatcher, type SyncWatcher } from '../support/sync-process.ts';
import { registerWebhook } from '../support/webhook-configuration.ts';
import { startWebhookProcess, type WebhookProcess, writeServeFiles } from '../support/webhook-process.ts';

const KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const dir = mkdtempSync(join(tmpdir(), 'e2e-prometheus-'));
const suffix = randomUUID().slice(0, 8);
const WEBHOOK_CONFIG_NAME = `acr-pull-webhook-prometheus-${suffix}`;
const NAMESPACE = `prometheus-${suffix}`;
const LEASE_NAMESPACE = `prometheus-lease-${suffix}`;
const SYNC_OPT_IN = `e2e.acr-pull-webhook/prometheus-${suffix}`;
const TENANT = randomUUID();
const CLIENT = randomUUID();
const CLIENT_SECRET = `${randomBytes(3).toString('hex')}8Q~${randomBytes(27).toString('base64url')}`;
const RULES_FILE = join(CHART_DIR, 'files', 'prometheus-rules.yaml');
const DASHBOARD = JSON.parse(readFileSync(join(CHART_DIR, 'files', 'grafana-dashboard.json'), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[];
};
/**
 * What Grafana puts in place of `$__rate_interval` with a 1 s scrape interval is 4 × 15 s (its minimum step); a
 * minute is as good here: the queries must parse, evaluate and find their series.
 */
const RATE_INTERVAL = '1m';

// Certificates valid for 30 days, so the certificate alert has no reason to be pending.
const pki = testPki({ validityDays: 30 });
let webhook: WebhookProcess;
let service: AcrTokenService;
let sync: SyncWatcher;
let prometheus: ChildProcess;
let prometheusUrl: string;

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => ok(port));
    });
    server.on('error', fail);
  });
}

interface QueryAnswer {
  readonly status: string;
  readonly error?: string;
  readonly warnings?: string[];
  readonly infos?: string[];
  readonly data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}
async function query(expr: string): Promise<QueryAnswer> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  return (await response.json()) as QueryAnswer;
}

/** Polls a query until it has at least one series, or throws naming it. */
async function untilData(expr: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await query(expr).catch(() => undefined);
    if ((answer?.data?.result.length ?? 0) > 0) return;
    if (Date.now() > deadline) throw new Error(`no data for ${expr} within ${timeoutMs} ms`);
    await sleep(250);
  }
}

interface PodMetricsEndpoint {
  readonly path: string;
  readonly relabelings: Record<string, unknown>[];
}
const COMPONENT_META = '__meta_kubernetes_pod_label_app_kubernetes_io_component';
/** A PodMonitor relabeling (sourceLabels, targetLabel) as Prometheus spells it (source_labels, target_label). */
const snakeCaseKeys = (relabeling: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(relabeling).map(([key, value]) => [key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), value]),
  );

async function createPod(image: string): Promise<void> {
  await core.createNamespacedPod({
    namespace: NAMESPACE,
    body: { metadata: { generateName: 'scraped-' }, spec: { containers: [{ name: 'app', image }] } },
  });
}

beforeAll(async () => {
  const files = writeServeFiles(pki, { dir });
  webhook = await startWebhookProcess({ ...files });
  await createNamespace(kc, NAMESPACE, { 'acr-pull-webhook/inject': 'enabled', [SYNC_OPT_IN]: 'enabled' });
  await createNamespace(kc, LEASE_NAMESPACE);
  await registerWebhook(kc, {
    name: WEBHOOK_CONFIG_NAME,
    port: webhook.port,
    caPem: pki.ca.certPem,
    probeNamespace: NAMESPACE,
  });

  service = await startAcrTokenService({
    tenantId: TENANT,
    clientId: CLIENT,
    tls: pki.serving,
    clientSecret: CLIENT_SECRET,
  });
  // ACR's own lifetime (about 3 h), so the token alert has no reason to be pending.
  service.refreshTokenLifetimeSeconds = 3 * 3600;
  const clientSecretFile = join(dir, 'client-secret');
  writeFileSync(clientSecretFile, CLIENT_SECRET);
  writeFileSync(join(dir, 'ca.crt'), pki.ca.certPem);
  const syncConfig = join(dir, 'sync-config.yaml');
  writeFileSync(
    syncConfig,
    toYaml({
      registries: [
        {
          server: service.host,
          secretName: 'acr-token',
          credentials: {
            azure: {
              tenantId: TENANT,
              clientId: CLIENT,
              clientSecretFile,
              cloud: 'AzurePublicCloud',
              authorityHost: service.url,
            },
          },
        },
      ],
      optIn: { label: SYNC_OPT_IN, value: 'enabled' },
    }),
  );
  sync = await startSyncWatcher({
    config: syncConfig,
    kubeconfig: KUBECONFIG,
    leaseNamespace: LEASE_NAMESPACE,
    identity: 'prometheus-e2e',
    // Passes every 2 s, so the pass and secret counters move while Prometheus scrapes.
    args: ['--resync-period', '2'],
    env: { NODE_EXTRA_CA_CERTS: join(dir, 'ca.crt') },
  });

  const monitor = findObject<Manifest & { spec: { podMetricsEndpoints: PodMetricsEndpoint[] } }>(
    renderChart({ values: { monitoring: { podMonitor: { enabled: true } } } }),
    'PodMonitor',
  );
  const [endpoint] = monitor.spec.podMetricsEndpoints;
  if (endpoint === undefined) throw new Error('the PodMonitor has no endpoint');
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    toYaml({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES_FILE],
      // job and component as the chart's PodMonitor sets them, which the alerts select on.
      scrape_configs: [
        {
          // As the operator turns the PodMonitor into a scrape job: its name, the endpoint's path, the pods'
          // labels as __meta_ labels (here from static targets), then the PodMonitor's own relabelings.
          job_name: `acr-system/${monitor.metadata.name}`,
          metrics_path: endpoint.path,
          static_configs: [
            { targets: [`127.0.0.1:${webhook.healthPort}`], labels: { [COMPONENT_META]: 'webhook' } },
            { targets: [new URL(sync.healthUrl).host], labels: { [COMPONENT_META]: 'sync-secrets' } },
          ],
          relabel_configs: endpoint.relabelings.map(snakeCaseKeys),
        },
      ],
    }),
  );
  const log = openSync(join(dir, 'prometheus.log'), 'a');
  prometheus = spawn(
    toolPath('prometheus'),
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', log, log], cwd: dir },
  );
  closeSync(log);
  const killOnExit = (): void => void prometheus.kill('SIGKILL');
  process.once('exit', killOnExit);
  prometheus.once('exit', () => process.removeListener('exit', killOnExit));
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined))?.status !== 200) {
    if (prometheus.exitCode !== null || Date.now() > deadline)
      throw new Error(`Prometheus did not start:\n${readFileSync(join(dir, 'prometheus.log'), 'utf8')}`);
    await sleep(200);
  }

  // Traffic for the admission panels: a pod that is patched and one whose Azure registry no entry matches (a
  // warning), several seconds apart so rates have samples on both sides.
  await createPod('myregistry.azurecr.io/team/app:1');
  await untilData('acr_pull_webhook_admission_reviews_total{outcome="patched"} > 0');
  await createPod('unlisted.azurecr.io/team/app:1');
  await untilData('acr_pull_webhook_admission_warnings_total > 0');
  await untilData('acr_pull_webhook_sync_token_expiry_timestamp_seconds');
  await untilData('acr_pull_webhook_sync_last_success_timestamp_seconds > 0');
  await createPod('myregistry.azurecr.io/team/app:2');
  await untilData('acr_pull_webhook_pods_patched_total > 1');
  await sleep(2_000);
}, 180_000);

afterAll(async () => {
  if (prometheus !== undefined) await terminate(prometheus, 10_000);
  await sync?.stop();
  await service?.stop();
  await kc
    .makeApiClient(AdmissionregistrationV1Api)
    .deleteMutatingWebhookConfiguration({ name: WEBHOOK_CONFIG_NAME })
    .catch(() => undefined);
  await webhook?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Prometheus scraping serve and sync-secrets --watch', () => {
  test('has both targets up, labelled by the PodMonitor relabelings as the alerts select them', async () => {
    const answer = await query('up{job="acr-pull-webhook"}');
    expect(answer.status).toBe('success');
    const components = answer.data.result.map((series) => `${series.metric['component']}=${series.value[1]}`);
    expect(components.sort()).toEqual(['sync-secrets=1', 'webhook=1']);
  });

  const queries = DASHBOARD.panels.flatMap((panel) =>
    panel.targets.map((target) => ({ panel: panel.title, expr: target.expr })),
  );
  test.each(queries)('dashboard panel $panel: $expr returns data, without error or warning', async ({ expr }) => {
    const answer = await query(expr.replaceAll('$__rate_interval', RATE_INTERVAL));
    expect(answer.error).toBeUndefined();
    expect(answer.status).toBe('success');
    expect(answer.warnings).toBeUndefined();
    expect(answer.data.result.length).toBeGreaterThan(0);
  });

  test('every alert rule evaluates without error, and none is pending or firing while all is well', async () => {
    const response = await fetch(`${prometheusUrl}/api/v1/rules?type=alert`);
    const answer = (await response.json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[] };
    };
    const rules = answer.data.groups.flatMap((group) => group.rules);
    expect(rules.map((rule) => `${rule.name}: ${rule.health} ${rule.state} ${rule.lastError ?? ''}`.trim())).toEqual([
      'AcrPullWebhookNoReadyReplica: ok inactive',
      'AcrPullWebhookCertificateExpiringSoon: ok inactive',
      'AcrPullWebhookAdmissionSlow: ok inactive',
      'AcrPullWebhookFailingOpen: ok inactive',
      'AcrPullWebhookSyncStale: ok inactive',
      'AcrPullWebhookSyncFailing: ok inactive',
      'AcrPullWebhookTokenExpiringSoon: ok inactive',
    ]);
  });

  test('the webhook gone, AcrPullWebhookNoReadyReplica becomes pending on the real scrape', async () => {
    await webhook.kill();
    const deadline = Date.now() + 30_000;
    for (;;) {
      const answer = await query('ALERTS{alertname="AcrPullWebhookNoReadyReplica"}');
      if (answer.data.result.some((series) => series.metric['alertstate'] === 'pending')) return;
      if (Date.now() > deadline) throw new Error('AcrPullWebhookNoReadyReplica never became pending');
      await sleep(250);
    }
  });
});
