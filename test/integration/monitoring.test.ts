// The chart's alerts and dashboard, without a cluster: the real promtool (tools/build.sh) checks the rule file and
// runs its unit tests (test/monitoring/), and helm renders the PodMonitor, PrometheusRule and dashboard ConfigMap
// from those same files. test/e2e/prometheus.test.ts runs the dashboard's queries on a real Prometheus.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  METRIC_ADMISSION_WARNINGS,
  METRIC_CERT_EXPIRY,
  METRIC_PODS_PATCHED,
  METRIC_REVIEW_DURATION,
  METRIC_REVIEWS,
  METRIC_SYNC_LAST_SUCCESS,
  METRIC_SYNC_PASSES,
  METRIC_SYNC_SECRETS,
  METRIC_SYNC_TOKEN_EXPIRY,
} from '../../src/constants.ts';
import { toolPath } from '../support/control-plane.ts';
import { CHART_DIR, findObject, type Manifest, renderChart } from '../support/helm.ts';
import { tempDir } from '../support/temp-dir.ts';

const RULES_FILE = join(CHART_DIR, 'files', 'prometheus-rules.yaml');
const DASHBOARD_FILE = join(CHART_DIR, 'files', 'grafana-dashboard.json');
const UNIT_TESTS = resolve(import.meta.dirname, '../monitoring/alerts.test.yaml');
const RUNBOOK = resolve(import.meta.dirname, '../../docs/runbook.md');
const DEFAULT_RUNBOOK_URL = 'https://github.com/acr-pull-webhook/acr-pull-webhook/blob/main/docs/runbook.md';
const ALERTS = [
  'AcrPullWebhookNoReadyReplica',
  'AcrPullWebhookCertificateExpiringSoon',
  'AcrPullWebhookAdmissionSlow',
  'AcrPullWebhookFailingOpen',
  'AcrPullWebhookSyncStale',
  'AcrPullWebhookSyncFailing',
  'AcrPullWebhookTokenExpiringSoon',
];
const ALL_ON = {
  monitoring: { podMonitor: { enabled: true }, prometheusRule: { enabled: true }, dashboard: { enabled: true } },
};

interface Rule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}
interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly Rule[] }[];
}
const rulesOf = (file: RuleFile): Rule[] => file.groups.flatMap((group) => group.rules);
const FILE_RULES = rulesOf(parseYaml(readFileSync(RULES_FILE, 'utf8')) as RuleFile);

function promtool(...args: string[]): { status: number | null; output: string } {
  const result = spawnSync(toolPath('promtool'), args, { encoding: 'utf8', timeout: 60_000 });
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** GitHub's heading anchors: lowercase, punctuation other than '-' dropped, spaces as '-'. */
function anchorsOf(markdown: string): Set<string> {
  const headings = markdown.split('\n').filter((line) => /^#{1,6} /.test(line));
  return new Set(
    headings.map((line) =>
      line
        .replace(/^#+ /, '')
        .toLowerCase()
        .replace(/[^a-z0-9 -]/g, '')
        .replace(/ /g, '-'),
    ),
  );
}

function renderedRules(values: Record<string, unknown>): Rule[] {
  const rule = findObject<Manifest & { spec: RuleFile }>(renderChart({ values }), 'PrometheusRule');
  return rulesOf(rule.spec);
}

describe('promtool', () => {
  test('check rules accepts the rule file, with one rule per alert', () => {
    const { status, output } = promtool('check', 'rules', RULES_FILE);
    expect(output).toContain(`SUCCESS: ${ALERTS.length} rules found`);
    expect(status).toBe(0);
  });

  test('test rules passes every unit test in test/monitoring/alerts.test.yaml', () => {
    const { status, output } = promtool('test', 'rules', UNIT_TESTS);
    expect(output).toContain('SUCCESS');
    expect(status, output).toBe(0);
  });

  interface AlertCase {
    readonly alertname: string;
    readonly exp_alerts: readonly unknown[];
  }
  const unitTests = parseYaml(readFileSync(UNIT_TESTS, 'utf8')) as {
    tests: readonly { alert_rule_test: readonly AlertCase[] }[];
  };
  const cases = unitTests.tests.flatMap((group) => group.alert_rule_test);
  test.each(ALERTS)('the unit tests make %s fire, and keep it silent', (alert) => {
    const ofAlert = cases.filter((c) => c.alertname === alert);
    expect(ofAlert.some((c) => c.exp_alerts.length > 0)).toBe(true);
    expect(ofAlert.some((c) => c.exp_alerts.length === 0)).toBe(true);
  });
});

describe('the rule file', () => {
  test('has exactly the alerts the chart documents', () => {
    expect(FILE_RULES.map((rule) => rule.alert)).toEqual(ALERTS);
  });

  const anchors = anchorsOf(readFileSync(RUNBOOK, 'utf8'));
  test.each(ALERTS)('%s has a summary, a description and a runbook_url into its docs/runbook.md section', (alert) => {
    const rule = FILE_RULES.find((r) => r.alert === alert);
    expect(rule?.annotations['summary']).toMatch(/\S/);
    expect(rule?.annotations['description']).toMatch(/\S/);
    expect(rule?.labels['severity']).toMatch(/^(warning|critical)$/);
    expect(rule?.annotations['runbook_url']).toBe(`${DEFAULT_RUNBOOK_URL}#${alert.toLowerCase()}`);
    expect(anchors.has(alert.toLowerCase())).toBe(true);
  });
});

describe('the chart', () => {
  test('renders no PodMonitor, PrometheusRule or dashboard ConfigMap by default', () => {
    const kinds = renderChart().map((object) => `${object.kind}/${object.metadata.name}`);
    expect(kinds.filter((kind) => /^(PodMonitor|PrometheusRule)\//.test(kind))).toEqual([]);
    expect(kinds).not.toContain('ConfigMap/acr-acr-pull-webhook-dashboard');
  });

  test('puts the rule file into the PrometheusRule with the runbook URL it is given, and promtool accepts it', () => {
    const rules = renderedRules({ ...ALL_ON, monitoring: { ...ALL_ON.monitoring, runbookUrl: 'https://x.test/rb' } });
    expect(rules.map((rule) => rule.annotations['runbook_url'])).toEqual(
      ALERTS.map((alert) => `https://x.test/rb#${alert.toLowerCase()}`),
    );
    // Everything but the two values the chart fills in is the file promtool tested.
    const withoutRunbook = (rule: Rule): Rule => ({ ...rule, annotations: { ...rule.annotations, runbook_url: '' } });
    expect(rules.map(withoutRunbook)).toEqual(FILE_RULES.map(withoutRunbook));
    const file = join(tempDir('rendered-rules'), 'rules.yaml');
    writeFileSync(file, JSON.stringify({ groups: [{ name: 'acr-pull-webhook', rules }] }));
    const { status, output } = promtool('check', 'rules', file);
    expect(status, output).toBe(0);
  });

  test.each([
    { timeoutSeconds: 1, threshold: 0.5 },
    { timeoutSeconds: 3, threshold: 1.5 },
    { timeoutSeconds: 10, threshold: 5 },
    { timeoutSeconds: 30, threshold: 15 },
  ])('with webhook.timeoutSeconds $timeoutSeconds, the latency alert fires above a p99 of $threshold s', (c) => {
    const rules = renderedRules({ ...ALL_ON, webhook: { timeoutSeconds: c.timeoutSeconds } });
    const slow = rules.find((rule) => rule.alert === 'AcrPullWebhookAdmissionSlow');
    expect(slow?.expr).toContain(`) > ${c.threshold} # webhook.timeoutSeconds / 2\n`);
  });

  test('PodMonitor: /metrics on port health of both programs, labelled job and component as the alerts select', () => {
    const monitor = findObject<Manifest & { spec: Record<string, unknown> }>(
      renderChart({ values: { monitoring: { podMonitor: { enabled: true, interval: '15s' } } } }),
      'PodMonitor',
    );
    expect(monitor.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(monitor.spec).toEqual({
      selector: {
        matchLabels: { 'app.kubernetes.io/name': 'acr-pull-webhook', 'app.kubernetes.io/instance': 'acr' },
        matchExpressions: [{ key: 'app.kubernetes.io/component', operator: 'In', values: ['webhook', 'sync-secrets'] }],
      },
      podMetricsEndpoints: [
        {
          port: 'health',
          path: '/metrics',
          interval: '15s',
          relabelings: [
            { targetLabel: 'job', replacement: 'acr-pull-webhook' },
            { sourceLabels: ['__meta_kubernetes_pod_label_app_kubernetes_io_component'], targetLabel: 'component' },
          ],
        },
      ],
    });
  });

  test("dashboard ConfigMap: Grafana's sidecar label and the dashboard file as it is", () => {
    const map = findObject<Manifest & { data: Record<string, string> }>(
      renderChart({ values: ALL_ON }),
      'ConfigMap',
      (object) => object.metadata.name === 'acr-acr-pull-webhook-dashboard',
    );
    expect(map.metadata.labels?.['grafana_dashboard']).toBe('1');
    expect(map.data['acr-pull-webhook.json']).toBe(readFileSync(DASHBOARD_FILE, 'utf8').trimEnd());
  });

  test('the dashboard shows admissions, latency, patches, warnings, certificate, sync passes, secrets, tokens', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const queries = dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr)).join('\n');
    for (const metric of [
      METRIC_REVIEWS,
      `${METRIC_REVIEW_DURATION}_bucket`,
      METRIC_PODS_PATCHED,
      METRIC_ADMISSION_WARNINGS,
      METRIC_CERT_EXPIRY,
      METRIC_SYNC_PASSES,
      METRIC_SYNC_SECRETS,
      METRIC_SYNC_LAST_SUCCESS,
      METRIC_SYNC_TOKEN_EXPIRY,
    ]) {
      expect(queries).toContain(metric);
    }
  });
});
