import { describe, expect, test } from 'vitest';
import type { SecretObject } from '../k8s/secret-object.ts';
import { desiredSecrets } from './desired.ts';
import { planPrune, planSecret } from './plan.ts';

const [desired] = desiredSecrets([
  { server: 'myregistry.azurecr.io', secretName: 'acr-myregistry', username: 'sp', password: 'pw' },
]);
if (desired === undefined) throw new Error('no desired secret');
const DESIRED_JSON = '{"auths":{"myregistry.azurecr.io":{"username":"sp","password":"pw","auth":"c3A6cHc="}}}';
const b64 = (text: string): string => Buffer.from(text).toString('base64');

/** A Secret as the apiserver returns it, written by us at some earlier time. */
function ours(
  overrides: Partial<SecretObject> & { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): SecretObject {
  const { labels, annotations, ...rest } = overrides;
  return {
    metadata: {
      name: 'acr-myregistry',
      namespace: 'team-a',
      uid: 'uid-1',
      resourceVersion: '42',
      labels: labels ?? { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      annotations: annotations ?? { 'acr-pull-webhook/content-hash': desired?.contentHash ?? '' },
    },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': b64(DESIRED_JSON) },
    ...rest,
  };
}

describe('the desired secret', () => {
  test('holds kubectl-shaped .dockerconfigjson and a sha256 content hash of it', () => {
    expect(desired.dockerConfigJson).toBe(DESIRED_JSON);
    expect(desired.contentHash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('planning one secret in one namespace', () => {
  test('when it is absent, it is created with the managed-by label, the hash and the data', () => {
    expect(planSecret('team-a', undefined, desired)).toEqual({
      action: 'create',
      secret: {
        kind: 'Secret',
        apiVersion: 'v1',
        metadata: {
          name: 'acr-myregistry',
          namespace: 'team-a',
          labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
          annotations: { 'acr-pull-webhook/content-hash': desired.contentHash },
        },
        data: { '.dockerconfigjson': b64(DESIRED_JSON) },
        type: 'kubernetes.io/dockerconfigjson',
      },
    });
  });

  test('when ours is already there with the same data and hash, nothing is written', () => {
    expect(planSecret('team-a', ours(), desired)).toEqual({ action: 'unchanged' });
  });

  test('when ours is there with labels and annotations others added, it is still unchanged', () => {
    const existing = ours({
      labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook', team: 'a' },
      annotations: { 'acr-pull-webhook/content-hash': desired.contentHash, note: 'x' },
    });
    expect(planSecret('team-a', existing, desired)).toEqual({ action: 'unchanged' });
  });

  test.each([
    {
      why: 'the credentials rotated (data differs)',
      existing: ours({ data: { '.dockerconfigjson': b64('{"auths":{}}') } }),
      changed: ['data'],
    },
    { why: 'the hash annotation is missing', existing: ours({ annotations: {} }), changed: ['hash-annotation'] },
    {
      why: 'someone added a data key',
      existing: ours({ data: { '.dockerconfigjson': b64(DESIRED_JSON), extra: 'eA==' } }),
      changed: ['data'],
    },
    { why: 'the data was emptied', existing: ours({ data: {} }), changed: ['data'] },
  ])('when ours differs because $why, it is updated at the version read', ({ existing, changed }) => {
    const plan = planSecret('team-a', existing, desired);
    expect(plan.action).toBe('update');
    if (plan.action !== 'update') return;
    expect(plan.changed).toEqual(changed);
    expect(plan.secret.metadata?.resourceVersion).toBe('42');
    expect(plan.secret.data).toEqual({ '.dockerconfigjson': b64(DESIRED_JSON) });
    expect(plan.secret.metadata?.annotations?.['acr-pull-webhook/content-hash']).toBe(desired.contentHash);
  });

  test('an update keeps labels and annotations others put on our secret', () => {
    const existing = ours({
      labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook', team: 'a' },
      annotations: { note: 'kept' },
      data: { '.dockerconfigjson': b64('{"auths":{}}') },
    });
    const plan = planSecret('team-a', existing, desired);
    expect(plan.action === 'update' && plan.secret.metadata).toMatchObject({
      labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook', team: 'a' },
      annotations: { note: 'kept', 'acr-pull-webhook/content-hash': desired.contentHash },
    });
  });

  test.each([
    { why: 'it has no managed-by label', labels: {}, reason: 'it has no app.kubernetes.io/managed-by label' },
    {
      why: 'another tool manages it',
      labels: { 'app.kubernetes.io/managed-by': 'Helm' },
      reason: 'it is managed by "Helm"',
    },
  ])('an unmanaged same-named secret is skipped when $why, even with other data', ({ labels, reason }) => {
    expect(planSecret('team-a', ours({ labels, data: { '.dockerconfigjson': b64('{"auths":{}}') } }), desired)).toEqual(
      {
        action: 'skipped-unmanaged',
        reason,
      },
    );
  });

  test('an unmanaged same-named secret with exactly our data is still skipped, not adopted', () => {
    expect(planSecret('team-a', ours({ labels: {} }), desired).action).toBe('skipped-unmanaged');
  });

  test('ours but of another type cannot be fixed in place and is skipped', () => {
    expect(planSecret('team-a', ours({ type: 'Opaque' }), desired)).toEqual({
      action: 'skipped-immutable',
      reason: 'its type is "Opaque", not kubernetes.io/dockerconfigjson, and a Secret\'s type cannot change',
    });
  });

  test('ours, immutable and outdated is skipped; immutable and current is unchanged', () => {
    expect(planSecret('team-a', ours({ immutable: true, annotations: {} }), desired)).toEqual({
      action: 'skipped-immutable',
      reason: 'it is marked immutable',
    });
    expect(planSecret('team-a', ours({ immutable: true }), desired)).toEqual({ action: 'unchanged' });
  });
});

describe('pruning a namespace that is no longer opted in', () => {
  test('deletes ours, pinned to the uid and version read', () => {
    expect(planPrune(ours())).toEqual({ action: 'delete', uid: 'uid-1', resourceVersion: '42' });
  });
  test('leaves an unmanaged same-named secret alone', () => {
    expect(planPrune(ours({ labels: {} }))).toEqual({ action: 'skipped-unmanaged' });
  });
  test('has nothing to do when the secret is absent', () => {
    expect(planPrune(undefined)).toEqual({ action: 'absent' });
  });
});
