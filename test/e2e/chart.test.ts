// The Helm chart on the e2e tier's apiserver: what it proves faster than the node tier. The node tier
// (test/node/chart.test.ts, chart-faults.test.ts) installs the chart as a user does, from the OCI registry
// with hooks, on a real node: the hook Jobs and the pods run in containers of the image under Pod Security
// "restricted", with the ServiceAccounts' own tokens; uninstall meets the real garbage collector.
//
// Here there is no kubelet or controller-manager, so helm installs with --no-hooks and nothing runs.
// What is left is what the apiserver alone decides: that each ServiceAccount is granted no more than its
// program needs (SubjectAccessReview) and the ValidatingAdmissionPolicy refuses what RBAC would allow;
// that an upgrade applies changed values and leaves the fields certs-gen and the sync-secrets leader
// write; and which pods the CEL matchCondition sends to the webhook.
//
// Tests run in order: the upgrade switches failurePolicy to Fail, which the matchCondition table needs.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AdmissionregistrationV1Api,
  ApiException,
  AppsV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1PodSpec,
  type V1ResourceAttributes,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createNamespace } from '../support/control-plane.ts';
import { CHART_DIR, helmAsync, helmOk } from '../support/helm.ts';

const KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);
const admission = kc.makeApiClient(AdmissionregistrationV1Api);
const coordination = kc.makeApiClient(CoordinationV1Api);
const authorization = kc.makeApiClient(AuthorizationV1Api);
const objects = KubernetesObjectApi.makeApiClient(kc);

const suffix = randomUUID().slice(0, 6);
const RELEASE = `chart-${suffix}`;
const NAMESPACE = `acr-chart-${suffix}`;
const FULLNAME = `${RELEASE}-acr-pull-webhook`;
const TLS_SECRET = `${FULLNAME}-tls`;
const LEASE = 'acr-pull-webhook-sync-secrets';
const OPT_IN = { 'acr-pull-webhook/inject': 'enabled' };

const BASE_VALUES = {
  registries: [
    {
      server: 'myregistry.azurecr.io',
      secretName: 'acr-myregistry',
      credentials: { token: { name: 'e2e-token', password: 'e2e-token-password' } },
    },
    {
      server: '*.azurecr.cn',
      secretName: 'acr-china',
      credentials: { existingSecret: { name: 'china-pull-credentials' } },
    },
  ],
};
const UPGRADE_VALUES = { ...BASE_VALUES, webhook: { failurePolicy: 'Fail', replicas: 1 } };

/** A namespace labelled for injection. */
let optedIn = '';
const namespaces: string[] = [];

const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;
const helmArgs = (...args: string[]): string[] => [...args, '--namespace', NAMESPACE];

/** The apiserver's message in a failed call (the Status body), or the error itself. */
function messageOf(error: unknown): string {
  if (!(error instanceof ApiException)) return String(error);
  try {
    return String((JSON.parse(String(error.body)) as { message?: string }).message);
  } catch {
    return String(error.body);
  }
}

async function status(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

async function newNamespace(name: string, labels?: Record<string, string>): Promise<string> {
  await createNamespace(kc, name, labels);
  namespaces.push(name);
  return name;
}

/** The admin acting as one of the chart's ServiceAccounts: impersonation gives the username the
 *  policy matches on, as the pod's token would. */
function asServiceAccount(account: string): CoreV1Api {
  const impersonating = new KubeConfig();
  impersonating.loadFromOptions({
    clusters: kc.clusters,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
    users: kc.users.map((user) => ({ ...user, impersonateUser: `system:serviceaccount:${NAMESPACE}:${account}` })),
  });
  return impersonating.makeApiClient(CoreV1Api);
}

beforeAll(async () => {
  await newNamespace(NAMESPACE);
  optedIn = await newNamespace(unique('chart-in'), OPT_IN);
  // No kubelet here: the hook Jobs would never finish, so helm would wait on them forever.
  await helmOk(helmArgs('install', RELEASE, CHART_DIR, '--no-hooks'), { kubeconfig: KUBECONFIG, values: BASE_VALUES });
});

afterAll(async () => {
  // The release first (its cluster-scoped objects: other files share the apiserver), then the namespaces.
  const uninstalled = await helmAsync(helmArgs('uninstall', RELEASE, '--no-hooks'), { kubeconfig: KUBECONFIG });
  expect(uninstalled.status, uninstalled.stderr).toBe(0);
  for (const name of namespaces) await core.deleteNamespace({ name }).catch(() => undefined);
});

describe('each ServiceAccount may do what its program needs and nothing more', () => {
  type Check = Partial<V1ResourceAttributes> & { readonly allowed: boolean };
  const secret = (verb: string, name: string | undefined, namespace: string | undefined, allowed: boolean): Check => ({
    verb,
    resource: 'secrets',
    ...(name === undefined ? {} : { name }),
    ...(namespace === undefined ? {} : { namespace }),
    allowed,
  });
  const webhookConfigurationCheck = (verb: string, name: string | undefined, allowed: boolean): Check => ({
    verb,
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    ...(name === undefined ? {} : { name }),
    allowed,
  });
  const lease = (verb: string, name: string | undefined, namespace: string, allowed: boolean): Check => ({
    verb,
    group: 'coordination.k8s.io',
    resource: 'leases',
    ...(name === undefined ? {} : { name }),
    namespace,
    allowed,
  });

  const accounts = (): { account: string; checks: Check[] }[] => [
    {
      account: FULLNAME,
      checks: [
        secret('get', TLS_SECRET, NAMESPACE, false),
        { verb: 'get', resource: 'configmaps', name: `${FULLNAME}-config`, namespace: NAMESPACE, allowed: false },
        { verb: 'list', resource: 'pods', allowed: false },
      ],
    },
    {
      account: `${FULLNAME}-certs-gen`,
      checks: [
        secret('get', TLS_SECRET, NAMESPACE, true),
        secret('update', TLS_SECRET, NAMESPACE, true),
        webhookConfigurationCheck('get', FULLNAME, true),
        webhookConfigurationCheck('patch', FULLNAME, true),
        secret('create', undefined, NAMESPACE, false),
        secret('delete', TLS_SECRET, NAMESPACE, false),
        secret('get', `${FULLNAME}-credentials`, NAMESPACE, false),
        secret('list', undefined, NAMESPACE, false),
        secret('watch', undefined, NAMESPACE, false),
        secret('get', TLS_SECRET, 'kube-system', false),
        webhookConfigurationCheck('update', FULLNAME, false),
        webhookConfigurationCheck('delete', FULLNAME, false),
        webhookConfigurationCheck('get', 'some-other-webhook', false),
        webhookConfigurationCheck('list', undefined, false),
      ],
    },
    {
      account: `${FULLNAME}-sync-secrets`,
      checks: [
        { verb: 'list', resource: 'namespaces', allowed: true },
        { verb: 'watch', resource: 'namespaces', allowed: true },
        secret('get', 'acr-myregistry', optedIn, true),
        secret('update', 'acr-china', 'any-namespace', true),
        secret('create', undefined, optedIn, true),
        lease('get', LEASE, NAMESPACE, true),
        lease('update', LEASE, NAMESPACE, true),
        { verb: 'get', resource: 'namespaces', name: optedIn, allowed: false },
        { verb: 'update', resource: 'namespaces', name: optedIn, allowed: false },
        secret('get', TLS_SECRET, NAMESPACE, false),
        secret('get', `${FULLNAME}-credentials`, NAMESPACE, false),
        secret('list', undefined, optedIn, false),
        secret('watch', undefined, undefined, false),
        secret('delete', 'acr-myregistry', optedIn, false),
        secret('patch', 'acr-myregistry', optedIn, false),
        lease('create', undefined, NAMESPACE, false),
        lease('get', 'another-lease', NAMESPACE, false),
        lease('update', LEASE, 'kube-system', false),
        { verb: 'create', resource: 'pods', namespace: optedIn, allowed: false },
      ],
    },
  ];

  test('by SubjectAccessReview, for the webhook, certs-gen and sync-secrets accounts', async () => {
    const wrong: string[] = [];
    for (const { account, checks } of accounts()) {
      for (const { allowed, ...attributes } of checks) {
        const review = await authorization.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${NAMESPACE}:${account}`,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${NAMESPACE}`, 'system:authenticated'],
              resourceAttributes: attributes,
            },
          },
        });
        if ((review.status?.allowed ?? false) !== allowed)
          wrong.push(`${account}: ${JSON.stringify(attributes)} should be ${allowed ? 'allowed' : 'denied'}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test("the chart's ValidatingAdmissionPolicy stops sync-secrets creating other Secrets RBAC allows", async () => {
    const asSync = asServiceAccount(`${FULLNAME}-sync-secrets`);
    const attempt = (name: string, type: string, dryRun?: 'All'): Promise<unknown> =>
      asSync
        .createNamespacedSecret({
          namespace: optedIn,
          ...(dryRun === undefined ? {} : { dryRun }),
          body: {
            metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' } },
            type,
            data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') },
          },
        })
        .catch((error: unknown) => error);
    // The apiserver compiles a new policy and its binding asynchronously (a second or so after helm created them):
    // wait with dry runs, which the policy judges too, so nothing is written while it is not yet in force.
    const inForce = Date.now() + 10_000;
    while (!((await attempt('not-configured', 'kubernetes.io/dockerconfigjson', 'All')) instanceof ApiException)) {
      if (Date.now() > inForce) throw new Error('the policy did not refuse a dry run within 10 s of the install');
      await sleep(200);
    }
    const otherName = await attempt('not-configured', 'kubernetes.io/dockerconfigjson');
    expect(otherName).toBeInstanceOf(ApiException);
    expect(messageOf(otherName)).toContain('sync-secrets may write only the configured pull secrets');
    const tokenType = await attempt('acr-myregistry-token', 'kubernetes.io/service-account-token');
    expect(tokenType).toBeInstanceOf(ApiException);
  });
});

describe('helm upgrade with changed values', () => {
  const pdb = {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: FULLNAME, namespace: NAMESPACE },
  };
  const written = async () => {
    const configuration = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    return {
      uid: configuration.metadata?.uid,
      caBundle: configuration.webhooks?.[0]?.clientConfig.caBundle,
      holder: (await coordination.readNamespacedLease({ namespace: NAMESPACE, name: LEASE })).spec?.holderIdentity,
    };
  };

  test('applies them (failurePolicy Fail, 1 replica: no PDB), keeps what certs-gen and the leader wrote', async () => {
    // What certs-gen patch and the sync-secrets leader write on a real cluster, written here by hand.
    const caBundle = Buffer.from('-----BEGIN CERTIFICATE-----\ne2e\n-----END CERTIFICATE-----\n').toString('base64');
    await admission.patchMutatingWebhookConfiguration(
      { name: FULLNAME, body: [{ op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: caBundle }] },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    );
    const lease = await coordination.readNamespacedLease({ namespace: NAMESPACE, name: LEASE });
    await coordination.replaceNamespacedLease({
      namespace: NAMESPACE,
      name: LEASE,
      body: { ...lease, spec: { holderIdentity: 'sync-secrets-e2e', leaseDurationSeconds: 15 } },
    });
    const before = await written();
    expect(before).toMatchObject({ caBundle, holder: 'sync-secrets-e2e' });
    expect(await status(objects.read(pdb))).toBe(200);

    await helmOk(helmArgs('upgrade', RELEASE, CHART_DIR, '--no-hooks'), {
      kubeconfig: KUBECONFIG,
      values: UPGRADE_VALUES,
    });
    const configuration = await admission.readMutatingWebhookConfiguration({ name: FULLNAME });
    expect(configuration.webhooks?.[0]?.failurePolicy).toBe('Fail');
    expect((await apps.readNamespacedDeployment({ namespace: NAMESPACE, name: FULLNAME })).spec?.replicas).toBe(1);
    expect(await status(objects.read(pdb))).toBe(404);
    // Updated in place, not re-created: the uid the TLS Secret's ownerReference names stays.
    expect(await written()).toEqual(before);
  });
});

describe('the CEL matchCondition on the apiserver (failurePolicy Fail, no webhook pod: a sent pod is refused)', () => {
  const create = (namespace: string, spec: V1PodSpec, labels: Record<string, string> = {}): Promise<string> =>
    core.createNamespacedPod({ namespace, body: { metadata: { generateName: 'cel-', labels }, spec } }).then(
      () => 'created',
      (error: unknown) => {
        const message = messageOf(error);
        return message.includes('failed calling webhook "pods.acr-pull-webhook.io"') ? 'sent' : message;
      },
    );
  const containers = (...images: string[]) => images.map((image, index) => ({ name: `c${index}`, image }));

  test.each([
    {
      why: "a pod with only Docker Hub and other registries' images is not sent",
      spec: { containers: containers('nginx:1.27', 'docker.io/library/busybox', 'quay.io/prometheus/prometheus') },
      outcome: 'created',
    },
    {
      why: 'a pod with an image of another ACR is not sent',
      spec: { containers: containers('other.azurecr.io/app') },
      outcome: 'created',
    },
    {
      why: 'a pod with an image of the configured ACR is sent',
      spec: { containers: containers('nginx:1.27', 'myregistry.azurecr.io/team/app:v1') },
      outcome: 'sent',
    },
    {
      why: 'a pod with the ACR image only in an init container is sent',
      spec: {
        // Named apart from the app container: a pod not sent would be created, not refused as invalid.
        initContainers: [{ name: 'migrate', image: 'myregistry.azurecr.io/migrate' }],
        containers: containers('nginx'),
      },
      outcome: 'sent',
    },
    {
      why: 'a pod with an image a glob entry matches (*.azurecr.cn) is sent',
      spec: { containers: containers(`contoso.azurecr.cn/app@sha256:${'b'.repeat(64)}`) },
      outcome: 'sent',
    },
    {
      why: 'a pod with a lookalike host (another port, another label count) is not sent',
      spec: { containers: containers('myregistry.azurecr.io:443/app', 'a.b.azurecr.cn/app') },
      outcome: 'created',
    },
  ])('$why', async ({ spec, outcome }) => {
    expect(await create(optedIn, spec as V1PodSpec)).toBe(outcome);
  });

  test('pods labelled acr-pull-webhook/inject=disabled, or not opted in, are not sent, ACR image or not', async () => {
    expect(
      await create(
        optedIn,
        { containers: containers('myregistry.azurecr.io/app') },
        { 'acr-pull-webhook/inject': 'disabled' },
      ),
    ).toBe('created');
    const outside = unique('chart-out');
    await createNamespace(kc, outside);
    expect(await create(outside, { containers: containers('myregistry.azurecr.io/app') })).toBe('created');
  });
});
