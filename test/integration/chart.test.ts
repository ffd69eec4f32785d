// The Helm chart as rendered: `helm lint --strict` and `helm template` of the defaults and of every
// scenario in charts/acr-pull-webhook/ci/, parsed and held against the webhook good-practice list,
// Pod Security "restricted", least-privilege RBAC and the program's own configuration loader.
// Needs .tools/bin/helm (bash tools/build.sh helm); it fails, naming the build, when helm is missing.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type {
  V1Container,
  V1CronJob,
  V1Deployment,
  V1Job,
  V1MutatingWebhookConfiguration,
  V1PodSpec,
  V1PolicyRule,
  V1Role,
  V1Service,
} from '@kubernetes/client-node';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, test } from 'vitest';
import { CONFIG_SCHEMA, parseConfig } from '../../src/config/config.ts';
import { matchingSecrets } from '../../src/mutation/decide.ts';
import { CHART_DIR, findObject, helm, isHook, renderChart, renderChartError, type Manifest } from '../support/helm.ts';

const RELEASE = 'acr';
const NAMESPACE = 'acr-system';
const CI_DIR = join(CHART_DIR, 'ci');
const DEFAULT_VALUES = parseYaml(readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8')) as Values;
const SCENARIOS = [
  'defaults',
  ...readdirSync(CI_DIR)
    .filter((file) => file.endsWith('.yaml'))
    .sort(),
];

// ---------------------------------------------------------------------------------------------
// Values as helm merges them: maps merge key by key, anything else (lists included) replaces.

type Values = Record<string, unknown>;
const isMap = (value: unknown): value is Values => typeof value === 'object' && value !== null && !Array.isArray(value);
function merge(base: Values, overlay: Values): Values {
  const result: Values = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    const current = result[key];
    result[key] = isMap(current) && isMap(value) ? merge(current, value) : value;
  }
  return result;
}
const scenarioFile = (scenario: string): string[] => (scenario === 'defaults' ? [] : [join(CI_DIR, scenario)]);
function scenarioValues(scenario: string): Values {
  return scenario === 'defaults'
    ? DEFAULT_VALUES
    : merge(DEFAULT_VALUES, parseYaml(readFileSync(join(CI_DIR, scenario), 'utf8')) as Values);
}
const get = (values: Values, path: string): unknown =>
  path.split('.').reduce<unknown>((at, key) => (isMap(at) ? at[key] : undefined), values);

// ---------------------------------------------------------------------------------------------
// Reading the rendered objects

interface PodTemplate {
  readonly owner: string;
  readonly spec: V1PodSpec;
}

function podTemplates(objects: readonly Manifest[]): PodTemplate[] {
  const templates: PodTemplate[] = [];
  for (const object of objects) {
    const owner = `${object.kind}/${object.metadata.name}`;
    if (object.kind === 'Pod') templates.push({ owner, spec: object['spec'] as V1PodSpec });
    if (object.kind === 'Deployment')
      templates.push({ owner, spec: (object as unknown as V1Deployment).spec?.template.spec as V1PodSpec });
    if (object.kind === 'Job')
      templates.push({ owner, spec: (object as unknown as V1Job).spec?.template.spec as V1PodSpec });
    if (object.kind === 'CronJob')
      templates.push({
        owner,
        spec: (object as unknown as V1CronJob).spec?.jobTemplate.spec?.template.spec as V1PodSpec,
      });
  }
  return templates;
}

const allContainers = (spec: V1PodSpec): V1Container[] => [...(spec.initContainers ?? []), ...spec.containers];
const webhookConfiguration = (objects: readonly Manifest[]): V1MutatingWebhookConfiguration =>
  findObject<V1MutatingWebhookConfiguration>(objects, 'MutatingWebhookConfiguration');
const webhookDeployment = (objects: readonly Manifest[]): V1Deployment =>
  findObject<V1Deployment>(
    objects,
    'Deployment',
    (object) => object.metadata.labels?.['app.kubernetes.io/component'] === 'webhook',
  );
const component =
  (name: string) =>
  (object: Manifest): boolean =>
    object.metadata.labels?.['app.kubernetes.io/component'] === name;
const configFile = (objects: readonly Manifest[]): string =>
  (findObject(objects, 'ConfigMap') as unknown as { data: Record<string, string> }).data['config.yaml'] ?? '';

/**
 * The checks of the Kubernetes Pod Security Standards, "restricted" profile (which includes
 * "baseline"), for what a pod template can carry, plus a read-only root filesystem. Returns one
 * line per violation.
 */
function restrictedViolations(spec: V1PodSpec): string[] {
  const problems: string[] = [];
  const allowedVolumes = [
    'configMap',
    'csi',
    'downwardAPI',
    'emptyDir',
    'ephemeral',
    'persistentVolumeClaim',
    'projected',
    'secret',
  ];
  for (const volume of spec.volumes ?? []) {
    const kinds = Object.keys(volume).filter((key) => key !== 'name');
    if (!kinds.every((kind) => allowedVolumes.includes(kind)))
      problems.push(`volume ${volume.name}: ${kinds.join(',')} is not allowed`);
  }
  if (spec.hostNetwork || spec.hostPID || spec.hostIPC) problems.push('host namespaces');
  const pod = spec.securityContext ?? {};
  if (pod.runAsUser === 0) problems.push('pod runAsUser 0');
  for (const container of allContainers(spec)) {
    const context = container.securityContext ?? {};
    const where = `container ${container.name}`;
    if (context.privileged) problems.push(`${where}: privileged`);
    if (context.allowPrivilegeEscalation !== false) problems.push(`${where}: allowPrivilegeEscalation is not false`);
    if (!(context.runAsNonRoot ?? pod.runAsNonRoot)) problems.push(`${where}: runAsNonRoot is not true`);
    if ((context.runAsUser ?? pod.runAsUser) === 0) problems.push(`${where}: runs as uid 0`);
    const seccomp = context.seccompProfile?.type ?? pod.seccompProfile?.type;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost')
      problems.push(`${where}: seccompProfile is ${String(seccomp)}`);
    if (!(context.capabilities?.drop ?? []).includes('ALL')) problems.push(`${where}: capabilities do not drop ALL`);
    const added = (context.capabilities?.add ?? []).filter((capability) => capability !== 'NET_BIND_SERVICE');
    if (added.length > 0) problems.push(`${where}: adds ${added.join(',')}`);
    if ((container.ports ?? []).some((port) => port.hostPort !== undefined)) problems.push(`${where}: hostPort`);
    if (context.readOnlyRootFilesystem !== true) problems.push(`${where}: root filesystem is writable`);
  }
  return problems;
}

const rendered = new Map<string, Manifest[]>();
beforeAll(() => {
  for (const scenario of SCENARIOS)
    rendered.set(scenario, renderChart({ release: RELEASE, namespace: NAMESPACE, files: scenarioFile(scenario) }));
});
const objectsOf = (scenario: string): Manifest[] => rendered.get(scenario) ?? [];

// ---------------------------------------------------------------------------------------------

describe('helm lint --strict', () => {
  test.each(SCENARIOS)('%s: no errors and no warnings', (scenario) => {
    const args = [
      'lint',
      '--strict',
      CHART_DIR,
      '--namespace',
      NAMESPACE,
      ...scenarioFile(scenario).flatMap((file) => ['-f', file]),
    ];
    const result = helm(args);
    expect(result.stdout + result.stderr).not.toMatch(/\[(WARNING|ERROR)\]/);
    expect(result.status).toBe(0);
  });
});

test('no template uses lookup, so helm template and GitOps rendering see what helm install does', () => {
  const templates = readdirSync(join(CHART_DIR, 'templates'), { recursive: true, encoding: 'utf8' });
  for (const file of templates.filter((name) => /\.(yaml|tpl|txt)$/.test(name)))
    expect(readFileSync(join(CHART_DIR, 'templates', file), 'utf8'), file).not.toMatch(/\blookup\b/);
});

describe.each(SCENARIOS)('rendered with %s', (scenario) => {
  const values = scenarioValues(scenario);

  test('every object is labelled as part of the release, and namespaced ones are in the release namespace', () => {
    for (const object of objectsOf(scenario)) {
      const where = `${object.kind}/${object.metadata.name}`;
      expect(object.metadata.labels?.['app.kubernetes.io/instance'], where).toBe(RELEASE);
      expect(object.metadata.labels?.['app.kubernetes.io/managed-by'], where).toBe('Helm');
      const clusterScoped = [
        'MutatingWebhookConfiguration',
        'ClusterRole',
        'ClusterRoleBinding',
        'ValidatingAdmissionPolicy',
        'ValidatingAdmissionPolicyBinding',
      ];
      // The one exception: Events about Namespaces are accepted only in default, so sync-secrets' events Role is there.
      const inDefault = object.metadata.name.endsWith('-sync-secrets-events') && object.kind.startsWith('Role');
      if (!clusterScoped.includes(object.kind))
        expect(object.metadata.namespace, where).toBe(inDefault ? 'default' : NAMESPACE);
    }
  });

  test('every pod template meets Pod Security "restricted" with a read-only root filesystem', () => {
    const templates = podTemplates(objectsOf(scenario));
    expect(templates.length).toBeGreaterThan(0);
    for (const { owner, spec } of templates) expect(restrictedViolations(spec), owner).toEqual([]);
  });

  test('only certs-gen, sync-secrets and test pods get an API token; no ServiceAccount mounts one by default', () => {
    for (const { owner, spec } of podTemplates(objectsOf(scenario))) {
      const needsApi = /certs-gen|sync-secrets|check-injection/.test(owner);
      expect(spec.automountServiceAccountToken, owner).toBe(needsApi);
    }
    for (const account of objectsOf(scenario).filter((object) => object.kind === 'ServiceAccount')) {
      expect(
        (account as { automountServiceAccountToken?: boolean }).automountServiceAccountToken,
        account.metadata.name,
      ).toBe(false);
    }
    const webhookAccount = webhookDeployment(objectsOf(scenario)).spec?.template.spec?.serviceAccountName;
    const bindings = objectsOf(scenario).filter(
      (object) => object.kind === 'RoleBinding' || object.kind === 'ClusterRoleBinding',
    );
    for (const binding of bindings) {
      const subjects = (binding as { subjects?: { name: string }[] }).subjects ?? [];
      expect(
        subjects.map((subject) => subject.name),
        binding.metadata.name,
      ).not.toContain(webhookAccount);
    }
  });

  test('webhook configuration: pod CREATE, v1 reviews, no side effects, reinvoked if needed, equivalent match', () => {
    const configuration = webhookConfiguration(objectsOf(scenario));
    expect(configuration.webhooks).toHaveLength(1);
    const webhook = configuration.webhooks?.[0];
    expect(webhook?.rules).toEqual([
      { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' },
    ]);
    expect(webhook?.admissionReviewVersions).toEqual(['v1']);
    expect(webhook?.sideEffects).toBe('None');
    expect(webhook?.reinvocationPolicy).toBe('IfNeeded');
    expect(webhook?.matchPolicy).toBe('Equivalent');
    expect(webhook?.failurePolicy).toBe(get(values, 'webhook.failurePolicy'));
    expect(webhook?.timeoutSeconds).toBe(get(values, 'webhook.timeoutSeconds'));
    expect(webhook?.timeoutSeconds).toBeLessThanOrEqual(3);
    expect(webhook?.clientConfig.caBundle).toBeUndefined();
  });

  test('webhook configuration: opted-in namespaces, not kube-system or the release one; opted-out pods skipped', () => {
    const webhook = webhookConfiguration(objectsOf(scenario)).webhooks?.[0];
    const optIn = get(values, 'optIn') as { label: string; value: string };
    expect(webhook?.namespaceSelector?.matchLabels).toBeUndefined();
    expect(webhook?.namespaceSelector?.matchExpressions).toEqual([
      { key: optIn.label, operator: 'In', values: [optIn.value] },
      {
        key: 'kubernetes.io/metadata.name',
        operator: 'NotIn',
        values: ['kube-system', NAMESPACE, ...(get(values, 'webhook.excludedNamespaces') as string[])],
      },
    ]);
    expect(webhook?.objectSelector).toEqual({
      matchExpressions: [{ key: 'acr-pull-webhook/inject', operator: 'NotIn', values: ['disabled'] }],
    });
  });

  test('webhook configuration: the Service on 443 at /mutate, reaching the container port serve listens on', () => {
    const objects = objectsOf(scenario);
    const client = webhookConfiguration(objects).webhooks?.[0]?.clientConfig.service;
    const service = findObject<V1Service>(objects, 'Service');
    expect(client).toEqual({ name: service.metadata?.name, namespace: NAMESPACE, path: '/mutate', port: 443 });
    const https = service.spec?.ports?.find((port) => port.port === 443);
    const container = webhookDeployment(objects).spec?.template.spec?.containers[0];
    const targetPort = container?.ports?.find((port) => port.name === https?.targetPort);
    expect(targetPort?.containerPort).toBe(8443);
    expect(container?.args).toContain('--port=8443');
    expect(service.spec?.selector).toEqual(webhookDeployment(objects).spec?.selector.matchLabels);
  });

  test("the configuration file passes the programs' loader and has the namespaceSelector's opt-in label", () => {
    const objects = objectsOf(scenario);
    const config = parseConfig(configFile(objects), 'config.yaml');
    const selector = webhookConfiguration(objects).webhooks?.[0]?.namespaceSelector?.matchExpressions?.[0];
    expect({ key: config.optIn.label, operator: 'In', values: [config.optIn.value] }).toEqual(selector);
    expect(config.registries.map((entry) => [entry.server, entry.secretName])).toEqual(
      (get(values, 'registries') as { server: string; secretName: string }[]).map((entry) => [
        entry.server,
        entry.secretName,
      ]),
    );
    expect(config.prune).toBe(get(values, 'syncSecrets.prune'));
  });

  test('the webhook mounts the configuration and tls.crt and tls.key of the TLS Secret, never credentials', () => {
    const spec = webhookDeployment(objectsOf(scenario)).spec?.template.spec as V1PodSpec;
    expect(spec.volumes?.map((volume) => Object.keys(volume).filter((key) => key !== 'name')[0])).toEqual([
      'configMap',
      'secret',
    ]);
    const tls = spec.volumes?.find((volume) => volume.secret !== undefined)?.secret;
    expect(tls?.items?.map((item) => item.key)).toEqual(['tls.crt', 'tls.key']);
    expect(tls?.secretName).toBe(
      `${RELEASE}-acr-pull-webhook-tls`.replace(`${RELEASE}-acr-pull-webhook`, fullname(values)),
    );
  });

  test('every credentials file of the configuration is in each sync-secrets pod, from the key the values name', () => {
    const objects = objectsOf(scenario);
    const config = parseConfig(configFile(objects), 'config.yaml');
    const syncPods = podTemplates(objects).filter(({ owner }) => owner.includes('sync-secrets'));
    if (get(values, 'syncSecrets.enabled') !== true) {
      expect(syncPods).toEqual([]);
      expect(config.registries.every((entry) => entry.credentials === undefined)).toBe(true);
      return;
    }
    expect(syncPods.length).toBeGreaterThan(0);
    const registries = get(values, 'registries') as {
      credentials: Record<string, { name?: string; usernameKey?: string; passwordKey?: string }>;
    }[];
    for (const { owner, spec } of syncPods) {
      const container = spec.containers[0] as V1Container;
      const mount = container.volumeMounts?.find((entry) => entry.name === 'credentials');
      const sources = spec.volumes?.find((volume) => volume.name === 'credentials')?.projected?.sources ?? [];
      config.registries.forEach((entry, index) => {
        const existing = registries[index]?.credentials['existingSecret'];
        const expectedSecret = existing?.name ?? `${fullname(values)}-credentials`;
        const files = entry.credentials?.kind === 'files' ? entry.credentials : undefined;
        for (const [file, key] of [
          [files?.usernameFile, existing ? (existing.usernameKey ?? 'username') : `registry-${index}-username`],
          [files?.passwordFile, existing ? (existing.passwordKey ?? 'password') : `registry-${index}-password`],
        ] as const) {
          const relative = file?.slice(`${mount?.mountPath ?? '?'}/`.length);
          const source = sources.find((candidate) => candidate.secret?.items?.some((item) => item.path === relative));
          expect(file?.startsWith(`${mount?.mountPath}/`), `${owner}: ${file}`).toBe(true);
          expect(source?.secret?.name, `${owner}: ${file}`).toBe(expectedSecret);
          expect(source?.secret?.items?.find((item) => item.path === relative)?.key, `${owner}: ${file}`).toBe(key);
        }
      });
    }
  });

  test('a PodDisruptionBudget exists exactly when the webhook has more than one replica', () => {
    const budgets = objectsOf(scenario).filter((object) => object.kind === 'PodDisruptionBudget');
    const replicas = get(values, 'webhook.replicas') as number;
    expect(webhookDeployment(objectsOf(scenario)).spec?.replicas).toBe(replicas);
    expect(budgets).toHaveLength(replicas > 1 ? 1 : 0);
    if (replicas > 1) {
      const spec = budgets[0]?.['spec'] as {
        selector: unknown;
        maxUnavailable: unknown;
        unhealthyPodEvictionPolicy: string;
      };
      expect(spec.selector).toEqual(webhookDeployment(objectsOf(scenario)).spec?.selector);
      expect(spec.maxUnavailable).toBe(get(values, 'webhook.podDisruptionBudget.maxUnavailable'));
      expect(spec.unhealthyPodEvictionPolicy).toBe('AlwaysAllow');
    }
  });

  test('webhook pods: health-port probes, grace over drain + shutdown, requests set, spread across nodes', () => {
    const deployment = webhookDeployment(objectsOf(scenario));
    const spec = deployment.spec?.template.spec as V1PodSpec;
    const container = spec.containers[0] as V1Container;
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'health' });
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'health' });
    expect(container.ports?.find((port) => port.name === 'health')?.containerPort).toBe(8080);
    expect(container.args).toEqual(
      expect.arrayContaining([
        'serve',
        '--health-port=8080',
        `--drain-delay=${String(get(values, 'webhook.drainDelaySeconds'))}`,
      ]),
    );
    const drain =
      (get(values, 'webhook.drainDelaySeconds') as number) + (get(values, 'webhook.shutdownTimeoutSeconds') as number);
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(drain);
    expect(container.resources?.requests).toEqual(
      expect.objectContaining({ cpu: expect.any(String), memory: expect.any(String) }),
    );
    expect(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable).toBe(0);
    expect(
      spec.topologySpreadConstraints?.map((constraint) => [constraint.topologyKey, constraint.whenUnsatisfiable]),
    ).toEqual([
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
      ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
    ]);
    expect(spec.priorityClassName).toBe((get(values, 'webhook.priorityClassName') as string) || undefined);
  });

  test('every container runs the one image, through the entry point of its program', () => {
    const image = get(values, 'image.digest')
      ? `${String(get(values, 'image.repository'))}@${String(get(values, 'image.digest'))}`
      : `${String(get(values, 'image.repository'))}:${(get(values, 'image.tag') as string) || '0.1.0'}`;
    for (const { owner, spec } of podTemplates(objectsOf(scenario))) {
      for (const container of allContainers(spec)) {
        expect(container.image, owner).toBe(image);
        const program = owner.includes('certs-gen') ? '/app/dist/certs-gen/cli.js' : '/app/dist/src/cli/main.js';
        expect(container.command, owner).toEqual(['/nodejs/bin/node', program]);
      }
      expect(spec.imagePullSecrets?.map((secret) => secret.name) ?? [], owner).toEqual(get(values, 'imagePullSecrets'));
    }
  });

  test('no Role or ClusterRole grants a wildcard, or list or watch on Secrets other than by name', () => {
    const roles = objectsOf(scenario).filter(
      (object) => object.kind === 'Role' || object.kind === 'ClusterRole',
    ) as unknown as V1Role[];
    for (const role of roles) {
      for (const rule of role.rules ?? []) {
        const where = role.metadata?.name ?? '';
        expect([...(rule.verbs ?? []), ...(rule.resources ?? []), ...(rule.apiGroups ?? [])], where).not.toContain('*');
        // By name only: the drift watch's fieldSelector=metadata.name=<name>, never every Secret.
        if (rule.resources?.includes('secrets') && (rule.resourceNames ?? []).length === 0)
          expect(rule.verbs, where).not.toEqual(expect.arrayContaining(['list']));
        if (rule.resources?.includes('secrets') && (rule.resourceNames ?? []).length === 0)
          expect(rule.verbs, where).not.toEqual(expect.arrayContaining(['watch']));
      }
    }
  });
});

function fullname(values: Values): string {
  return (get(values, 'fullnameOverride') as string) || `${RELEASE}-acr-pull-webhook`;
}

// ---------------------------------------------------------------------------------------------

describe('certificates with certs-gen (the default)', () => {
  const objects = (): Manifest[] => objectsOf('defaults');
  const named = (kind: string, name: string) => findObject(objects(), kind, (object) => object.metadata.name === name);
  const TLS = 'acr-acr-pull-webhook-tls';
  const CONFIGURATION = 'acr-acr-pull-webhook';

  test('create runs before the rest (pre-install, pre-upgrade), patch after the webhook configuration exists', () => {
    const jobs = objects().filter(
      (object) => object.kind === 'Job' && component('certs-gen')(object),
    ) as unknown as (V1Job & Manifest)[];
    const byHook = Object.fromEntries(
      jobs.map((job) => [
        job.metadata.annotations?.['helm.sh/hook'],
        job.spec?.template.spec?.containers.map((container) => container.args?.[0]),
      ]),
    );
    expect(byHook).toEqual({ 'pre-install,pre-upgrade': ['create'], 'post-install,post-upgrade': ['patch'] });
  });

  test('create and patch name the same Secret, Service and webhook configuration the chart renders', () => {
    const job = named('Job', 'acr-acr-pull-webhook-certs-gen-create') as unknown as V1Job;
    expect(job.spec?.template.spec?.containers[0]?.args).toEqual([
      'create',
      `--namespace=${NAMESPACE}`,
      `--secret-name=${TLS}`,
      '--service=acr-acr-pull-webhook',
      '--validity=365',
      `--webhook-config=${CONFIGURATION}`,
    ]);
    const patch = named('Job', 'acr-acr-pull-webhook-certs-gen-patch') as unknown as V1Job;
    expect(patch.spec?.template.spec?.containers[0]?.args).toEqual([
      'patch',
      `--webhook-config=${CONFIGURATION}`,
      `--secret-name=${TLS}`,
      `--namespace=${NAMESPACE}`,
    ]);
    expect(webhookConfiguration(objects()).metadata?.name).toBe(CONFIGURATION);
  });

  test('the renewal CronJob runs create, then patch, one at a time', () => {
    const cronJob = named('CronJob', 'acr-acr-pull-webhook-certs-gen') as unknown as V1CronJob;
    const spec = cronJob.spec?.jobTemplate.spec?.template.spec;
    expect(spec?.initContainers?.map((container) => container.args?.[0])).toEqual(['create']);
    expect(spec?.containers.map((container) => container.args?.[0])).toEqual(['patch']);
    expect(cronJob.spec?.concurrencyPolicy).toBe('Forbid');
    expect(cronJob.spec?.schedule).toBe('17 3 * * *');
  });

  test('hook RBAC may create Secrets while it runs; lasting RBAC touches the one TLS Secret and configuration', () => {
    const rules = (kind: string, name: string): V1PolicyRule[] => (named(kind, name) as unknown as V1Role).rules ?? [];
    const hookObjects = ['acr-acr-pull-webhook-certs-gen-create'];
    expect(rules('Role', hookObjects[0] ?? '')).toEqual([
      { apiGroups: [''], resources: ['secrets'], resourceNames: [TLS], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
    ]);
    expect(rules('ClusterRole', hookObjects[0] ?? '')).toEqual([
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations'],
        resourceNames: [CONFIGURATION],
        verbs: ['get'],
      },
    ]);
    for (const object of objects().filter((candidate) => hookObjects.includes(candidate.metadata.name))) {
      expect(
        object.metadata.annotations?.['helm.sh/hook-delete-policy'],
        `${object.kind}/${object.metadata.name}`,
      ).toMatch(
        object.kind === 'Job'
          ? /^before-hook-creation,hook-succeeded$/
          : /^before-hook-creation,hook-succeeded,hook-failed$/,
      );
    }
    expect(rules('Role', 'acr-acr-pull-webhook-certs-gen')).toEqual([
      { apiGroups: [''], resources: ['secrets'], resourceNames: [TLS], verbs: ['get', 'update'] },
    ]);
    expect(rules('ClusterRole', 'acr-acr-pull-webhook-certs-gen')).toEqual([
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingwebhookconfigurations'],
        resourceNames: [CONFIGURATION],
        verbs: ['get', 'patch'],
      },
    ]);
  });

  test('no cert-manager object is rendered', () => {
    expect(objects().filter((object) => object.apiVersion.startsWith('cert-manager.io/'))).toEqual([]);
  });

  // Distinct values for each, so a pod that took the webhook's shows it.
  const WEBHOOK_SCHEDULING = {
    priorityClassName: 'webhook-critical',
    nodeSelector: { pool: 'webhook' },
    tolerations: [{ key: 'webhook-only', operator: 'Exists', effect: 'NoSchedule' }],
    affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } },
    resources: { requests: { cpu: '500m', memory: '512Mi' }, limits: { memory: '1Gi' } },
  };
  const CERTS_GEN_SCHEDULING = {
    priorityClassName: 'batch-low',
    nodeSelector: { pool: 'jobs' },
    tolerations: [{ key: 'jobs-only', operator: 'Exists', effect: 'NoSchedule' }],
    affinity: {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['jobs'] }] }],
        },
      },
    },
    resources: { requests: { cpu: '5m', memory: '32Mi' }, limits: { memory: '64Mi' } },
  };
  const certsGenPods = (rendered: readonly Manifest[]): PodTemplate[] =>
    podTemplates(rendered.filter(component('certs-gen')));

  test('the create and patch Jobs and the renewal CronJob are scheduled by certsGen values', () => {
    const rendered = renderChart({ values: { webhook: WEBHOOK_SCHEDULING, certsGen: CERTS_GEN_SCHEDULING } });
    const pods = certsGenPods(rendered);
    expect(pods.map((pod) => pod.owner).sort()).toEqual([
      'CronJob/acr-acr-pull-webhook-certs-gen',
      'Job/acr-acr-pull-webhook-certs-gen-create',
      'Job/acr-acr-pull-webhook-certs-gen-patch',
    ]);
    for (const { owner, spec } of pods) {
      expect(spec.priorityClassName, owner).toBe('batch-low');
      expect(spec.nodeSelector, owner).toEqual({ pool: 'jobs' });
      expect(spec.tolerations, owner).toEqual(CERTS_GEN_SCHEDULING.tolerations);
      expect(spec.affinity, owner).toEqual(CERTS_GEN_SCHEDULING.affinity);
      for (const container of allContainers(spec))
        expect(container.resources, `${owner} ${container.name}`).toEqual(CERTS_GEN_SCHEDULING.resources);
    }
    const webhook = webhookDeployment(rendered).spec?.template.spec as V1PodSpec;
    expect(webhook.nodeSelector).toEqual({ pool: 'webhook' });
    expect(webhook.priorityClassName).toBe('webhook-critical');
  });

  test("the webhook's scheduling values do not reach the certs-gen pods", () => {
    const pods = certsGenPods(renderChart({ values: { webhook: WEBHOOK_SCHEDULING } }));
    expect(pods).toHaveLength(3);
    for (const { owner, spec } of pods) {
      expect([spec.priorityClassName, spec.nodeSelector, spec.tolerations, spec.affinity], owner).toEqual([
        undefined,
        undefined,
        undefined,
        undefined,
      ]);
      for (const container of allContainers(spec))
        expect(container.resources, `${owner} ${container.name}`).toEqual(get(DEFAULT_VALUES, 'certsGen.resources'));
    }
  });
});

describe('certificates with cert-manager', () => {
  test('a Certificate for the Service names issues the TLS Secret, cainjector points at it, no certs-gen', () => {
    const objects = objectsOf('cert-manager-values.yaml');
    const certificate = findObject(
      objects,
      'Certificate',
      (object) => object.metadata.name === 'acr-acr-pull-webhook-serving',
    );
    const spec = certificate['spec'] as {
      secretName: string;
      dnsNames: string[];
      issuerRef: unknown;
      usages: string[];
    };
    expect(spec.secretName).toBe('acr-acr-pull-webhook-tls');
    expect(spec.dnsNames).toEqual([
      'acr-acr-pull-webhook',
      `acr-acr-pull-webhook.${NAMESPACE}`,
      `acr-acr-pull-webhook.${NAMESPACE}.svc`,
      `acr-acr-pull-webhook.${NAMESPACE}.svc.cluster.local`,
    ]);
    expect(spec.usages).toContain('server auth');
    expect(spec.issuerRef).toEqual({ name: 'acr-acr-pull-webhook-ca', kind: 'Issuer', group: 'cert-manager.io' });
    expect(webhookConfiguration(objects).metadata?.annotations).toEqual({
      'cert-manager.io/inject-ca-from': `${NAMESPACE}/acr-acr-pull-webhook-serving`,
    });
    expect(objects.filter(component('certs-gen'))).toEqual([]);
  });

  test('with an issuerRef, only the serving Certificate is rendered, issued by that issuer', () => {
    const objects = objectsOf('cert-manager-issuer-values.yaml');
    expect(
      objects.filter((object) => object.apiVersion.startsWith('cert-manager.io/')).map((object) => object.kind),
    ).toEqual(['Certificate']);
    const certificate = findObject(objects, 'Certificate');
    expect((certificate['spec'] as { issuerRef: unknown }).issuerRef).toEqual({
      name: 'internal-ca',
      kind: 'ClusterIssuer',
      group: 'cert-manager.io',
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe('the CEL matchCondition derived from the registries', () => {
  /** The regular expression inside the rendered expression (the same literal is used for each container list). */
  function imageRegex(objects: readonly Manifest[]): RegExp {
    const expression = webhookConfiguration(objects).webhooks?.[0]?.matchConditions?.[0]?.expression ?? '';
    const literals = [...expression.matchAll(/\.matches\(r'([^']*)'\)/g)].map((match) => match[1]);
    expect(literals).toHaveLength(3);
    expect(new Set(literals).size).toBe(1);
    // RE2 and JavaScript agree on the subset used: literals, \., [^…] classes, (?:…|…), ^ and $.
    return new RegExp(literals[0] ?? '');
  }

  test('the expression tests containers, init containers and ephemeral containers, guarding the optional lists', () => {
    const condition = webhookConfiguration(objectsOf('defaults')).webhooks?.[0]?.matchConditions?.[0];
    expect(condition?.name).toBe('has-image-from-a-configured-registry');
    const matches = String.raw`has\(c\.image\) && c\.image\.matches\(r'[^']+'\)`;
    const optional = (list: string): string =>
      String.raw`\(has\(object\.spec\.${list}\) && object\.spec\.${list}\.exists\(c, ${matches}\)\)`;
    const expected = [
      String.raw`object\.spec\.containers\.exists\(c, ${matches}\)`,
      optional('initContainers'),
      optional('ephemeralContainers'),
    ].join(String.raw` \|\| `);
    expect(condition?.expression).toMatch(new RegExp(`^${expected}$`));
  });

  test('with filterByImage false there is no matchCondition: every pod is sent', () => {
    expect(
      webhookConfiguration(objectsOf('single-replica-values.yaml')).webhooks?.[0]?.matchConditions,
    ).toBeUndefined();
  });

  const hosts = [
    'myregistry.azurecr.io',
    'other.azurecr.io',
    'myregistry.azurecr.io:443',
    'myregistry.azurecr.io.evil.com',
    'MyRegistry.azurecr.io',
    'contoso.azurecr.cn',
    'a.b.azurecr.cn',
    'azurecr.cn',
    'registry.internal.example:5000',
    'registry.internal.example',
    'registry.internal.example:5001',
    'docker.io',
    'index.docker.io',
    'registry-1.docker.io',
    'quay.io',
    'localhost',
    'localhost:5000',
    'ghcr.io',
    'prefix.team.io',
    'team.io',
    '',
  ];
  const paths = [
    'app',
    'team/app',
    'teamwork/app',
    'team/sub/app',
    'library/nginx',
    'nginx',
    'prod/api',
    'production/api',
    'v2/team/app',
  ];
  const suffixes = ['', ':v1', `@sha256:${'a'.repeat(64)}`];
  const IMAGES = hosts.flatMap((host) =>
    paths.flatMap((path) => suffixes.map((suffix) => `${host === '' ? '' : `${host}/`}${path}${suffix}`)),
  );

  // Registry sets: the scenarios', and one of every pattern shape the kubelet accepts.
  const REGISTRY_SETS: { name: string; render: () => Manifest[] }[] = [
    { name: 'the defaults', render: () => objectsOf('defaults') },
    {
      name: 'multi-registry-values.yaml (globs, a port, a path, Docker Hub)',
      render: () => objectsOf('multi-registry-values.yaml'),
    },
    { name: 'no-sync-values.yaml (a path prefix ending in /)', render: () => objectsOf('no-sync-values.yaml') },
    {
      name: 'every pattern shape',
      render: () =>
        renderChart({
          values: {
            syncSecrets: { enabled: false },
            registries: [
              '*',
              '*.io',
              'docker.*',
              'prefix.*.io',
              '*-team.io',
              'myregistry.azurecr.io/v2/team',
              'localhost:5000/',
              'docker.io/library',
              'ghcr.io/team',
            ].map((server, index) => ({ server, secretName: `s${index}` })),
          },
        }),
    },
  ];

  test.each(REGISTRY_SETS)(
    'with $name, every image the webhook would give a secret passes the condition',
    ({ render }) => {
      const objects = render();
      const regex = imageRegex(objects);
      const { rules } = parseConfig(configFile(objects), 'config.yaml');
      const missed = IMAGES.filter((image) => matchingSecrets([image], rules).length > 0 && !regex.test(image));
      expect(missed).toEqual([]);
    },
  );

  test('with the defaults, images from other registries do not pass, so their pods are never sent', () => {
    const regex = imageRegex(objectsOf('defaults'));
    const passed = [
      'nginx:1.27',
      'docker.io/library/nginx',
      'quay.io/prometheus/prometheus',
      'other.azurecr.io/app',
      'myregistry.azurecr.io:443/app',
      'myregistry.azurecr.io.evil.com/app',
      'MyRegistry.azurecr.io/app',
    ];
    expect(passed.filter((image) => regex.test(image))).toEqual([]);
    expect(regex.test('myregistry.azurecr.io/team/app:v1')).toBe(true);
  });

  test.each([
    { scenario: 'defaults', servesDockerHub: false },
    { scenario: 'no-sync-values.yaml', servesDockerHub: false },
    { scenario: 'multi-registry-values.yaml', servesDockerHub: true },
  ])(
    'with $scenario, only Docker Hub lookalikes pass without a secret, and only when a registry serves Docker Hub',
    ({ scenario, servesDockerHub }) => {
      const objects = objectsOf(scenario);
      const regex = imageRegex(objects);
      const { rules } = parseConfig(configFile(objects), 'config.yaml');
      const extra = IMAGES.filter((image) => regex.test(image) && matchingSecrets([image], rules).length === 0);
      const dockerHubLookalike = (image: string): boolean =>
        !image.includes('/') || /^(index\.)?docker\.io\//.test(image) || /^[^/.:A-Z]+\//.test(image);
      expect(extra.filter((image) => !(servesDockerHub && dockerHubLookalike(image)))).toEqual([]);
    },
  );
});

// ---------------------------------------------------------------------------------------------

describe('values.schema.json', () => {
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as {
    properties: {
      registries: { items: { properties: Record<string, { pattern: string }> } };
      optIn: { properties: Record<string, { pattern: string }> };
    };
  };

  test("server, secretName and the opt-in label are checked with the configuration loader's own patterns", () => {
    const items = schema.properties.registries.items.properties;
    const config = CONFIG_SCHEMA.properties;
    expect(items['server']?.pattern).toBe(config.registries.items.properties.server.pattern);
    expect(items['secretName']?.pattern).toBe(config.registries.items.properties.secretName.pattern);
    expect(schema.properties.optIn.properties['label']?.pattern).toBe(config.optIn.properties.label.pattern);
    expect(schema.properties.optIn.properties['value']?.pattern).toBe(config.optIn.properties.value.pattern);
  });

  const registry = (extra: Record<string, unknown>): Record<string, unknown> => ({
    server: 'myregistry.azurecr.io',
    secretName: 'acr-myregistry',
    ...extra,
  });
  test.each([
    { why: 'an unknown top-level key', values: { replicas: 3 }, error: "additional properties 'replicas' not allowed" },
    {
      why: 'a misspelt nested key',
      values: { webhook: { replica: 3 } },
      error: "additional properties 'replica' not allowed",
    },
    {
      why: 'an unknown key in a registry entry',
      values: { registries: [registry({ secret: 'x' })] },
      error: "additional properties 'secret' not allowed",
    },
    { why: 'replicas given as a string', values: { webhook: { replicas: '2' } }, error: 'got string, want integer' },
    { why: 'zero replicas', values: { webhook: { replicas: 0 } }, error: 'minimum' },
    {
      why: 'a failurePolicy other than Ignore or Fail',
      values: { webhook: { failurePolicy: 'ignore' } },
      error: "value must be one of 'Ignore', 'Fail'",
    },
    {
      why: "a timeout above the apiserver's 30 seconds",
      values: { webhook: { timeoutSeconds: 31 } },
      error: 'maximum',
    },
    {
      why: 'a boolean given as a string',
      values: { syncSecrets: { enabled: 'true' } },
      error: 'got string, want boolean',
    },
    { why: 'no registries at all', values: { registries: [] }, error: 'minItems' },
    {
      why: 'a server with a scheme',
      values: {
        registries: [
          registry({ server: 'https://myregistry.azurecr.io', credentials: { token: { name: 'n', password: 'p' } } }),
        ],
      },
      error: '/registries/0/server',
    },
    {
      why: 'an uppercase secretName',
      values: { registries: [registry({ secretName: 'ACR_MyRegistry' })] },
      error: '/registries/0/secretName',
    },
    {
      why: 'two kinds of credentials on one entry',
      values: {
        registries: [registry({ credentials: { token: { name: 'n', password: 'p' }, existingSecret: { name: 's' } } })],
      },
      error: 'maxProperties',
    },
    {
      why: 'a service principal without its secret',
      values: { registries: [registry({ credentials: { servicePrincipal: { clientId: 'id' } } })] },
      error: "missing property 'clientSecret'",
    },
    {
      why: 'an issuerRef without a name',
      values: { certManager: { enabled: true, issuerRef: { kind: 'ClusterIssuer' } } },
      error: "missing property 'name'",
    },
    {
      why: 'an opt-in label value that is empty',
      values: { optIn: { label: 'acr-pull-webhook/inject', value: '' } },
      error: '/optIn/value',
    },
    { why: 'a digest that is not sha256', values: { image: { digest: 'latest' } }, error: '/image/digest' },
  ])('rejects $why', ({ values, error }) => {
    expect(renderChartError({ values })).toContain(error);
  });

  test.each([
    {
      why: 'a grace period not longer than drain plus shutdown',
      values: { webhook: { terminationGracePeriodSeconds: 20 } },
      error:
        'webhook.terminationGracePeriodSeconds (20) must be greater than ' +
        'webhook.drainDelaySeconds + webhook.shutdownTimeoutSeconds (20)',
    },
    {
      why: 'a registry without credentials while sync-secrets is enabled',
      values: { registries: [registry({})] },
      error: 'registries[0] (myregistry.azurecr.io): credentials are required while syncSecrets.enabled is true',
    },
  ])('the templates refuse $why', ({ values, error }) => {
    expect(renderChartError({ values })).toContain(error);
  });
});

// ---------------------------------------------------------------------------------------------

describe("the chart's RBAC and policy are the ones shipped in deploy/rbac/", () => {
  // deploy/rbac/ is written for release "acr-pull-webhook" in namespace "acr-pull-webhook" and the
  // registries of examples/config.yaml; render the chart the same way and compare.
  const DEPLOY = join(import.meta.dirname, '../../deploy/rbac');
  const shipped = (file: string): Manifest[] =>
    parseAllDocuments(readFileSync(join(DEPLOY, file), 'utf8'))
      .map((document) => document.toJS() as Manifest | null)
      .filter((object): object is Manifest => object !== null);
  const example = parseYaml(readFileSync(join(import.meta.dirname, '../../examples/config.yaml'), 'utf8')) as {
    registries: { server: string; secretName: string }[];
  };
  const render = (extra: Values = {}): Manifest[] =>
    renderChart({
      release: 'acr-pull-webhook',
      namespace: 'acr-pull-webhook',
      values: merge(
        {
          registries: example.registries.map((entry) => ({
            ...entry,
            credentials: { token: { name: 'n', password: 'p' } },
          })),
        },
        extra,
      ),
    });
  const rules = (objects: readonly Manifest[], kind: string, name: string): V1PolicyRule[] =>
    (findObject(objects, kind, (object) => object.metadata.name === name) as unknown as V1Role).rules ?? [];
  const withoutRule = (all: V1PolicyRule[], drop: V1PolicyRule): V1PolicyRule[] =>
    all.filter((rule) => JSON.stringify(rule) !== JSON.stringify(drop));

  test('sync-secrets: same ClusterRole and subjects; same Role less create on Leases (the chart makes it)', () => {
    const chart = render();
    const deploy = shipped('sync-secrets.yaml');
    const name = 'acr-pull-webhook-sync-secrets';
    expect(rules(chart, 'ClusterRole', name)).toEqual(rules(deploy, 'ClusterRole', name));
    expect(rules(chart, 'Role', name)).toEqual(
      withoutRule(rules(deploy, 'Role', name), {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        verbs: ['create'],
      }),
    );
    expect(findObject(chart, 'Lease').metadata.name).toBe('acr-pull-webhook-sync-secrets');
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      const binding = (objects: readonly Manifest[]): unknown => {
        const { roleRef, subjects } = findObject(
          objects,
          kind,
          (object) => object.metadata.name === name,
        ) as unknown as { roleRef: unknown; subjects: unknown };
        return { roleRef, subjects };
      };
      expect(binding(chart), kind).toEqual(binding(deploy));
    }
  });

  test('sync-secrets with prune: delete is added to the by-name Secret rule, as deploy/rbac says', () => {
    const rule = rules(render({ syncSecrets: { prune: true } }), 'ClusterRole', 'acr-pull-webhook-sync-secrets').find(
      (candidate) => candidate.resourceNames !== undefined,
    );
    expect(rule?.verbs).toEqual(['get', 'list', 'watch', 'update', 'delete']);
  });

  test('sync-secrets: the same ValidatingAdmissionPolicy and binding', () => {
    const chart = render();
    const deploy = shipped('sync-secrets-vap.yaml');
    for (const kind of ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding']) {
      const spec = (objects: readonly Manifest[]): unknown => findObject(objects, kind, (o) => !isHook(o))['spec'];
      expect(spec(chart), kind).toEqual(spec(deploy));
    }
  });

  test('certs-gen: the hook has the Role of deploy/rbac, the lasting one that less create; same ClusterRole', () => {
    const chart = render();
    const deploy = shipped('certs-gen.yaml');
    const name = 'acr-pull-webhook-certs-gen';
    const create: V1PolicyRule = { apiGroups: [''], resources: ['secrets'], verbs: ['create'] };
    expect(rules(chart, 'Role', `${name}-create`)).toEqual(rules(deploy, 'Role', name));
    expect(rules(chart, 'Role', name)).toEqual(withoutRule(rules(deploy, 'Role', name), create));
    expect(rules(chart, 'ClusterRole', name)).toEqual(rules(deploy, 'ClusterRole', name));
    expect(rules(chart, 'ClusterRole', `${name}-create`)).toEqual(
      rules(deploy, 'ClusterRole', name).map((rule) => ({ ...rule, verbs: ['get'] })),
    );
    expect(webhookConfiguration(chart).metadata?.name).toBe(rules(deploy, 'ClusterRole', name)[0]?.resourceNames?.[0]);
  });

  test('with the validatingAdmissionPolicy value off, there is no policy', () => {
    const kinds = render({ syncSecrets: { validatingAdmissionPolicy: { enabled: false } } })
      .filter((object) => !isHook(object))
      .map((object) => object.kind);
    expect(kinds).not.toContain('ValidatingAdmissionPolicy');
    expect(kinds).not.toContain('ValidatingAdmissionPolicyBinding');
  });
});

// ---------------------------------------------------------------------------------------------

describe('sync-secrets', () => {
  test('the --once Job runs after install and upgrade; --watch takes Lease namespace and identity from the pod', () => {
    const objects = objectsOf('defaults');
    const job = findObject<V1Job & Manifest>(objects, 'Job', component('sync-secrets'));
    expect(job.metadata.annotations?.['helm.sh/hook']).toBe('post-install,post-upgrade');
    expect(job.spec?.template.spec?.containers[0]?.args).toEqual([
      'sync-secrets',
      '--config=/etc/acr-pull-webhook/config.yaml',
      '--once',
      '--kube-api-qps=2000',
      '--kube-api-burst=4000',
      '--concurrency=32',
      '--log-level=info',
    ]);
    const deployment = findObject<V1Deployment>(objects, 'Deployment', component('sync-secrets'));
    const container = deployment.spec?.template.spec?.containers[0];
    expect(container?.args).toEqual([
      'sync-secrets',
      '--config=/etc/acr-pull-webhook/config.yaml',
      '--watch',
      '--health-port=8081',
      '--kube-api-qps=2000',
      '--kube-api-burst=4000',
      '--concurrency=32',
      '--log-level=info',
    ]);
    const limited = renderChart({ values: { syncSecrets: { kubeApi: { qps: 0, burst: 1 }, concurrency: 4 } } });
    const limitedArgs = findObject<V1Deployment>(limited, 'Deployment', component('sync-secrets')).spec?.template.spec
      ?.containers[0]?.args;
    expect(limitedArgs).toEqual(expect.arrayContaining(['--kube-api-qps=0', '--kube-api-burst=1', '--concurrency=4']));
    expect(container?.env?.map((variable) => [variable.name, variable.valueFrom?.fieldRef?.fieldPath])).toEqual([
      ['ACR_PULL_WEBHOOK_LEASE_NAMESPACE', 'metadata.namespace'],
      ['ACR_PULL_WEBHOOK_LEASE_IDENTITY', 'metadata.name'],
    ]);
    expect(container?.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'health' });
    expect(findObject(objects, 'Lease').metadata.name).toBe('acr-pull-webhook-sync-secrets');
  });

  test('inline credentials go into one Secret of the release; existingSecret entries are read where they are', () => {
    const objects = objectsOf('multi-registry-values.yaml');
    const secret = findObject(objects, 'Secret', (object) => !isHook(object)) as unknown as {
      data: Record<string, string>;
    };
    const decoded = Object.fromEntries(
      Object.entries(secret.data).map(([key, value]) => [key, Buffer.from(value, 'base64').toString()]),
    );
    expect(decoded).toEqual({
      'registry-0-username': '00000000-0000-0000-0000-000000000000',
      'registry-0-password': 'not-a-real-secret',
      'registry-1-username': 'china-pull',
      'registry-1-password': 'not-a-real-password',
    });
    expect(objectsOf('defaults').filter((object) => object.kind === 'Secret')).toEqual([]);
  });
});
