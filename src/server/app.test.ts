// The HTTP contract of /mutate, through Fastify's inject (no sockets).
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, test } from 'vitest';
import { capturedLogger } from '../../test/support/logs.ts';
import { rules } from '../../test/support/rules.ts';
import { buildApp } from './app.ts';
import { createMetrics } from './metrics.ts';

const RULES = rules(['myregistry.azurecr.io', 'acr-myregistry']);
const SECRET_ENV = 'hunter2-super-secret-value';

function podReview(overrides: Record<string, unknown> = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'team-a',
      operation: 'CREATE',
      userInfo: { username: 'admin' },
      object: {
        metadata: { name: 'web', annotations: { token: SECRET_ENV } },
        spec: {
          containers: [
            { name: 'a', image: 'myregistry.azurecr.io/app:v1', env: [{ name: 'PASSWORD', value: SECRET_ENV }] },
          ],
        },
      },
      ...overrides,
    },
  };
}

let close: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

function setup() {
  const logs = capturedLogger();
  const metrics = createMetrics({ processMetrics: false });
  const app = buildApp({ rules: RULES, logger: logs.logger, metrics });
  close = () => app.close();
  return { app, logs, metrics };
}

describe('POST /mutate', () => {
  test('answers a pod CREATE with the patch, as JSON, and logs one line (debug) without pod content', async () => {
    const { app, logs } = setup();
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(response.json()).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'e911857d-c318-11e8-bbad-025000000001',
        allowed: true,
        patchType: 'JSONPatch',
        patch:
          'W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvaW1hZ2VQdWxsU2VjcmV0cyIsInZhbHVlIjpbeyJuYW1lIjoiYWNyLW15cmVn' +
          'aXN0cnkifV19XQ==',
      },
    });
    const reviewLines = logs.lines().filter((line) => line['msg'] === 'review');
    expect(reviewLines).toHaveLength(1);
    const { time, pid, hostname, durationMs, ...line } = reviewLines[0] ?? {};
    expect(line).toEqual({
      level: 20,
      msg: 'review',
      uid: 'e911857d-c318-11e8-bbad-025000000001',
      namespace: 'team-a',
      pod: 'web',
      operation: 'CREATE',
      dryRun: false,
      decision: 'patched',
      secretsAdded: ['acr-myregistry'],
      warnings: 0,
    });
    expect(typeof durationMs).toBe('number');
    expect(logs.text()).not.toContain(SECRET_ENV);
    expect(logs.text()).not.toContain('myregistry.azurecr.io/app');
  });

  test('answers a pod that needs nothing with allowed and no patch fields at all', async () => {
    const { app } = setup();
    const review = podReview({ object: { spec: { containers: [{ name: 'a', image: 'nginx' }] } } });
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: review });
    expect(response.body).toBe(
      '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",' +
        '"response":{"uid":"e911857d-c318-11e8-bbad-025000000001","allowed":true}}',
    );
  });

  test('accepts the large pods etcd can store (3 MiB body)', async () => {
    const { app } = setup();
    const review = podReview();
    (review.request.object.metadata.annotations as Record<string, string>)['big'] = 'x'.repeat(3 * 1024 * 1024);
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: review });
    expect(response.statusCode).toBe(200);
    expect(response.json().response.patchType).toBe('JSONPatch');
  });

  const badBodies: { why: string; payload: string; contentType?: string; status: number; message: string | RegExp }[] =
    [
      { why: 'garbage bytes', payload: '\u0000\u00ff{{', status: 400, message: 'body is not valid JSON' },
      {
        why: 'truncated JSON',
        payload: JSON.stringify(podReview()).slice(0, 50),
        status: 400,
        message: 'body is not valid JSON',
      },
      { why: 'an empty body', payload: '', status: 400, message: 'body is empty' },
      { why: 'a JSON null', payload: 'null', status: 400, message: /^not a valid AdmissionReview: / },
      { why: 'a JSON list', payload: '[]', status: 400, message: /^not a valid AdmissionReview: / },
      {
        why: 'a __proto__ key and no review',
        payload: '{"__proto__":{"allowed":false},"apiVersion":"admission.k8s.io/v1"}',
        status: 400,
        message: "not a valid AdmissionReview: body must have required property 'kind'",
      },
      {
        why: 'a constructor.prototype key and no review',
        payload: '{"constructor":{"prototype":{"x":1}}}',
        status: 400,
        message: "not a valid AdmissionReview: body must have required property 'apiVersion'",
      },
      {
        why: 'another apiVersion',
        payload: JSON.stringify({ ...podReview(), apiVersion: 'admission.k8s.io/v1beta1' }),
        status: 400,
        message: 'not a valid AdmissionReview: body/apiVersion must be equal to constant',
      },
      {
        why: 'no request',
        payload: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
        status: 400,
        message: "not a valid AdmissionReview: body must have required property 'request'",
      },
      {
        why: 'a numeric uid',
        payload: JSON.stringify(podReview({ uid: 7 })),
        status: 400,
        message: 'not a valid AdmissionReview: body/request/uid must be string',
      },
      {
        why: 'an empty uid',
        payload: JSON.stringify(podReview({ uid: '' })),
        status: 400,
        message: 'not a valid AdmissionReview: body/request/uid must NOT have fewer than 1 characters',
      },
      {
        why: 'an object that is a string',
        payload: JSON.stringify(podReview({ object: 'pod' })),
        status: 400,
        message: 'not a valid AdmissionReview: body/request/object must be object,null',
      },
      {
        why: 'a 5 MiB body',
        payload: JSON.stringify({ pad: 'x'.repeat(5 * 1024 * 1024) }),
        status: 413,
        message: 'body larger than 4194304 bytes',
      },
      {
        why: 'a text/plain body',
        payload: JSON.stringify(podReview()),
        contentType: 'text/plain',
        status: 415,
        message: 'content type must be application/json',
      },
    ];
  test.each(badBodies)(
    'rejects $why with $status and a short JSON error, logging no content',
    async ({ payload, contentType, status, message }) => {
      const { app, logs, metrics } = setup();
      const response = await app.inject({
        method: 'POST',
        url: '/mutate',
        payload,
        headers: { 'content-type': contentType ?? 'application/json' },
      });
      expect(response.statusCode).toBe(status);
      const body = response.json();
      if (typeof message === 'string') expect(body.message).toBe(message);
      else expect(body.message).toMatch(message);
      expect(typeof body.code).toBe('string');
      expect(logs.text()).not.toContain(SECRET_ENV);
      expect(logs.text()).not.toContain('prototype');
      expect((await metrics.reviews.get()).values.find((v) => v.labels.outcome === 'rejected')?.value).toBe(1);
      // and the next good request is served
      const next = await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
      expect(next.statusCode).toBe(200);
    },
  );

  test('reads __proto__ and constructor keys as plain data: the review is patched, no prototype changes', async () => {
    const { app } = setup();
    const payload = JSON.stringify(podReview())
      .replace('"metadata":', '"__proto__":{"polluted":true,"spec":{"containers":[]}},"metadata":')
      .replace('"spec":', '"constructor":{"prototype":{"polluted":true}},"spec":');
    const response = await app.inject({
      method: 'POST',
      url: '/mutate',
      payload,
      headers: { 'content-type': 'application/json' },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().response.patchType).toBe('JSONPatch');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test.each([
    {
      why: 'a charset parameter',
      contentType: 'application/json; charset=utf-8',
      payload: JSON.stringify(podReview()),
    },
    { why: 'a byte order mark', contentType: 'application/json', payload: `\uFEFF${JSON.stringify(podReview())}` },
  ])('accepts a review with $why', async ({ contentType, payload }) => {
    const { app } = setup();
    const response = await app.inject({
      method: 'POST',
      url: '/mutate',
      payload,
      headers: { 'content-type': contentType },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().response.patchType).toBe('JSONPatch');
  });

  test('lets go of the parsed review once the answer is sent, for answers and for refusals', async () => {
    // Fastify keeps a request until its response's 'finish' event, a loop turn or more after the
    // write; the review's object tree must not be held that long (1 MiB pods on 50 connections).
    const { app } = setup();
    const bodiesAtFinish: unknown[] = [];
    app.addHook('onResponse', (request, _reply, done) => {
      bodiesAtFinish.push(request.body);
      done();
    });
    expect((await app.inject({ method: 'POST', url: '/mutate', payload: podReview() })).statusCode).toBe(200);
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/mutate',
          payload: { ...podReview(), apiVersion: 'admission.k8s.io/v1beta1' },
        })
      ).statusCode,
    ).toBe(400);
    expect(bodiesAtFinish).toEqual([undefined, undefined]);
  });

  test('answers other paths and methods with 404', async () => {
    const { app } = setup();
    expect((await app.inject({ method: 'GET', url: '/mutate' })).statusCode).toBe(404);
    expect((await app.inject({ method: 'POST', url: '/validate', payload: podReview() })).statusCode).toBe(404);
  });

  test('closes connections after responding while shutting down', async () => {
    const logs = capturedLogger();
    let shuttingDown = false;
    const app = buildApp({
      rules: RULES,
      logger: logs.logger,
      metrics: createMetrics({ processMetrics: false }),
      isShuttingDown: () => shuttingDown,
    });
    close = () => app.close();
    expect((await app.inject({ method: 'POST', url: '/mutate', payload: podReview() })).headers['connection']).not.toBe(
      'close',
    );
    shuttingDown = true;
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(response.statusCode).toBe(200);
    expect(response.headers['connection']).toBe('close');
  });
});

describe('the review log line', () => {
  const reviewLines = (logs: ReturnType<typeof capturedLogger>) =>
    logs.lines().filter((line) => line['msg'] === 'review');

  const noOps = [
    {
      why: 'a pod that needs nothing',
      review: podReview({ object: { spec: { containers: [{ name: 'a', image: 'nginx' }] } } }),
      decision: 'unchanged',
      operation: 'CREATE',
    },
    {
      why: 'an opted-out pod',
      review: podReview({
        object: {
          metadata: { labels: { 'acr-pull-webhook/inject': 'disabled' } },
          spec: { containers: [{ image: 'myregistry.azurecr.io/app' }] },
        },
      }),
      decision: 'opted-out',
      operation: 'CREATE',
    },
    { why: 'a pod update', review: podReview({ operation: 'UPDATE' }), decision: 'ignored', operation: 'UPDATE' },
  ];
  test.each(noOps)('for $why is at debug, with the operation and dryRun', async ({ review, decision, operation }) => {
    const { app, logs } = setup();
    expect((await app.inject({ method: 'POST', url: '/mutate', payload: review })).statusCode).toBe(200);
    const [line, ...more] = reviewLines(logs);
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 20, decision, operation, dryRun: false, secretsAdded: [], warnings: 0 });
    expect(typeof line?.['durationMs']).toBe('number');
  });

  test('at info, only a warned pod is logged: not a patched one, nor one left as it is', async () => {
    const logs = capturedLogger();
    logs.logger.level = 'info';
    const app = buildApp({ rules: RULES, logger: logs.logger, metrics: createMetrics({ processMetrics: false }) });
    close = () => app.close();
    for (const { review } of noOps) await app.inject({ method: 'POST', url: '/mutate', payload: review });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(reviewLines(logs)).toEqual([]);
    const warned = { spec: { containers: [{ name: 'a', image: 'other.azurecr.io/app:1' }] } };
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ object: warned }) });
    expect(reviewLines(logs).map((line) => line['decision'])).toEqual(['unchanged']);
  });

  test('a dry run that patches says so, at debug', async () => {
    const { app, logs } = setup();
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ dryRun: true }) });
    expect(reviewLines(logs)).toMatchObject([{ level: 20, decision: 'patched', dryRun: true }]);
  });

  test('a warned dry run says so at info', async () => {
    const { app, logs } = setup();
    const object = { spec: { containers: [{ name: 'a', image: 'other.azurecr.io/app:1' }] } };
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ dryRun: true, object }) });
    expect(reviewLines(logs)).toMatchObject([{ level: 30, decision: 'unchanged', dryRun: true, warnings: 1 }]);
  });

  test('a pod left as it is but warned about is logged at info with the number of warnings', async () => {
    const { app, logs } = setup();
    const object = { spec: { containers: [{ name: 'a', image: 'other.azurecr.io/app:1' }] } };
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ object }) });
    expect(reviewLines(logs)).toMatchObject([{ level: 30, decision: 'unchanged', warnings: 1, secretsAdded: [] }]);
    expect(logs.text()).not.toContain('other.azurecr.io');
  });

  test('request.log is one logger for every request, no child per request, and Fastify logs through it', async () => {
    const { app, logs } = setup();
    const requestLoggers = new Set<unknown>();
    app.addHook('preHandler', (request, _reply, done) => {
      requestLoggers.add(request.log);
      // As Fastify's own lines do: its serializers keep the request to a few fields, never the body.
      request.log.info({ req: request }, 'from a hook');
      done();
    });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(requestLoggers.size).toBe(1);
    expect([...requestLoggers][0]).toBe(app.log);
    const [line, ...more] = logs.lines().filter((entry) => entry['msg'] === 'from a hook');
    expect(more).toHaveLength(1);
    expect(line).not.toHaveProperty('reqId');
    expect(line?.['req']).toMatchObject({ method: 'POST', url: '/mutate' });
    expect(logs.text()).not.toContain(SECRET_ENV);
  });
});

describe('the body as it arrives over a socket', () => {
  /** POSTs `parts` to a listening app, each written on its own after a pause; resolves with status and body. */
  async function postInParts(
    parts: readonly Buffer[],
    headers: Record<string, string | number>,
  ): Promise<{ status: number; body: string; logs: ReturnType<typeof capturedLogger> }> {
    const { app, logs } = setup();
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${address}/mutate`, { method: 'POST', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), logs }),
        );
      });
      req.on('error', reject);
      void (async () => {
        for (const part of parts) {
          if (req.destroyed) return;
          req.write(part);
          await sleep(20);
        }
        req.end();
      })();
    });
  }

  test('a character split between two chunks is read whole', async () => {
    const body = Buffer.from(
      JSON.stringify(podReview({ object: { ...podReview().request.object, metadata: { name: 'wéb-€' } } })),
    );
    const cut = body.indexOf(Buffer.from('€')) + 1;
    const { status, logs } = await postInParts([body.subarray(0, cut), body.subarray(cut)], {
      'content-type': 'application/json',
      'content-length': body.length,
    });
    expect(status).toBe(200);
    expect(logs.lines().find((line) => line['msg'] === 'review')?.['pod']).toBe('wéb-€');
  });

  const named = (name: string) =>
    Buffer.from(JSON.stringify(podReview({ object: { ...podReview().request.object, metadata: { name } } })));
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const withInvalidUtf8 = (body: Buffer) => {
    const at = body.indexOf(Buffer.from('PLACE'));
    return Buffer.concat([body.subarray(0, at), Buffer.from([0xc3]), body.subarray(at + 5)]);
  };
  test.each([
    { how: 'in one chunk', cut: (body: Buffer) => [body] },
    { how: 'in three chunks', cut: (body: Buffer) => [body.subarray(0, 2), body.subarray(2, 50), body.subarray(50)] },
  ])('$how: a leading BOM is dropped and invalid UTF-8 reads as U+FFFD', async ({ cut }) => {
    for (const [body, pod] of [
      [Buffer.concat([bom, named('web')]), 'web'],
      [withInvalidUtf8(named('xPLACEy')), 'x\ufffdy'],
    ] as const) {
      const { status, logs } = await postInParts(cut(body), {
        'content-type': 'application/json',
        'content-length': body.length,
      });
      expect(status).toBe(200);
      expect(logs.lines().find((line) => line['msg'] === 'review')?.['pod']).toBe(pod);
    }
  });

  test('a chunked body without a Content-Length is refused with 413 once it passes the limit', async () => {
    const mebibyte = Buffer.alloc(1024 * 1024, 'x');
    const { status, body } = await postInParts([Buffer.from('{"pad":"'), ...Array(5).fill(mebibyte)], {
      'content-type': 'application/json',
    });
    expect(status).toBe(413);
    expect(JSON.parse(body).message).toBe('body larger than 4194304 bytes');
  });
});

describe('warnings', () => {
  const unmatchedPod = {
    metadata: { name: 'web' },
    spec: {
      containers: [
        { name: 'a', image: 'myregistry.azurecr.io/app:v1' },
        { name: 'b', image: 'other.azurecr.io/sidecar:2' },
        { name: 'c', image: 'team.acr.example.com/tool' },
      ],
    },
  };

  test('unmatched ACR images are named in response.warnings beside the patch; the log only counts them', async () => {
    const logs = capturedLogger();
    const app = buildApp({
      rules: RULES,
      acrHostSuffixes: ['acr.example.com'],
      logger: logs.logger,
      metrics: createMetrics({ processMetrics: false }),
    });
    close = () => app.close();
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ object: unmatchedPod }) });
    expect(response.json()).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: {
        uid: 'e911857d-c318-11e8-bbad-025000000001',
        allowed: true,
        warnings: [
          'acr-pull-webhook: no registries[] entry matches image "other.azurecr.io/sidecar:2": it will be pulled ' +
            'without credentials from this webhook (add an entry for server other.azurecr.io)',
          'acr-pull-webhook: no registries[] entry matches image "team.acr.example.com/tool": it will be pulled ' +
            'without credentials from this webhook (add an entry for server team.acr.example.com)',
        ],
        patchType: 'JSONPatch',
        patch:
          'W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvaW1hZ2VQdWxsU2VjcmV0cyIsInZhbHVlIjpbeyJuYW1lIjoiYWNyLW15cmVn' +
          'aXN0cnkifV19XQ==',
      },
    });
    const [line] = logs.lines().filter((entry) => entry['msg'] === 'review');
    expect(line).toMatchObject({ decision: 'patched', warnings: 2 });
    expect(logs.text()).not.toContain('other.azurecr.io');
  });

  test('without the suffix configured, only the azurecr.io image is warned about', async () => {
    const { app } = setup();
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ object: unmatchedPod }) });
    expect(response.json().response.warnings).toEqual([
      'acr-pull-webhook: no registries[] entry matches image "other.azurecr.io/sidecar:2": it will be pulled ' +
        'without credentials from this webhook (add an entry for server other.azurecr.io)',
    ]);
  });

  test('a pod whose ACR images all match gets no warnings field at all', async () => {
    const { app } = setup();
    const response = await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(response.body).not.toContain('warnings');
  });

  test('are counted by reason, from zero', async () => {
    const { app, metrics } = setup();
    const help =
      '# HELP acr_pull_webhook_admission_warnings_total Warnings returned to the client in AdmissionReview ' +
      'responses, by reason.\n# TYPE acr_pull_webhook_admission_warnings_total counter\n';
    expect(await metrics.registry.getSingleMetricAsString('acr_pull_webhook_admission_warnings_total')).toBe(
      `${help}acr_pull_webhook_admission_warnings_total{reason="unmatched_acr_host"} 0`,
    );
    const twoUnmatched = {
      spec: { containers: [{ image: 'a.azurecr.io/x' }, { image: 'b.azurecr.cn/y' }, { image: 'a.azurecr.io/x' }] },
    };
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ object: twoUnmatched }) });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(await metrics.registry.getSingleMetricAsString('acr_pull_webhook_admission_warnings_total')).toBe(
      `${help}acr_pull_webhook_admission_warnings_total{reason="unmatched_acr_host"} 2`,
    );
  });
});

describe('metrics', () => {
  test('count reviews by outcome, patched pods, secrets by name, and time every review, refused ones too', async () => {
    const { app, metrics, logs } = setup();
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview({ operation: 'UPDATE' }) });
    await app.inject({ method: 'POST', url: '/mutate', payload: '{', headers: { 'content-type': 'application/json' } });
    const text = await metrics.registry.metrics();
    expect(text).toContain('acr_pull_webhook_admission_reviews_total{outcome="patched"} 1');
    expect(text).toContain('acr_pull_webhook_admission_reviews_total{outcome="ignored"} 1');
    expect(text).toContain('acr_pull_webhook_admission_reviews_total{outcome="rejected"} 1');
    expect(text).toContain('acr_pull_webhook_pods_patched_total 1');
    expect(text).toContain('acr_pull_webhook_secrets_added_total{secret="acr-myregistry"} 1');
    expect(text).toContain('acr_pull_webhook_admission_duration_seconds_bucket{le="0.005"}');
    expect(text).toContain('acr_pull_webhook_admission_duration_seconds_bucket{le="0.025"}');
    expect(text).toContain('acr_pull_webhook_admission_duration_seconds_bucket{le="0.1"}');
    expect(text).toContain('acr_pull_webhook_admission_duration_seconds_count 3');
    expect(text).toContain('# TYPE acr_pull_webhook_serving_certificate_expiry_timestamp_seconds gauge');
    expect(text).not.toContain(SECRET_ENV);
    expect(logs.text()).not.toContain(SECRET_ENV);
  });

  test('counted between scrapes are each counted once, whether read by a scrape or by get()', async () => {
    const { app, metrics } = setup();
    const patched = async (): Promise<number | undefined> =>
      (await metrics.reviews.get()).values.find((v) => v.labels.outcome === 'patched')?.value;
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(await patched()).toBe(1);
    expect(await patched()).toBe(1);
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    await app.inject({ method: 'POST', url: '/mutate', payload: podReview() });
    expect(await metrics.registry.metrics()).toContain('acr_pull_webhook_admission_reviews_total{outcome="patched"} 3');
    expect(await metrics.registry.metrics()).toContain(
      'acr_pull_webhook_secrets_added_total{secret="acr-myregistry"} 3',
    );
    expect(await patched()).toBe(3);
  });
});
