// The node suite's load generator (test/support/node/load.ts) counts what the apiserver answered: a stand-in
// apiserver on loopback answers its pod creates in turn with a patched pod, a refusal and an unpatched pod.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { describeCounts, HOLD_GATE, startLoad } from '../support/node/load.ts';

const REFUSAL =
  'Internal error occurred: failed calling webhook "pods.acr-pull-webhook.io": failed to call webhook: ' +
  'Post "https://acr-acr-pull-webhook.acr-system.svc:443/mutate?timeout=3s": connect: connection refused';

let server: Server;
let kubeConfig: KubeConfig;
const bodies: { url: string; body: { metadata: { generateName?: string }; spec: Record<string, unknown> } }[] = [];

async function readBody(request: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of request) text += chunk;
  return text;
}

beforeAll(async () => {
  server = createServer(async (request, response) => {
    const body = JSON.parse(await readBody(request));
    const index = bodies.length;
    bodies.push({ url: request.url ?? '', body });
    response.setHeader('content-type', 'application/json');
    if (index % 3 === 1) {
      response.statusCode = 500;
      response.end(
        JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message: REFUSAL, code: 500 }),
      );
      return;
    }
    const imagePullSecrets = index % 3 === 0 ? [{ name: 'acr-e2etest' }] : [];
    response.statusCode = 201;
    response.end(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `load-${index}`, namespace: 'opted-in' },
        spec: { ...body.spec, imagePullSecrets },
      }),
    );
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  kubeConfig = new KubeConfig();
  // client-node refuses a plain-HTTP server unless TLS verification is off (there is no TLS to verify).
  kubeConfig.loadFromOptions({
    clusters: [
      { name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
});

beforeEach(() => {
  bodies.length = 0;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe('startLoad', () => {
  test('counts a refused create as failed, one without the secret as unpatched, with their messages', async () => {
    const load = startLoad(kubeConfig, { namespace: 'opted-in', ratePerSecond: 50, expectSecrets: ['acr-e2etest'] });
    while (load.counts().attempted < 9) await sleep(10);
    const counts = await load.stop();

    // Answers cycle patched, refused, unpatched in arrival order; every create started has been answered.
    expect(bodies.length).toBe(counts.attempted);
    const third = (rest: number): number => bodies.filter((_, i) => i % 3 === rest).length;
    expect({ succeeded: counts.succeeded, failed: counts.failed, unpatched: counts.unpatched }).toEqual({
      succeeded: third(0),
      failed: third(1),
      unpatched: third(2),
    });
    expect(counts.firstFailures.length).toBe(5);
    expect(counts.firstFailures.map((failure) => failure.message)).toContain(`500 ${REFUSAL}`);
    expect(counts.firstFailures.map((failure) => failure.message)).toContain('pod load-2 created without acr-e2etest');
    expect(describeCounts(counts)).toMatch(
      new RegExp(`^attempted ${counts.attempted}, failed ${third(1)}, unpatched ${third(2)} over `),
    );
  });

  test('creates gated pods of an ACR image by generateName in the namespace given', async () => {
    const load = startLoad(kubeConfig, { namespace: 'opted-in', ratePerSecond: 50 });
    while (load.counts().attempted < 1) await sleep(10);
    await load.stop();
    expect(bodies[0]?.url).toBe('/api/v1/namespaces/opted-in/pods');
    expect(bodies[0]?.body.metadata.generateName).toBe('load-');
    expect(bodies[0]?.body.spec).toEqual({
      schedulingGates: [{ name: HOLD_GATE }],
      containers: [{ name: 'main', image: 'e2etest.azurecr.io/e2e/busybox:1' }],
    });
    expect(HOLD_GATE).toBe('acr-pull-webhook.test/hold');
  });

  test('starts creates on schedule: about rate × seconds, whether or not earlier ones answered', async () => {
    const load = startLoad(kubeConfig, { namespace: 'opted-in', ratePerSecond: 20 });
    await sleep(500);
    const counts = await load.stop();
    expect(counts.attempted).toBeGreaterThanOrEqual(8);
    expect(counts.attempted).toBeLessThanOrEqual(12);
    expect(bodies.length).toBe(counts.attempted);
  });
});
