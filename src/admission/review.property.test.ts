// Property tests over generated pods: whatever the pod, the answer is well-formed, echoes the uid,
// its patch applies with the apiserver's semantics, and applying it is a fixed point.
import fc from 'fast-check';
import jsonpatch from 'fast-json-patch';
import { describe, expect, test } from 'vitest';
import { rules } from '../../test/support/rules.ts';
import { handleReview, type AdmissionReviewRequest } from './review.ts';

const RULES = rules(
  ['myregistry.azurecr.io', 'acr-myregistry'],
  ['*.azurecr.cn', 'acr-china'],
  ['other.azurecr.io/team', 'acr-team'],
  ['second.azurecr.io', 'acr-myregistry'],
);
const OUR_NAMES = ['acr-myregistry', 'acr-china', 'acr-team'];

const host = fc.constantFrom(
  'myregistry.azurecr.io',
  'second.azurecr.io',
  'contoso.azurecr.cn',
  'other.azurecr.io',
  'myregistry.azurecr.io.evil.com',
  'azurecr.cn',
  'docker.io',
  'localhost:5000',
  'myregistry.azurecr.io:443',
  '',
);
const repo = fc.constantFrom('app', 'team/app', 'teamwork/x', 'library/nginx', 'Upper/Case', 'a//b');
const suffix = fc.constantFrom('', ':v1', `@sha256:${'b'.repeat(64)}`, ':latest@sha256:short');
const image = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(host, repo, suffix).map(([h, r, s]) => (h ? `${h}/${r}${s}` : `${r}${s}`)) },
  { weight: 1, arbitrary: fc.string() },
);
const container = fc.record(
  {
    name: fc.string({ maxLength: 8 }),
    image: fc.oneof({ weight: 9, arbitrary: image }, { weight: 1, arbitrary: fc.constant(undefined) }),
  },
  { requiredKeys: ['name'] },
);
const pullSecrets = fc
  .uniqueArray(fc.constantFrom(...OUR_NAMES, 'from-sa', 'other'), { maxLength: 4 })
  .map((names) => names.map((name) => ({ name })));
const pod = fc.record(
  {
    metadata: fc.record(
      {
        name: fc.string({ maxLength: 10 }),
        labels: fc.dictionary(
          fc.constantFrom('app', 'acr-pull-webhook/inject'),
          fc.constantFrom('enabled', 'disabled', 'x'),
        ),
      },
      { requiredKeys: [] },
    ),
    spec: fc.record(
      {
        containers: fc.array(container, { maxLength: 4 }),
        initContainers: fc.array(container, { maxLength: 2 }),
        ephemeralContainers: fc.array(container, { maxLength: 2 }),
        imagePullSecrets: pullSecrets,
      },
      { requiredKeys: ['containers'] },
    ),
  },
  { requiredKeys: ['spec'] },
);

function reviewOf(object: unknown, uid: string): AdmissionReviewRequest {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      object,
    },
  };
}

function decodePatch(patch: string): jsonpatch.Operation[] {
  return JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as jsonpatch.Operation[];
}

describe('for any pod', () => {
  test('the answer is well-formed, allowed, and echoes the uid', () => {
    fc.assert(
      fc.property(pod, fc.uuid(), (object, uid) => {
        const { review } = handleReview(reviewOf(object, uid), RULES);
        expect(review.apiVersion).toBe('admission.k8s.io/v1');
        expect(review.kind).toBe('AdmissionReview');
        expect(review.response.uid).toBe(uid);
        expect(review.response.allowed).toBe(true);
        // patchType and patch come together or not at all
        expect(review.response.patchType === undefined).toBe(review.response.patch === undefined);
      }),
      { numRuns: 500 },
    );
  });

  test(
    'the patch applies without creating parents, adds only our names once each, ' + 'and a second review adds nothing',
    () => {
      let patchedRuns = 0;
      fc.assert(
        fc.property(pod, (object) => {
          const { review } = handleReview(reviewOf(object, 'u'), RULES);
          if (review.response.patch === undefined) return;
          patchedRuns++;
          const ops = decodePatch(review.response.patch);
          expect(ops.every((op) => op.op === 'add')).toBe(true);
          // validateOperation rejects an add whose parent is missing, as evanphx/json-patch v4 does.
          const patched = jsonpatch.applyPatch(structuredClone(object), ops, true, false).newDocument;
          const before = object.spec.imagePullSecrets ?? [];
          const after = (patched.spec.imagePullSecrets ?? []) as { name: string }[];
          expect(after.slice(0, before.length)).toEqual(before);
          const names = after.map((entry) => entry.name);
          expect(new Set(names).size).toBe(names.length);
          expect(names.slice(before.length).every((name) => OUR_NAMES.includes(name))).toBe(true);
          expect(handleReview(reviewOf(patched, 'u2'), RULES).review.response.patch).toBeUndefined();
          // Nothing outside spec.imagePullSecrets changed.
          expect({ ...patched, spec: { ...patched.spec, imagePullSecrets: undefined } }).toEqual({
            ...object,
            spec: { ...object.spec, imagePullSecrets: undefined },
          });
        }),
        { numRuns: 1000 },
      );
      // The generator must reach the interesting case often, or the property proves little.
      expect(patchedRuns).toBeGreaterThan(100);
    },
  );

  test('warnings are absent or 1 to 8 texts, one reason each, and the same for the pod once patched', () => {
    let warnedRuns = 0;
    fc.assert(
      fc.property(pod, (object) => {
        const { review, summary } = handleReview(reviewOf(object, 'u'), RULES);
        const warnings = review.response.warnings;
        expect(summary.warnings).toHaveLength(warnings?.length ?? 0);
        if (warnings === undefined) return;
        warnedRuns++;
        expect(warnings.length).toBeGreaterThanOrEqual(1);
        expect(warnings.length).toBeLessThanOrEqual(8);
        if (review.response.patch === undefined) return;
        const patched = jsonpatch.applyPatch(structuredClone(object), decodePatch(review.response.patch)).newDocument;
        expect(handleReview(reviewOf(patched, 'u2'), RULES).review.response.warnings).toEqual(warnings);
      }),
      { numRuns: 500 },
    );
    expect(warnedRuns).toBeGreaterThan(20);
  });

  test('any JSON value as the object is answered allowed without throwing', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (object) => {
        expect(handleReview(reviewOf(object, 'u'), RULES).review.response.allowed).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
