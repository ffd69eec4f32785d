// The floor: the least an HTTPS admission webhook on this stack can do. A bare Fastify server with
// the webhook's certificate, TLS settings, body limit and timeouts that parses the review with
// Fastify's default JSON parser and answers it allowed, without a patch, a schema, a log line or a
// metric. Whatever the webhook costs above this is what its own code costs.
//
//   node bench/floor.ts --tls-cert FILE --tls-key FILE --port N --health-port N [--host ADDR]
//                       [--patch JSON]
//
// With --patch, every answer carries that JSON patch (encoded once at start): the floor of a webhook
// that patches, for measuring what the apiserver's own patch handling costs a pod create.
//
// Like `serve`, a plain-HTTP port answers GET /readyz (200 once the HTTPS port listens) and
// GET /reviews: how many reviews it has answered (the control-plane phase uses it to see that the
// apiserver calls it), and GET /eventloop: the event-loop delay since the previous GET /eventloop (perf_hooks
// monitorEventLoopDelay at 10 ms resolution, as prom-client's nodejs_eventloop_lag_* gauges,
// which are also reset on every scrape), in seconds, as JSON.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { ADMISSION_SERVER_OPTIONS, NODE_SERVER_OPTIONS } from '../src/server/app.ts';
import { TLS_SETTINGS } from '../src/tls/certificate-source.ts';

const { values } = parseArgs({
  options: {
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    port: { type: 'string', default: '0' },
    'health-port': { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    patch: { type: 'string' },
  },
});
const certFile = values['tls-cert'];
const keyFile = values['tls-key'];
if (certFile === undefined || keyFile === undefined) {
  process.stderr.write(
    'usage: node bench/floor.ts --tls-cert FILE --tls-key FILE [--port N] [--health-port N] [--host ADDR]\n',
  );
  process.exit(2);
}

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

interface Review {
  request: { uid: string };
}

const app = Fastify({
  logger: false,
  ...ADMISSION_SERVER_OPTIONS,
  https: { ...TLS_SETTINGS, ...NODE_SERVER_OPTIONS, cert: readFileSync(certFile), key: readFileSync(keyFile) },
});
const patch =
  values.patch === undefined
    ? {}
    : { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(JSON.parse(values.patch))).toString('base64') };
let reviews = 0;
app.post<{ Body: Review }>('/mutate', async (request) => {
  reviews += 1;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: request.body.request.uid, allowed: true, ...patch },
  };
});

let ready = false;
const health = createServer((request, response) => {
  if (request.url === '/readyz') {
    response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok' : 'not ready');
  } else if (request.url === '/reviews') {
    response.writeHead(200, { 'content-type': 'text/plain' }).end(String(reviews));
  } else if (request.url === '/eventloop') {
    const seconds = (ns: number): number => ns / 1e9;
    const body = {
      min: seconds(delay.min),
      max: seconds(delay.max),
      mean: seconds(delay.mean),
      p50: seconds(delay.percentile(50)),
      p90: seconds(delay.percentile(90)),
      p99: seconds(delay.percentile(99)),
    };
    delay.reset();
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  } else {
    response.writeHead(404).end();
  }
});

const host = values.host;
const admission = await app.listen({ port: Number(values.port), host });
await new Promise<void>((listening) => health.listen(Number(values['health-port']), host, listening));
ready = true;
const healthAddress = health.address();
const healthPort = typeof healthAddress === 'object' && healthAddress !== null ? healthAddress.port : 0;
process.stdout.write(`${JSON.stringify({ msg: 'listening', admission, health: `http://${host}:${healthPort}` })}\n`);

const stop = (): void => {
  ready = false;
  health.close();
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
