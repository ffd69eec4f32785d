// The one client layer against a loopback stand-in for the apiserver: every request waits for the
// rate limit's token, Secret reads and writes send our JSON and read back only what they need, and a
// 429 with Retry-After (what API Priority and Fairness answers when a priority level is full) reaches
// the retry helper as KubeApiError.retryAfterSeconds and is waited out.
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
    const store = secretStore(clients.raw);
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
    const store = secretStore(clients.raw);
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

describe('Secrets through the raw path (our JSON, no ObjectSerializer)', () => {
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'acr-x', namespace: 'team-a', labels: { a: 'b' }, resourceVersion: '7' },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': 'e30=' },
  };
  const seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const record = (request: IncomingMessage, then: (body: string) => void) => {
    let body = '';
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      seen.push({ method: request.method ?? '', url: request.url ?? '', headers: request.headers, body });
      then(body);
    });
  };
  afterEach(() => void seen.splice(0));

  test.each([
    ['a create POSTs the object as is to the namespace', 'create', 'POST', '/api/v1/namespaces/team-a/secrets', secret],
    ['a replace PUTs it to its name', 'replace', 'PUT', '/api/v1/namespaces/team-a/secrets/acr-x', secret],
    [
      'a delete sends the preconditions',
      'delete',
      'DELETE',
      '/api/v1/namespaces/team-a/secrets/acr-x',
      { preconditions: { uid: 'u1', resourceVersion: '7' } },
    ],
  ] as const)('%s, with the token and our user agent', async (_what, operation, method, url, body) => {
    const { clients } = await standIn((_n, request, response) => record(request, () => json(response, 201, {})));
    const store = secretStore(clients.raw);
    if (operation === 'create') await store.create('team-a', secret);
    else if (operation === 'replace') await store.replace('team-a', 'acr-x', secret);
    else await store.delete('team-a', 'acr-x', { uid: 'u1', resourceVersion: '7' });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method, url });
    expect(JSON.parse(seen[0]?.body ?? '')).toEqual(body);
    expect(seen[0]?.headers).toMatchObject({
      authorization: 'Bearer t',
      'content-type': 'application/json',
      'user-agent': 'test',
    });
  });

  test('a get answers the object as the apiserver sent it, and undefined when it is not found', async () => {
    const { clients } = await standIn((n, request, response) =>
      record(request, () => (n === 1 ? json(response, 200, secret) : notFound(response))),
    );
    const store = secretStore(clients.raw);
    expect(await store.get('team-a', 'acr-x')).toEqual(secret);
    expect(await store.get('team-a', 'acr-y')).toBeUndefined();
    expect(seen.map((request) => `${request.method} ${request.url}`)).toEqual([
      'GET /api/v1/namespaces/team-a/secrets/acr-x',
      'GET /api/v1/namespaces/team-a/secrets/acr-y',
    ]);
  });

  test('a delete of a Secret already gone succeeds', async () => {
    const { clients } = await standIn((_n, request, response) => record(request, () => notFound(response)));
    await expect(
      secretStore(clients.raw).delete('team-a', 'acr-x', { uid: 'u1', resourceVersion: '7' }),
    ).resolves.toBeUndefined();
  });

  test('a refused write is a KubeApiError with the status, reason and message, naming the call', async () => {
    const { clients } = await standIn((_n, request, response) =>
      record(request, () =>
        json(response, 409, {
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          reason: 'Conflict',
          message: 'the object has been modified',
          code: 409,
        }),
      ),
    );
    const failure = await secretStore(clients.raw)
      .replace('team-a', 'acr-x', secret)
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(KubeApiError);
    expect(failure).toMatchObject({
      status: 409,
      reason: 'Conflict',
      apiMessage: 'the object has been modified',
      message: 'update secret team-a/acr-x: HTTP 409 Conflict: the object has been modified',
    });
  });

  test('no answer within the connection is a KubeApiError without a status', async () => {
    const { clients } = await standIn((_n, request) => record(request, () => request.socket.destroy()));
    const failure = await secretStore(clients.raw)
      .create('team-a', secret)
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({
      status: undefined,
      message: expect.stringMatching(/^create secret team-a\/acr-x: /),
    });
  });
});
