// The one client layer against a loopback stand-in for the apiserver: every request waits for the
// rate limit's token, and a 429 with Retry-After (what API Priority and Fairness answers when a
// priority level is full) reaches the retry helper as KubeApiError.retryAfterSeconds and is waited out.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, test } from 'vitest';
import { retry } from './backoff.ts';
import { makeClients, type KubeClients } from './client.ts';
import { KubeApiError } from './errors.ts';
import type { RateLimit } from './rate-limit.ts';
import { secretStore } from './secrets.ts';

let server: Server | undefined;
let clients: KubeClients | undefined;
afterEach(async () => {
  await clients?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

/** Starts the stand-in; `answer` gets each request's 1-based number. Returns the arrival times (epoch ms). */
async function standIn(
  answer: (n: number, request: IncomingMessage, response: ServerResponse) => void,
  rateLimit?: RateLimit,
): Promise<{ arrivals: number[]; clients: KubeClients }> {
  const arrivals: number[] = [];
  server = createServer((request, response) => {
    arrivals.push(Date.now());
    answer(arrivals.length, request, response);
  });
  const listening = server;
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  const { port } = listening.address() as AddressInfo;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  clients = makeClients(kubeConfig, { userAgent: 'test', ...(rateLimit === undefined ? {} : { rateLimit }) });
  return { arrivals, clients };
}

const json = (response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  response.writeHead(status, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(body));
};
const notFound = (response: ServerResponse) =>
  json(response, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 });

describe('the client rate limit (--kube-api-qps, --kube-api-burst)', () => {
  test('sends `burst` requests at once and the rest 1/qps apart, whoever sends them', async () => {
    const { arrivals, clients } = await standIn((_n, _request, response) => notFound(response), { qps: 5, burst: 2 });
    const store = secretStore(clients.core);
    const sent = Date.now();
    await Promise.all(Array.from({ length: 5 }, (_, i) => store.get('team-a', `s${i}`)));
    // Two at once, then one every 200 ms: the k-th (from 0) no sooner than (k - 1) × 200 ms after they were sent.
    const after = arrivals.map((at) => at - sent);
    expect(after).toHaveLength(5);
    for (let k = 2; k < 5; k++) expect(after[k], `request ${k}`).toBeGreaterThanOrEqual((k - 1) * 200 - 10);
  });
});

describe('a 429 Too Many Requests with Retry-After', () => {
  test('is retried no sooner than Retry-After, then succeeds', async () => {
    const { arrivals, clients } = await standIn((n, _request, response) => {
      if (n === 1) {
        json(
          response,
          429,
          { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'TooManyRequests', code: 429 },
          { 'Retry-After': '1' },
        );
      } else notFound(response);
    });
    const store = secretStore(clients.core);
    const seen: unknown[] = [];
    const result = await retry(
      { duration: 10, factor: 2, jitter: 0, steps: 5, cap: 1000 },
      () => store.get('team-a', 'acr-x'),
      {
        decide: (error) => (error instanceof KubeApiError && error.retryable ? 'backoff' : 'stop'),
        onRetry: (error) => seen.push(error),
      },
    );
    expect(result).toBeUndefined();
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ status: 429, reason: 'TooManyRequests', retryAfterSeconds: 1 });
    expect((arrivals[1] ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(990);
  });
});
