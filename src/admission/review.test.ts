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
    });
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
