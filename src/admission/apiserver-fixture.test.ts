// Replays the AdmissionReview a real kube-apiserver sent (captured by test/e2e/admission.test.ts)
// through the handler and the HTTP app, and applies the answer's patch.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import { expect, test } from 'vitest';
import { capturedLogger } from '../../test/support/logs.ts';
import { rules } from '../../test/support/rules.ts';
import { buildApp } from '../server/app.ts';
import { createMetrics } from '../server/metrics.ts';
import { handleReview, type AdmissionReviewRequest } from './review.ts';

const FIXTURE_TEXT = readFileSync(
  join(import.meta.dirname, '../../test/fixtures/apiserver-pod-create-review.json'),
  'utf8',
);
const fixture = JSON.parse(FIXTURE_TEXT) as AdmissionReviewRequest & {
  request: { object: { spec: Record<string, unknown> } };
};
const RULES = rules(['myregistry.azurecr.io', 'acr-myregistry'], ['*.azurecr.cn', 'acr-china']);

test('the captured pod CREATE gets both secrets, and the patch applies to the pod as sent', () => {
  const { review } = handleReview(fixture, RULES);
  expect(review.response.uid).toBe(fixture.request.uid);
  const ops = JSON.parse(Buffer.from(review.response.patch ?? '', 'base64').toString()) as jsonpatch.Operation[];
  expect(ops).toEqual([
    { op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'acr-myregistry' }, { name: 'acr-china' }] },
  ]);
  const patched = jsonpatch.applyPatch(structuredClone(fixture.request.object), ops, true, false).newDocument;
  expect(patched.spec['imagePullSecrets']).toEqual([{ name: 'acr-myregistry' }, { name: 'acr-china' }]);
});

test('the captured bytes pass the HTTP body schema unchanged', async () => {
  const app = buildApp({
    rules: RULES,
    logger: capturedLogger().logger,
    metrics: createMetrics({ processMetrics: false }),
  });
  const response = await app.inject({
    method: 'POST',
    url: '/mutate',
    payload: FIXTURE_TEXT,
    headers: { 'content-type': 'application/json' },
  });
  await app.close();
  expect(response.statusCode).toBe(200);
  expect(response.json().response.patchType).toBe('JSONPatch');
});
