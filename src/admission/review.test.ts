import { describe, expect, test } from 'vitest';
import { rules } from '../../test/support/rules.ts';
import { handleReview, type AdmissionReviewRequest } from './review.ts';

const ACR = rules(['myregistry.azurecr.io', 'acr-myregistry']);
const POD_GVK = { group: '', version: 'v1', kind: 'Pod' };
const PODS_GVR = { group: '', version: 'v1', resource: 'pods' };
const ACR_POD = {
  metadata: { name: 'web' },
  spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/app' }] },
};

function review(request: Partial<AdmissionReviewRequest['request']>): AdmissionReviewRequest {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'uid-1',
      kind: POD_GVK,
      resource: PODS_GVR,
      operation: 'CREATE',
      namespace: 'team-a',
      object: ACR_POD,
      ...request,
    },
  };
}

describe('the answer to a review', () => {
  test('a pod CREATE that needs a secret gets allowed, JSONPatch and the base64 patch', () => {
    const { review: answer, summary } = handleReview(review({}), ACR);
    expect(answer).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'uid-1',
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(
          '[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"acr-myregistry"}]}]',
        ).toString('base64'),
      },
    });
    expect(summary).toEqual({
      outcome: 'patched',
      secretsAdded: ['acr-myregistry'],
      namespace: 'team-a',
      podName: 'web',
      warnings: [],
    });
  });

  test('each pod gets the patch of its own secrets, however many different patches came before', () => {
    // More distinct patches than are remembered, each asked for twice, in two orders of lists.
    for (let i = 0; i < 600; i += 1) {
      const secret = `acr-${i % 300}`;
      const registry = rules([`r${i % 300}.azurecr.io`, secret]);
      const pod = {
        spec: {
          containers: [{ name: 'a', image: `r${i % 300}.azurecr.io/app` }],
          ...(i % 2 === 0 ? {} : { imagePullSecrets: [{ name: 'other' }] }),
        },
      };
      const patch = handleReview(review({ object: pod }), registry).review.response.patch ?? '';
      const expected =
        i % 2 === 0
          ? [{ op: 'add', path: '/spec/imagePullSecrets', value: [{ name: secret }] }]
          : [{ op: 'add', path: '/spec/imagePullSecrets/-', value: { name: secret } }];
      expect(JSON.parse(Buffer.from(patch, 'base64').toString('utf8'))).toEqual(expected);
    }
  });

  test('a dry-run CREATE gets the same patch', () => {
    expect(handleReview(review({ dryRun: true }), ACR).review).toEqual(handleReview(review({}), ACR).review);
  });

  test.each([
    { why: 'an UPDATE', request: { operation: 'UPDATE' } },
    { why: 'a DELETE', request: { operation: 'DELETE', object: null } },
    { why: 'a CONNECT', request: { operation: 'CONNECT' } },
    { why: 'a subresource (pods/ephemeralcontainers)', request: { subResource: 'ephemeralcontainers' } },
    { why: 'a subresource (pods/binding)', request: { subResource: 'binding' } },
    {
      why: 'another kind',
      request: {
        kind: { group: 'apps', version: 'v1', kind: 'Deployment' },
        resource: { group: 'apps', version: 'v1', resource: 'deployments' },
      },
    },
    { why: 'a Pod kind in another group', request: { kind: { group: 'example.com', version: 'v1', kind: 'Pod' } } },
  ])('$why is allowed with no patch', ({ request }) => {
    const { review: answer, summary } = handleReview(review(request), ACR);
    expect(answer).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'uid-1', allowed: true },
    });
    expect(summary.outcome).toBe('ignored');
  });

  test.each([
    { why: 'a pod with nothing to add', object: { spec: { containers: [{ image: 'nginx' }] } }, outcome: 'unchanged' },
    {
      why: 'an opted-out pod',
      object: { metadata: { labels: { 'acr-pull-webhook/inject': 'disabled' } }, spec: ACR_POD.spec },
      outcome: 'opted-out',
    },
    { why: 'a CREATE without an object', object: undefined, outcome: 'unchanged' },
  ])('$why is allowed with no patch ($outcome)', ({ object, outcome }) => {
    const { review: answer, summary } = handleReview(review({ object }), ACR);
    expect(answer.response).toEqual({ uid: 'uid-1', allowed: true });
    expect(summary.outcome).toBe(outcome);
  });

  test('a pod named by generateName is reported by it', () => {
    const object = { metadata: { generateName: 'web-7d4b9-' }, spec: ACR_POD.spec };
    expect(handleReview(review({ object }), ACR).summary.podName).toBe('web-7d4b9-');
  });
});

describe('warnings in the answer', () => {
  const unmatched = {
    metadata: { name: 'web' },
    spec: {
      containers: [
        { name: 'a', image: 'myregistry.azurecr.io/app' },
        { name: 'b', image: 'other.azurecr.io/app:v2' },
      ],
    },
  };

  test('a pod CREATE with an unmatched ACR image gets its patch and a warning naming the image', () => {
    const { review: answer, summary } = handleReview(review({ object: unmatched }), ACR);
    expect(answer.response).toMatchObject({
      allowed: true,
      patchType: 'JSONPatch',
      warnings: [
        'acr-pull-webhook: no registries[] entry matches image "other.azurecr.io/app:v2": it will be pulled ' +
          'without credentials from this webhook (add an entry for server other.azurecr.io)',
      ],
    });
    expect(summary.warnings).toEqual(['unmatched_acr_host']);
  });

  test('a pod with nothing to add still gets the warning, without a patch', () => {
    const object = { spec: { containers: [{ image: 'other.azurecr.io/app' }] } };
    const { review: answer, summary } = handleReview(review({ object }), ACR);
    expect(Object.keys(answer.response).sort()).toEqual(['allowed', 'uid', 'warnings']);
    expect(summary).toMatchObject({ outcome: 'unchanged', warnings: ['unmatched_acr_host'] });
  });

  test('a host under a configured suffix is warned about only when the suffix is configured', () => {
    const object = { spec: { containers: [{ image: 'team.acr.example.com/app' }] } };
    expect(handleReview(review({ object }), ACR).review.response.warnings).toBeUndefined();
    expect(handleReview(review({ object }), ACR, ['acr.example.com']).review.response.warnings).toEqual([
      'acr-pull-webhook: no registries[] entry matches image "team.acr.example.com/app": it will be pulled ' +
        'without credentials from this webhook (add an entry for server team.acr.example.com)',
    ]);
  });

  test.each([
    { why: 'an UPDATE', request: { operation: 'UPDATE' } },
    { why: 'a subresource (pods/ephemeralcontainers)', request: { subResource: 'ephemeralcontainers' } },
  ])('$why gets no warning', ({ request }) => {
    const { review: answer, summary } = handleReview(review({ ...request, object: unmatched }), ACR);
    expect(answer.response).toEqual({ uid: 'uid-1', allowed: true });
    expect(summary.warnings).toEqual([]);
  });
});
