// The chart's `helm test` hook as `helm template` renders it: which objects, when Helm creates and deletes
// them, what the pod runs and what its ServiceAccount may do. The pod's security settings are held against
// Pod Security "restricted" with the chart's other pods in chart.test.ts; e2e/check-injection.test.ts runs
// the verb with this RBAC on a real apiserver.
import type { V1ClusterRole, V1Pod, V1ValidatingAdmissionPolicy } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import { findObject, type Manifest, renderChart, renderChartError } from '../support/helm.ts';

const NAME = 'acr-acr-pull-webhook-check-injection';
const testHooks = (objects: readonly Manifest[]): Manifest[] =>
  objects.filter((object) => object.metadata.annotations?.['helm.sh/hook'] === 'test');
const podOf = (objects: readonly Manifest[]): V1Pod => findObject<V1Pod>(testHooks(objects), 'Pod');

describe('helm test', () => {
  test('with tests.enabled (the default) the test pod, its ServiceAccount, RBAC and policy are test hooks', () => {
    expect(
      testHooks(renderChart())
        .map((object) => `${object.kind}/${object.metadata.name}`)
        .sort(),
    ).toEqual([
      `ClusterRole/${NAME}`,
      `ClusterRoleBinding/${NAME}`,
      `Pod/${NAME}`,
      `ServiceAccount/${NAME}`,
      `ValidatingAdmissionPolicy/${NAME}`,
      `ValidatingAdmissionPolicyBinding/${NAME}`,
    ]);
  });

  test('with tests.enabled=false nothing of it is rendered', () => {
    const objects = renderChart({ values: { tests: { enabled: false } } });
    expect(testHooks(objects)).toEqual([]);
    expect(objects.filter((object) => object.metadata.name.endsWith('-check-injection'))).toEqual([]);
  });

  test('RBAC and policy are created before the pod; all are deleted when the test passes, a failed pod stays', () => {
    const hooks = testHooks(renderChart());
    for (const object of hooks) {
      const weight = object.kind === 'Pod' ? '0' : '-5';
      expect(object.metadata.annotations?.['helm.sh/hook-weight'], object.kind).toBe(weight);
      expect(object.metadata.annotations?.['helm.sh/hook-delete-policy'], object.kind).toBe(
        'before-hook-creation,hook-succeeded',
      );
    }
  });

  test('its ClusterRole lists namespaces, creates pods and gets only the configured Secret names, once each', () => {
    const objects = renderChart({
      values: {
        syncSecrets: { enabled: false },
        registries: [
          { server: 'myregistry.azurecr.io/prod/', secretName: 'acr-prod' },
          { server: 'myregistry.azurecr.io', secretName: 'acr-all' },
          { server: 'other.azurecr.io', secretName: 'acr-prod' },
        ],
      },
    });
    expect(findObject<V1ClusterRole>(testHooks(objects), 'ClusterRole').rules).toEqual([
      { apiGroups: [''], resources: ['namespaces'], verbs: ['list'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['create'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['acr-prod', 'acr-all'], verbs: ['get'] },
    ]);
  });

  test('its policy refuses every pod its ServiceAccount creates that is not a dry run', () => {
    const policy = findObject<V1ValidatingAdmissionPolicy>(testHooks(renderChart()), 'ValidatingAdmissionPolicy');
    expect(policy.spec?.matchConstraints?.resourceRules).toEqual([
      { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] },
    ]);
    expect(policy.spec?.matchConditions?.map((condition) => condition.expression)).toEqual([
      `request.userInfo.username == 'system:serviceaccount:acr-system:${NAME}'`,
    ]);
    expect(policy.spec?.validations?.map((validation) => validation.expression)).toEqual(['request.dryRun == true']);
    expect(policy.spec?.failurePolicy).toBe('Fail');
    const binding = findObject(testHooks(renderChart()), 'ValidatingAdmissionPolicyBinding')['spec'];
    expect(binding).toEqual({ policyName: NAME, validationActions: ['Deny'] });
  });

  test.each([
    {
      why: 'without tests.namespace it never picks a namespace the webhook skips',
      values: { webhook: { excludedNamespaces: ['monitoring'] } },
      args: ['--exclude-namespace=kube-system', '--exclude-namespace=acr-system', '--exclude-namespace=monitoring'],
    },
    {
      why: 'with tests.namespace it checks that namespace, unless the webhook skips it',
      values: { tests: { namespace: 'team-a' } },
      args: ['--namespace=team-a', '--exclude-namespace=kube-system', '--exclude-namespace=acr-system'],
    },
  ])('the pod runs check-injection on the chart configuration; $why', ({ values, args }) => {
    const pod = podOf(renderChart({ values }));
    const container = pod.spec?.containers[0];
    expect(container?.command).toEqual(['/nodejs/bin/node', '/app/dist/src/cli/main.js']);
    expect(container?.args).toEqual(['check-injection', '--config=/etc/acr-pull-webhook/config.yaml', ...args]);
  });

  test("the pod runs the chart's image with its pull secrets, the ConfigMap mounted, never restarted", () => {
    const objects = renderChart({
      values: {
        image: { repository: 'registry.example.com/acr-pull-webhook', tag: '1.2.3' },
        imagePullSecrets: ['pull'],
      },
    });
    const pod = podOf(objects);
    expect(pod.spec?.containers[0]?.image).toBe('registry.example.com/acr-pull-webhook:1.2.3');
    expect(pod.spec?.imagePullSecrets).toEqual([{ name: 'pull' }]);
    expect(pod.spec?.restartPolicy).toBe('Never');
    expect(pod.spec?.serviceAccountName).toBe(NAME);
    expect(pod.spec?.containers[0]?.volumeMounts).toEqual([
      { name: 'config', mountPath: '/etc/acr-pull-webhook', readOnly: true },
    ]);
    expect(pod.spec?.volumes).toEqual([
      { name: 'config', configMap: { name: findObject(objects, 'ConfigMap').metadata.name } },
    ]);
  });

  test.each([
    {
      why: 'a tests.namespace that is not a namespace name',
      values: { tests: { namespace: 'Team_A' } },
      error: '/tests/namespace',
    },
    {
      why: 'an unknown key under tests',
      values: { tests: { enable: true } },
      error: "additional properties 'enable' not allowed",
    },
  ])('values.schema.json rejects $why', ({ values, error }) => {
    expect(renderChartError({ values })).toContain(error);
  });
});
