// The chart's token credentials (issue #16): registries[].credentials.azure, the workload identity token the
// sync-secrets pods send to Entra ID, the client secret form, and the values that reach Entra ID and the
// registries from unusual networks (hostAliases, trustedCA). Rendered by the real helm; the configuration it
// writes is read by the programs' own loader.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container, V1Deployment, V1Job, V1PodSpec, V1ServiceAccount, V1Volume } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { type Config, parseConfig } from '../../src/config/config.ts';
import { GUID_PATTERN } from '../../src/config/registry-credentials.ts';
import {
  CHART_DIR,
  findObject,
  helm,
  type Manifest,
  type RenderOptions,
  renderChart,
  renderChartError,
} from '../support/helm.ts';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '0f3b4c5d-1a2b-4c3d-8e9f-a0b1c2d3e4f5';
const OTHER_TENANT = '11111111-2222-4333-8444-555555555555';
const OTHER_CLIENT = '66666666-7777-4888-9999-aaaaaaaaaaaa';
const TOKEN_DIR = '/var/run/secrets/azure/tokens';
const TOKEN_FILE = '/var/run/secrets/azure/tokens/azure-identity-token';

const workloadIdentity = { enabled: true, clientId: CLIENT, tenantId: TENANT };
const WORKLOAD_IDENTITY_VALUES = {
  registries: [
    { server: 'contoso.azurecr.io', secretName: 'acr-contoso', credentials: { azure: { workloadIdentity: true } } },
  ],
  syncSecrets: { workloadIdentity },
};
const CLIENT_SECRET_VALUES = {
  registries: [
    {
      server: 'contoso.azurecr.io',
      secretName: 'acr-contoso',
      credentials: {
        azure: {
          tenantId: TENANT,
          clientId: CLIENT,
          clientSecret: { existingSecret: { name: 'contoso-sp', key: 'secret' } },
        },
      },
    },
  ],
};

// ---------------------------------------------------------------------------------------------
// Reading the rendered objects

interface SyncPod {
  readonly owner: string;
  readonly spec: V1PodSpec;
  readonly container: V1Container;
}

/** The sync-secrets pod templates: the --watch Deployment and the --once hook Job. */
function syncPods(objects: readonly Manifest[]): SyncPod[] {
  const pods: SyncPod[] = [];
  for (const object of objects) {
    if (object.metadata.labels?.['app.kubernetes.io/component'] !== 'sync-secrets') continue;
    const spec =
      object.kind === 'Deployment'
        ? (object as unknown as V1Deployment).spec?.template.spec
        : object.kind === 'Job'
          ? (object as unknown as V1Job).spec?.template.spec
          : undefined;
    if (spec === undefined) continue;
    pods.push({ owner: `${object.kind}/${object.metadata.name}`, spec, container: spec.containers[0] as V1Container });
  }
  return pods;
}

const allPodSpecs = (objects: readonly Manifest[]): V1PodSpec[] =>
  objects.flatMap((object) => {
    if (object.kind === 'Deployment' || object.kind === 'Job')
      return [(object as unknown as V1Deployment).spec?.template.spec as V1PodSpec];
    if (object.kind === 'CronJob')
      return [
        (object as unknown as { spec: { jobTemplate: { spec: V1Job['spec'] } } }).spec.jobTemplate.spec?.template
          .spec as V1PodSpec,
      ];
    return [];
  });

const configText = (objects: readonly Manifest[]): string =>
  (findObject(objects, 'ConfigMap') as unknown as { data: Record<string, string> }).data['config.yaml'] ?? '';
const loadedConfig = (objects: readonly Manifest[]): Config => parseConfig(configText(objects), 'config.yaml');
const syncAccount = (objects: readonly Manifest[]): V1ServiceAccount =>
  findObject<V1ServiceAccount>(
    objects,
    'ServiceAccount',
    (object) => object.metadata.labels?.['app.kubernetes.io/component'] === 'sync-secrets',
  );
const volume = (spec: V1PodSpec, name: string): V1Volume | undefined =>
  spec.volumes?.find((candidate) => candidate.name === name);
const tokenProjections = (spec: V1PodSpec) =>
  (spec.volumes ?? [])
    .flatMap((entry) => entry.projected?.sources ?? [])
    .filter((source) => source.serviceAccountToken);

/** Renders on first use, inside a test, so a chart that cannot render fails that test, not the file's collection. */
function lazyRender(options: RenderOptions): () => Manifest[] {
  let objects: Manifest[] | undefined;
  return () => {
    objects ??= renderChart(options);
    return objects;
  };
}

// ---------------------------------------------------------------------------------------------

describe('the defaults', () => {
  const objects = lazyRender({});

  test('render no token volume, no ServiceAccount annotation, no extra CA, no host aliases, no azure config', () => {
    for (const spec of allPodSpecs(objects())) {
      expect(tokenProjections(spec)).toEqual([]);
      expect(spec.hostAliases).toBeUndefined();
      for (const container of spec.containers)
        expect(container.env?.map((variable) => variable.name) ?? []).not.toContain('NODE_EXTRA_CA_CERTS');
    }
    expect(syncAccount(objects()).metadata?.annotations).toBeUndefined();
    expect(configText(objects())).not.toMatch(/azure:|acrHostSuffixes/);
    const config = loadedConfig(objects());
    expect(config.registries.map((entry) => entry.credentials?.kind)).toEqual(['files']);
    expect(config.acrHostSuffixes).toEqual([]);
    for (const { container } of syncPods(objects()))
      expect(container.args?.some((arg) => arg.startsWith('--token-refresh-fraction'))).toBe(false);
  });
});

describe('workload identity', () => {
  const objects = lazyRender({ values: WORKLOAD_IDENTITY_VALUES });

  test('both sync-secrets pods, the --watch Deployment and the --once Job, get the projected token', () => {
    const pods = syncPods(objects());
    expect(pods.map(({ owner }) => owner.split('/')[0]).sort()).toEqual(['Deployment', 'Job']);
    for (const { owner, spec, container } of pods) {
      expect(volume(spec, 'azure-identity-token'), owner).toEqual({
        name: 'azure-identity-token',
        projected: {
          sources: [
            {
              serviceAccountToken: {
                audience: 'api://AzureADTokenExchange',
                expirationSeconds: 3600,
                path: 'azure-identity-token',
              },
            },
          ],
        },
      });
      expect(
        container.volumeMounts?.find((mount) => mount.name === 'azure-identity-token'),
        owner,
      ).toEqual({
        name: 'azure-identity-token',
        mountPath: TOKEN_DIR,
        readOnly: true,
      });
    }
  });

  test('no other pod gets a ServiceAccount token for Entra ID', () => {
    const syncSpecs = new Set(syncPods(objects()).map(({ spec }) => spec));
    for (const spec of allPodSpecs(objects()).filter((candidate) => !syncSpecs.has(candidate)))
      expect(tokenProjections(spec)).toEqual([]);
  });

  test('the configuration names the projected file, and the loader reads it as a federated token', () => {
    expect(loadedConfig(objects()).registries[0]?.credentials).toEqual({
      kind: 'azure',
      azure: {
        tenantId: TENANT,
        clientId: CLIENT,
        secretSource: { kind: 'federated-token', file: TOKEN_FILE },
        cloud: 'AzurePublicCloud',
        authorityHost: 'https://login.microsoftonline.com/',
        scope: 'https://containerregistry.azure.net/.default',
      },
    });
  });

  test('the ServiceAccount is annotated with the client and tenant IDs, as azure-workload-identity expects', () => {
    expect(syncAccount(objects()).metadata?.annotations).toEqual({
      'azure.workload.identity/client-id': CLIENT,
      'azure.workload.identity/tenant-id': TENANT,
    });
  });

  test("the install notes name the federated credential's subject and audience", () => {
    const result = helm(['install', '--dry-run=client', 'acr', CHART_DIR, '--namespace', 'acr-system'], {
      values: WORKLOAD_IDENTITY_VALUES,
    });
    expect(result.status).toBe(0);
    const notes = result.stdout.slice(result.stdout.indexOf('NOTES:'));
    expect(notes).toContain(`the federated credential of client ID ${CLIENT}`);
    expect(notes).toContain('audience: api://AzureADTokenExchange');
    expect(notes).toContain('subject: system:serviceaccount:acr-system:acr-acr-pull-webhook-sync-secrets');
  });

  test('no credentials volume is mounted when every registry uses workload identity', () => {
    for (const { owner, spec, container } of syncPods(objects())) {
      expect(volume(spec, 'credentials'), owner).toBeUndefined();
      expect(
        container.volumeMounts?.map((mount) => mount.name),
        owner,
      ).toEqual(['config', 'azure-identity-token']);
    }
    expect(objects().filter((object) => object.kind === 'Secret')).toEqual([]);
  });

  test('the audience and lifetime of the token follow the values', () => {
    const custom = renderChart({
      values: {
        ...WORKLOAD_IDENTITY_VALUES,
        syncSecrets: { workloadIdentity: { ...workloadIdentity, audience: 'api://custom', expirationSeconds: 7200 } },
      },
    });
    for (const { spec } of syncPods(custom))
      expect(tokenProjections(spec)).toEqual([
        { serviceAccountToken: { audience: 'api://custom', expirationSeconds: 7200, path: 'azure-identity-token' } },
      ]);
  });

  test("a registry's own tenant and client IDs win over syncSecrets.workloadIdentity's", () => {
    const rendered = renderChart({
      values: {
        registries: [
          {
            server: 'contoso.azurecr.io',
            secretName: 'acr-contoso',
            credentials: { azure: { workloadIdentity: true, tenantId: OTHER_TENANT, clientId: OTHER_CLIENT } },
          },
        ],
        syncSecrets: { workloadIdentity },
      },
    });
    const credentials = loadedConfig(rendered).registries[0]?.credentials;
    expect(credentials?.kind === 'azure' && [credentials.azure.tenantId, credentials.azure.clientId]).toEqual([
      OTHER_TENANT,
      OTHER_CLIENT,
    ]);
  });
});

describe('a client secret', () => {
  const objects = lazyRender({ values: CLIENT_SECRET_VALUES });

  test('only the named key of the named Secret is mounted, in both sync-secrets pods, as the configured file', () => {
    const config = loadedConfig(objects());
    const credentials = config.registries[0]?.credentials;
    expect(credentials?.kind).toBe('azure');
    const file = credentials?.kind === 'azure' ? credentials.azure.secretSource : undefined;
    expect(file).toEqual({
      kind: 'client-secret',
      file: '/var/run/acr-pull-webhook/credentials/registry-0/client-secret',
    });
    const pods = syncPods(objects());
    expect(pods).toHaveLength(2);
    for (const { owner, spec, container } of pods) {
      expect(volume(spec, 'credentials')?.projected?.sources, owner).toEqual([
        { secret: { name: 'contoso-sp', items: [{ key: 'secret', path: 'registry-0/client-secret' }] } },
      ]);
      expect(container.volumeMounts?.find((mount) => mount.name === 'credentials')?.mountPath, owner).toBe(
        '/var/run/acr-pull-webhook/credentials',
      );
      expect(tokenProjections(spec), owner).toEqual([]);
    }
  });

  test('the key defaults to client-secret, and the release stores no Secret of its own', () => {
    const rendered = renderChart({
      values: {
        registries: [
          {
            server: 'contoso.azurecr.cn',
            secretName: 'acr-contoso',
            credentials: {
              azure: { tenantId: TENANT, clientId: CLIENT, clientSecret: { existingSecret: { name: 'contoso-sp' } } },
            },
          },
        ],
      },
    });
    for (const { spec } of syncPods(rendered))
      expect(volume(spec, 'credentials')?.projected?.sources).toEqual([
        { secret: { name: 'contoso-sp', items: [{ key: 'client-secret', path: 'registry-0/client-secret' }] } },
      ]);
    expect(rendered.filter((object) => object.kind === 'Secret')).toEqual([]);
    const credentials = loadedConfig(rendered).registries[0]?.credentials;
    expect(credentials?.kind === 'azure' && credentials.azure.cloud).toBe('AzureChinaCloud');
  });

  test('the ServiceAccount is not annotated without syncSecrets.workloadIdentity', () => {
    expect(syncAccount(objects()).metadata?.annotations).toBeUndefined();
  });
});

describe('mixed with the username/password forms', () => {
  test('each entry keeps its own form and files; cloud and authorityHost reach the loader', () => {
    const objects = renderChart({
      values: {
        registries: [
          {
            server: 'contoso.azurecr.io',
            secretName: 'acr-contoso',
            credentials: { azure: { workloadIdentity: true } },
          },
          {
            server: 'registry.internal.example:5000',
            secretName: 'internal',
            credentials: {
              azure: {
                tenantId: OTHER_TENANT,
                clientId: OTHER_CLIENT,
                cloud: 'AzureUSGovernment',
                authorityHost: 'https://login.internal.example/adfs',
                clientSecret: { existingSecret: { name: 'internal-sp' } },
              },
            },
          },
          { server: 'legacy.azurecr.io', secretName: 'legacy', credentials: { existingSecret: { name: 'legacy' } } },
        ],
        syncSecrets: { workloadIdentity },
      },
    });
    const [first, second, third] = loadedConfig(objects).registries.map((entry) => entry.credentials);
    expect(first?.kind === 'azure' && first.azure.secretSource).toEqual({ kind: 'federated-token', file: TOKEN_FILE });
    expect(second).toEqual({
      kind: 'azure',
      azure: {
        tenantId: OTHER_TENANT,
        clientId: OTHER_CLIENT,
        secretSource: { kind: 'client-secret', file: '/var/run/acr-pull-webhook/credentials/registry-1/client-secret' },
        cloud: 'AzureUSGovernment',
        authorityHost: 'https://login.internal.example/adfs/',
        scope: 'https://containerregistry.azure.us/.default',
      },
    });
    expect(third).toEqual({
      kind: 'files',
      usernameFile: '/var/run/acr-pull-webhook/credentials/registry-2/username',
      passwordFile: '/var/run/acr-pull-webhook/credentials/registry-2/password',
    });
    for (const { spec } of syncPods(objects))
      expect(volume(spec, 'credentials')?.projected?.sources).toEqual([
        {
          secret: {
            name: 'legacy',
            items: [
              { key: 'username', path: 'registry-2/username' },
              { key: 'password', path: 'registry-2/password' },
            ],
          },
        },
        { secret: { name: 'internal-sp', items: [{ key: 'client-secret', path: 'registry-1/client-secret' }] } },
      ]);
  });

  test('helm lint --strict passes with every form at once', () => {
    const values = {
      ...WORKLOAD_IDENTITY_VALUES,
      registries: [
        ...WORKLOAD_IDENTITY_VALUES.registries,
        ...CLIENT_SECRET_VALUES.registries.map((entry) => ({
          ...entry,
          server: 'fabrikam.azurecr.io',
        })),
      ],
      syncSecrets: { workloadIdentity, tokenRefreshFraction: 0.75, trustedCA: { configMap: 'corp-ca', key: 'ca.crt' } },
    };
    const result = helm(['lint', '--strict', CHART_DIR, '--namespace', 'acr-system'], { values });
    expect(result.stdout + result.stderr).not.toMatch(/\[(WARNING|ERROR)\]/);
    expect(result.status).toBe(0);
  });
});

describe('reaching Entra ID and the registries', () => {
  const objects = lazyRender({
    values: {
      ...WORKLOAD_IDENTITY_VALUES,
      acrHostSuffixes: ['acr.contoso.internal'],
      syncSecrets: {
        workloadIdentity,
        tokenRefreshFraction: 0.8,
        hostAliases: [{ ip: '10.1.2.3', hostnames: ['contoso.azurecr.io', 'contoso.westeurope.data.azurecr.io'] }],
        trustedCA: { configMap: 'corp-ca', key: 'bundle.pem' },
      },
    },
  });

  test('hostAliases and the trusted CA reach both sync-secrets pods, and NODE_EXTRA_CA_CERTS names the file', () => {
    for (const { owner, spec, container } of syncPods(objects())) {
      expect(spec.hostAliases, owner).toEqual([
        { ip: '10.1.2.3', hostnames: ['contoso.azurecr.io', 'contoso.westeurope.data.azurecr.io'] },
      ]);
      expect(volume(spec, 'trusted-ca'), owner).toEqual({
        name: 'trusted-ca',
        configMap: { name: 'corp-ca', items: [{ key: 'bundle.pem', path: 'ca.crt' }] },
      });
      const mount = container.volumeMounts?.find((entry) => entry.name === 'trusted-ca');
      expect(mount?.readOnly, owner).toBe(true);
      expect(container.env?.find((variable) => variable.name === 'NODE_EXTRA_CA_CERTS')?.value, owner).toBe(
        `${mount?.mountPath}/ca.crt`,
      );
    }
  });

  test('the webhook and certs-gen pods get neither', () => {
    const syncSpecs = new Set(syncPods(objects()).map(({ spec }) => spec));
    for (const spec of allPodSpecs(objects()).filter((candidate) => !syncSpecs.has(candidate))) {
      expect(spec.hostAliases).toBeUndefined();
      expect(volume(spec, 'trusted-ca')).toBeUndefined();
    }
  });

  test('tokenRefreshFraction becomes the --token-refresh-fraction flag of the --watch Deployment only', () => {
    const flags = syncPods(objects()).map(({ owner, container }) => [
      owner.split('/')[0],
      container.args?.filter((arg) => arg.startsWith('--token-refresh-fraction')),
    ]);
    expect(flags.sort()).toEqual([
      ['Deployment', ['--token-refresh-fraction=0.8']],
      ['Job', []],
    ]);
  });

  test('a small fraction is written as a decimal, never in the exponent form the flag refuses', () => {
    const rendered = renderChart({
      values: { ...WORKLOAD_IDENTITY_VALUES, syncSecrets: { workloadIdentity, tokenRefreshFraction: 0.00001 } },
    });
    const deployment = syncPods(rendered).find(({ owner }) => owner.startsWith('Deployment/'));
    expect(deployment?.container.args).toContain('--token-refresh-fraction=0.00001');
  });

  test('a fraction given with --set (a string to helm) is passed on as written', () => {
    const result = helm(['template', 'acr', CHART_DIR, '--set', 'syncSecrets.tokenRefreshFraction=0.25'], {
      values: WORKLOAD_IDENTITY_VALUES,
    });
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('- --token-refresh-fraction=0.25\n');
  });

  test('acrHostSuffixes reach the configuration file', () => {
    expect(loadedConfig(objects()).acrHostSuffixes).toEqual(['acr.contoso.internal']);
  });
});

describe('values.schema.json and the templates refuse', () => {
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as {
    properties: {
      registries: {
        items: {
          properties: { credentials: { properties: { azure: { properties: Record<string, { pattern?: string }> } } } };
        };
      };
    };
  };

  test("tenant and client IDs with the configuration loader's own GUID pattern", () => {
    const azure = schema.properties.registries.items.properties.credentials.properties.azure.properties;
    expect(azure['tenantId']?.pattern).toBe(GUID_PATTERN);
    expect(azure['clientId']?.pattern).toBe(GUID_PATTERN);
  });

  const withAzure = (azure: Record<string, unknown>, server = 'contoso.azurecr.io'): Record<string, unknown> => ({
    registries: [{ server, secretName: 'acr-contoso', credentials: { azure } }],
    syncSecrets: { workloadIdentity },
  });
  const secret = { existingSecret: { name: 'contoso-sp' } };
  const ids = { tenantId: TENANT, clientId: CLIENT };

  test.each([
    {
      why: 'both workloadIdentity and clientSecret',
      values: withAzure({ ...ids, workloadIdentity: true, clientSecret: secret }),
      error: "at '/registries/0/credentials/azure': 'oneOf' failed, subschemas 0, 1 matched",
    },
    {
      why: 'neither workloadIdentity nor clientSecret',
      values: withAzure(ids),
      error: "at '/registries/0/credentials/azure': missing property 'workloadIdentity'",
    },
    {
      why: 'a tenant ID that is not a GUID',
      values: withAzure({ tenantId: 'contoso.onmicrosoft.com', clientId: CLIENT, clientSecret: secret }),
      error: "at '/registries/0/credentials/azure/tenantId': 'contoso.onmicrosoft.com' does not match pattern",
    },
    {
      why: 'a client secret without the IDs it belongs to',
      values: withAzure({ clientSecret: secret }),
      error: "properties 'tenantId', 'clientId' required, if 'clientSecret' exists",
    },
    {
      why: 'an unknown cloud',
      values: withAzure({ ...ids, cloud: 'AzureGermanCloud', clientSecret: secret }),
      error: "at '/registries/0/credentials/azure/cloud': value must be one of 'AzurePublicCloud'",
    },
    {
      why: 'workloadIdentity: false',
      values: withAzure({ ...ids, workloadIdentity: false }),
      error: "at '/registries/0/credentials/azure/workloadIdentity': value must be true",
    },
    {
      why: 'an authorityHost over plain HTTP',
      values: withAzure({ ...ids, authorityHost: 'http://login.microsoftonline.com/', clientSecret: secret }),
      error: "at '/registries/0/credentials/azure/authorityHost'",
    },
    {
      why: 'a refresh fraction of 1',
      values: { syncSecrets: { tokenRefreshFraction: 1 } },
      error: "at '/syncSecrets/tokenRefreshFraction': exclusiveMaximum: got 1, want 1",
    },
    {
      why: 'a refresh fraction of 0',
      values: { syncSecrets: { tokenRefreshFraction: 0 } },
      error: "at '/syncSecrets/tokenRefreshFraction': exclusiveMinimum: got 0, want 0",
    },
    {
      why: 'a projected token shorter than the API allows',
      values: { syncSecrets: { workloadIdentity: { ...workloadIdentity, expirationSeconds: 599 } } },
      error: "at '/syncSecrets/workloadIdentity/expirationSeconds': minimum: got 599, want 600",
    },
    {
      why: 'a workload identity client ID that is not a GUID',
      values: { syncSecrets: { workloadIdentity: { ...workloadIdentity, clientId: 'my-app' } } },
      error: "at '/syncSecrets/workloadIdentity/clientId': 'my-app' does not match pattern",
    },
    {
      why: 'an acrHostSuffixes entry with a leading dot',
      values: { acrHostSuffixes: ['.acr.contoso.internal'] },
      error: "at '/acrHostSuffixes/0'",
    },
  ])('$why (schema)', ({ values, error }) => {
    expect(renderChartError({ values })).toContain(error);
  });

  test.each([
    {
      why: 'workloadIdentity on a registry while syncSecrets.workloadIdentity is off',
      values: { registries: WORKLOAD_IDENTITY_VALUES.registries },
      error:
        'registries[0] (contoso.azurecr.io): credentials.azure.workloadIdentity needs ' +
        'syncSecrets.workloadIdentity.enabled',
    },
    {
      why: 'syncSecrets.workloadIdentity enabled without a client ID',
      values: { ...WORKLOAD_IDENTITY_VALUES, syncSecrets: { workloadIdentity: { enabled: true, tenantId: TENANT } } },
      error: 'syncSecrets.workloadIdentity.enabled needs syncSecrets.workloadIdentity.clientId and tenantId',
    },
    {
      why: "azure credentials on a '*' server",
      values: withAzure({ ...ids, clientSecret: secret }, '*.azurecr.io'),
      error: "registries[0] (*.azurecr.io): credentials.azure needs one registry, not a '*' pattern",
    },
    {
      why: 'a server of no known cloud without cloud',
      values: withAzure({ ...ids, clientSecret: secret }, 'registry.internal.example:5000'),
      error: 'registries[0] (registry.internal.example:5000): credentials.azure.cloud is required',
    },
    {
      why: "a cloud that contradicts the server's suffix",
      values: withAzure({ ...ids, cloud: 'AzurePublicCloud', clientSecret: secret }, 'contoso.azurecr.cn'),
      error:
        'registries[0] (contoso.azurecr.cn): credentials.azure.cloud AzurePublicCloud does not match the server, ' +
        'an AzureChinaCloud registry',
    },
  ])('$why (template)', ({ values, error }) => {
    expect(renderChartError({ values })).toContain(error);
  });
});
