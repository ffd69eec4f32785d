// The chart as a user installs it on the one-node cluster: the project's image and the packaged chart pushed
// to the ACR-named private registry, the release namespace prepared with the Secrets a careful user creates
// (image pull Secret, credentials per registry), and helm run from the OCI registry with hooks on.
// Shared by the node suite's chart tests and `npm start`.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { DOCKERCONFIGJSON_KEY, DOCKERCONFIGJSON_TYPE } from '../../../src/constants.ts';
import { type NodeCluster, REGISTRY_HOSTS } from './cluster.ts';
import { buildImage, pushImage } from './image.ts';
import { SECRET_NAMES } from './story.ts';

const REPO = resolve(import.meta.dirname, '..', '..', '..');
const CHART_DIR = join(REPO, 'charts', 'acr-pull-webhook');
const HELM = join(REPO, '.tools', 'bin', 'helm');
/** helm's own --timeout for install/upgrade/uninstall; the process gets a minute more to report it. */
const HELM_TIMEOUT = '5m';
const HELM_PROCESS_MS = 6 * 60_000;

export const RELEASE = { name: 'acr', namespace: 'acr-system' } as const;
/** The Secret in the release namespace the kubelet pulls the webhook's own image with. */
export const IMAGE_PULL_SECRET = 'acr-pull-webhook-image';
/** The credentials Secrets (existingSecret) a user creates before installing, one per registry. */
export const CREDENTIALS_SECRETS = SECRET_NAMES.map((name) => `${name}-credentials`);

export interface Release {
  readonly name: string;
  readonly namespace: string;
  /** 'oci://e2etest.azurecr.io/charts/acr-pull-webhook' */
  readonly chartRef: string;
  /** Chart.yaml version */
  readonly version: string;
  /** '<registry>/acr-pull-webhook:<tag>' as pushed */
  readonly image: string;
  /** Runs .tools/bin/helm inside the cluster's namespaces (registry names resolve only there) with the inside
   *  kubeconfig and a registry config logged in to the registry; rejects with helm's stderr. */
  helm(...args: string[]): Promise<string>;
  /** The values a user would give for this cluster (image at the registry, imagePullSecrets, both registries with
   *  credentials), deep-merged with `overrides`. */
  values(overrides?: Record<string, unknown>): Record<string, unknown>;
  /** helm install <chartRef> --version --namespace --wait --timeout 5m (hooks on) with values(overrides);
   *  returns elapsed ms and helm's output. */
  install(overrides?: Record<string, unknown>): Promise<{ ms: number; output: string }>;
  /** helm upgrade --wait from the same chartRef and version. */
  upgrade(overrides?: Record<string, unknown>): Promise<{ ms: number; output: string }>;
  /** helm uninstall --wait */
  uninstall(): Promise<{ ms: number; output: string }>;
}

type Values = Record<string, unknown>;

function isPlainObject(value: unknown): value is Values {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Objects merge key by key; anything else (arrays included) in `overrides` replaces, as helm merges -f files. */
export function deepMerge(base: Values, overrides: Values): Values {
  const out: Values = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

/** Builds (cached) and pushes the image, packages and pushes the chart, creates the release namespace with the
 *  image pull Secret and credentials Secrets a user would create; returns the Release. */
export async function publishRelease(cluster: NodeCluster, log: (line: string) => void = () => {}): Promise<Release> {
  const registry = cluster.registries[0];
  const chart = parseYaml(readFileSync(join(CHART_DIR, 'Chart.yaml'), 'utf8')) as {
    name: string;
    version: string;
    appVersion: string;
  };

  let started = Date.now();
  await buildImage();
  log(`image built (or cached): ${Date.now() - started} ms`);
  started = Date.now();
  // Tagged with the chart's appVersion, the tag the chart uses when image.tag is empty.
  const image = await pushImage(cluster, registry, `acr-pull-webhook:${chart.appVersion}`);
  log(`image pushed as ${image}: ${Date.now() - started} ms`);

  // helm's homes and registry login live in a directory of the cluster's, removed with it.
  const home = mkdtempSync(join(cluster.dir, 'helm-'));
  const env = {
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    HELM_REGISTRY_CONFIG: join(home, 'registry.json'),
    KUBECONFIG: cluster.insideKubeconfigPath,
  };
  const helm = async (...args: string[]): Promise<string> => {
    try {
      return await cluster.runInside([HELM, ...args], env, HELM_PROCESS_MS);
    } catch (err) {
      throw new Error(`helm ${args.join(' ')}: ${(err as Error).message}`);
    }
  };

  // Logs in with the registry's password of the moment: a test may rotate it (Registry.setPassword).
  const login = (): Promise<string> =>
    helm(
      'registry',
      'login',
      registry.host,
      '--ca-file',
      cluster.caPath,
      '-u',
      registry.username,
      '-p',
      registry.password,
    );

  started = Date.now();
  await login();
  await helm('package', CHART_DIR, '--destination', home);
  const chartRepo = `oci://${registry.host}/charts`;
  await helm('push', join(home, `${chart.name}-${chart.version}.tgz`), chartRepo, '--ca-file', cluster.caPath);
  const chartRef = `${chartRepo}/${chart.name}`;
  log(`chart ${chartRef}:${chart.version} pushed: ${Date.now() - started} ms`);

  // What a user creates before installing: the namespace (restricted Pod Security, which every pod of the chart
  // must pass), the image pull Secret (kubectl create secret docker-registry) and the credentials Secrets.
  const core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  const namespace = RELEASE.namespace;
  await core.createNamespace({
    body: {
      metadata: {
        name: namespace,
        labels: {
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/warn': 'restricted',
        },
      },
    },
  });
  const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: IMAGE_PULL_SECRET },
      type: DOCKERCONFIGJSON_TYPE,
      stringData: {
        [DOCKERCONFIGJSON_KEY]: JSON.stringify({
          auths: { [registry.host]: { username: registry.username, password: registry.password, auth } },
        }),
      },
    },
  });
  for (const [i, source] of cluster.registries.entries()) {
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name: CREDENTIALS_SECRETS[i] as string },
        stringData: { username: source.username, password: source.password },
      },
    });
  }
  log(`namespace ${namespace} with Secrets ${[IMAGE_PULL_SECRET, ...CREDENTIALS_SECRETS].join(', ')}`);

  const values = (overrides: Values = {}): Values =>
    deepMerge(
      {
        image: { repository: image.slice(0, image.lastIndexOf(':')), tag: chart.appVersion },
        imagePullSecrets: [IMAGE_PULL_SECRET],
        registries: REGISTRY_HOSTS.map((server, i) => ({
          server,
          secretName: SECRET_NAMES[i],
          credentials: { existingSecret: { name: CREDENTIALS_SECRETS[i] } },
        })),
      },
      overrides,
    );

  let valuesCount = 0;
  const valuesFile = (overrides: Values): string => {
    const path = join(home, `values-${valuesCount++}.json`);
    // JSON is YAML: helm reads it as a -f file.
    writeFileSync(path, JSON.stringify(values(overrides), null, 2));
    return path;
  };
  const timed = async (args: string[], pullsChart = false): Promise<{ ms: number; output: string }> => {
    if (pullsChart) await login();
    const start = Date.now();
    const output = await helm(...args);
    return { ms: Date.now() - start, output };
  };
  const common = ['--namespace', namespace, '--wait=watcher', '--timeout', HELM_TIMEOUT];
  const fromRegistry = (overrides: Values): string[] => [
    RELEASE.name,
    chartRef,
    '--version',
    chart.version,
    '--ca-file',
    cluster.caPath,
    ...common,
    '-f',
    valuesFile(overrides),
  ];

  return {
    name: RELEASE.name,
    namespace,
    chartRef,
    version: chart.version,
    image,
    helm,
    values,
    install: (overrides = {}) => timed(['install', ...fromRegistry(overrides)], true),
    upgrade: (overrides = {}) => timed(['upgrade', ...fromRegistry(overrides)], true),
    uninstall: () => timed(['uninstall', RELEASE.name, ...common]),
  };
}
