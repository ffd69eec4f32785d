// The three request bodies, all AdmissionReviews of a pod CREATE as kube-apiserver sends them
// (compact JSON):
// - small:   the e2e tests' captured review (test/fixtures/apiserver-pod-create-review.json, one
//            container and one init container), compacted as the apiserver sends it.
// - typical: the review captured by bench/capture-fixtures.ts (two init containers, the app and two
//            sidecars), byte for byte.
// - large:   the typical review with env entries appended to its first container until the body
//            reaches 1 MiB. Entry i is {name: "BENCH_ENV_<i, 5 digits>", value: 100 characters from
//            a fixed linear congruential sequence over [A-Za-z0-9]}: deterministic, so every run
//            and every machine sends the same bytes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './processes.ts';

export type BodyName = 'small' | 'typical' | 'large';
export const BODY_NAMES: readonly BodyName[] = ['small', 'typical', 'large'];

export const SMALL_FIXTURE = join(ROOT, 'test', 'fixtures', 'apiserver-pod-create-review.json');
export const TYPICAL_FIXTURE = join(ROOT, 'bench', 'fixtures', 'typical-pod-create-review.json');
export const LARGE_TARGET_BYTES = 1024 * 1024;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function deterministicValue(index: number, length: number): string {
  let state = (index * 2654435761 + 12345) >>> 0;
  let value = '';
  for (let i = 0; i < length; i += 1) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    value += ALPHABET[(state >>> 16) % ALPHABET.length];
  }
  return value;
}

interface ReviewWithPod {
  request: { object: { spec: { containers: { env?: { name: string; value?: string }[] }[] } } };
}

export function largeBody(typical: Buffer, targetBytes = LARGE_TARGET_BYTES): Buffer {
  const review = JSON.parse(typical.toString('utf8')) as ReviewWithPod;
  const container = review.request.object.spec.containers[0];
  if (container === undefined) throw new Error('typical review has no container');
  const env = (container.env ??= []);
  const entry = (i: number) => ({ name: `BENCH_ENV_${String(i).padStart(5, '0')}`, value: deterministicValue(i, 100) });
  const entryBytes = JSON.stringify(entry(0)).length + 1; // with its comma
  const needed = Math.ceil((targetBytes - typical.length) / entryBytes);
  for (let i = 0; i < needed; i += 1) env.push(entry(i));
  return Buffer.from(JSON.stringify(review));
}

export function loadBodies(): Record<BodyName, Buffer> {
  const small = Buffer.from(JSON.stringify(JSON.parse(readFileSync(SMALL_FIXTURE, 'utf8'))));
  const typical = readFileSync(TYPICAL_FIXTURE);
  return { small, typical, large: largeBody(typical) };
}
