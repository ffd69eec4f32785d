// Malformed and hostile requests against the admission app on a real HTTPS socket, and a fuzzer
// over the whole HTTP layer: every answer is a well-formed 4xx or an allowed review, never a 5xx,
// and the next good request is still served.
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildApp, type WebhookApp } from '../../src/server/app.ts';
import { createMetrics } from '../../src/server/metrics.ts';
import { testPki } from '../support/certificates.ts';
import { capturedLogger } from '../support/logs.ts';
import { rules } from '../support/rules.ts';

const pki = testPki();
const logs = capturedLogger();
const SECRET = 's3cr3t-env-value-that-must-not-leak';
let app: WebhookApp;
let port: number;

const GOOD = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: '3f1b2c4d',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    namespace: 'ns',
    object: {
      metadata: { name: 'p' },
      spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/a', env: [{ name: 'X', value: SECRET }] }] },
    },
  },
};

beforeAll(async () => {
  app = buildApp({
    rules: rules(['myregistry.azurecr.io', 'acr']),
    logger: logs.logger,
    metrics: createMetrics({ processMetrics: false }),
    tls: { cert: pki.serving.certPem, key: pki.serving.keyPem },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await app.close();
});

function send(body: string | Buffer, contentType = 'application/json'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/mutate',
        ca: pki.ca.certPem,
        agent: false,
        headers: { 'content-type': contentType },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Every answer is a well-formed 4xx JSON error, or a 200 allowed review that echoes the uid. */
function expectSafeAnswer(answer: { status: number; body: string }, uid?: unknown): void {
  expect(answer.status).toBeLessThan(500);
  const parsed = JSON.parse(answer.body) as Record<string, unknown>;
  if (answer.status === 200) {
    expect(parsed).toMatchObject({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { allowed: true },
    });
    if (uid !== undefined) expect((parsed['response'] as { uid: unknown }).uid).toBe(uid);
  } else {
    expect(answer.status).toBeGreaterThanOrEqual(400);
    expect(typeof parsed['code']).toBe('string');
    expect(typeof parsed['message']).toBe('string');
  }
}

/** Every path in a JSON value, as key lists. */
function paths(value: unknown, prefix: string[] = []): string[][] {
  if (typeof value !== 'object' || value === null) return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([key, child]) => paths(child, [...prefix, key]))];
}

function replaced(value: unknown, path: string[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const copy = structuredClone(value) as Record<string, unknown>;
  let cursor = copy;
  for (const key of path.slice(0, -1)) cursor = cursor[key] as Record<string, unknown>;
  cursor[path.at(-1) as string] = replacement;
  return copy;
}

const corpus: { name: string; body: string | Buffer; contentType?: string }[] = [
  { name: 'garbage bytes', body: Buffer.from([0, 255, 254, 10, 123, 0]) },
  { name: 'truncated JSON', body: JSON.stringify(GOOD).slice(0, 100) },
  { name: 'deeply nested arrays', body: '['.repeat(200_000) + ']'.repeat(200_000) },
  {
    name: 'a deeply nested pod',
    body: JSON.stringify(replaced(GOOD, ['request', 'object', 'spec'], 'NESTED')).replace(
      '"NESTED"',
      `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`,
    ),
  },
  { name: 'a __proto__ key at the top', body: '{"__proto__":{"polluted":true},"apiVersion":"admission.k8s.io/v1"}' },
  {
    name: 'a __proto__ key inside the pod',
    body: JSON.stringify(GOOD).replace('"metadata":', '"__proto__":{"x":1},"metadata":'),
  },
  {
    name: 'a constructor.prototype key',
    body: JSON.stringify(GOOD).replace('"metadata":', '"constructor":{"prototype":{"x":1}},"metadata":'),
  },
  { name: 'a huge uid', body: JSON.stringify(replaced(GOOD, ['request', 'uid'], 'u'.repeat(1_000_000))) },
  {
    name: 'a huge image string',
    body: JSON.stringify(
      replaced(
        GOOD,
        ['request', 'object', 'spec', 'containers', '0', 'image'],
        `myregistry.azurecr.io/${'a'.repeat(2_000_000)}`,
      ),
    ),
  },
  {
    name: 'ten thousand containers',
    body: JSON.stringify(
      replaced(
        GOOD,
        ['request', 'object', 'spec', 'containers'],
        Array.from({ length: 10_000 }, (_, i) => ({ name: `c${i}`, image: i % 2 ? 'nginx' : `r${i}.azurecr.io/x` })),
      ),
    ),
  },
  { name: 'a 5 MiB body', body: JSON.stringify({ ...GOOD, pad: 'x'.repeat(5 * 1024 * 1024) }) },
  { name: 'a null object', body: JSON.stringify(replaced(GOOD, ['request', 'object'], null)) },
  { name: 'a JSON null', body: 'null' },
  { name: 'an empty body', body: '' },
  { name: 'a form body', body: 'a=1&b=2', contentType: 'application/x-www-form-urlencoded' },
  {
    name: 'invalid UTF-8 in a string',
    body: Buffer.concat([Buffer.from('{"apiVersion":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]),
  },
];

describe('hostile bodies over a real HTTPS socket', () => {
  test.each(corpus)('$name gets a safe answer and the server keeps serving', async ({ body, contentType }) => {
    expectSafeAnswer(await send(body, contentType));
    const good = await send(JSON.stringify(GOOD));
    expect(good.status).toBe(200);
  });

  test('every field of a review replaced by every JSON type gets a safe answer', async () => {
    const replacements = [null, 0, -1.5, true, '', 'x', [], {}, [null], { a: 1 }];
    let sent = 0;
    for (const path of paths(GOOD)) {
      for (const replacement of replacements) {
        const body = replaced(GOOD, path, replacement);
        const uid = (body as { request?: { uid?: unknown } } | null)?.request?.uid;
        expectSafeAnswer(await send(JSON.stringify(body)), typeof uid === 'string' ? uid : undefined);
        sent++;
      }
    }
    expect(sent).toBeGreaterThan(200);
  }, 60_000);

  test('nothing logged so far quotes a body', () => {
    expect(logs.text()).not.toContain(SECRET);
    expect(logs.text()).not.toContain('polluted');
    expect(logs.text()).not.toContain('aaaaaaaaaa');
  });
});

describe('a fuzzer over the HTTP layer', () => {
  test('random JSON bodies and random edits of a good review are answered safely', async () => {
    const edit = fc
      .tuple(fc.constantFrom(...paths(GOOD)), fc.jsonValue())
      .map(([path, value]) => replaced(GOOD, path, value));
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue(),
          edit,
          fc.string().map((s) => ({ raw: s })),
        ),
        async (body) => {
          const payload =
            typeof body === 'object' && body !== null && 'raw' in body
              ? String((body as { raw: string }).raw)
              : JSON.stringify(body);
          const response = await app.inject({
            method: 'POST',
            url: '/mutate',
            payload,
            headers: { 'content-type': 'application/json' },
          });
          const uid = (body as { request?: { uid?: unknown } } | null)?.request?.uid;
          expectSafeAnswer(
            { status: response.statusCode, body: response.body },
            typeof uid === 'string' ? uid : undefined,
          );
        },
      ),
      { numRuns: 2_000 },
    );
    expect((await send(JSON.stringify(GOOD))).status).toBe(200);
  }, 60_000);
});
