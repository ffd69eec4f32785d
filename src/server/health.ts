// The plain-HTTP probes and metrics port of both long-running commands, `serve` and
// `sync-secrets --watch`: the same methods, status codes, headers and bodies for both; what is
// checked and which metrics are served is the caller's. Plain node:http, so sync-secrets does not
// load Fastify for three fixed paths.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { HEALTHZ_PATH, METRICS_PATH, READYZ_PATH } from '../constants.ts';
import { hostPort, listen } from '../process/startup.ts';

export interface HealthChecks {
  /** Why the process should be restarted, or undefined when it is live; absent: always live. */
  readonly notLiveReason?: () => string | undefined;
  /** Why the process should get no traffic, or undefined when it is ready. */
  readonly notReadyReason: () => string | undefined;
  /** Served at /metrics in Prometheus text format. */
  readonly registry: Pick<Registry, 'contentType' | 'metrics'>;
}

/** A probe or scrape must arrive within these (as on the admission port): slow clients cannot hold sockets. */
const REQUEST_TIMEOUT_MS = 15_000;
const HEADERS_TIMEOUT_MS = 10_000;

const TEXT = 'text/plain; charset=utf-8';

export function healthListener(checks: HealthChecks): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const path = (request.url ?? '').split('?')[0];
    // Probes must see the state now, never a cached answer.
    const answer = (reason: string | undefined, prefix: string): void => {
      response.writeHead(reason === undefined ? 200 : 503, { 'content-type': TEXT, 'cache-control': 'no-store' });
      response.end(reason === undefined ? 'ok' : `${prefix}: ${reason}`);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === HEALTHZ_PATH) {
      answer(checks.notLiveReason?.(), 'not live');
    } else if (path === READYZ_PATH) {
      answer(checks.notReadyReason(), 'not ready');
    } else if (path === METRICS_PATH) {
      void checks.registry.metrics().then(
        (body) =>
          response
            .writeHead(200, { 'content-type': checks.registry.contentType, 'cache-control': 'no-store' })
            .end(body),
        // A collector that throws must not take the probes down with it.
        (error: unknown) =>
          response
            .writeHead(500, { 'content-type': TEXT })
            .end(`metrics: ${error instanceof Error ? error.message : String(error)}`),
      );
    } else {
      response.writeHead(404, { 'content-type': TEXT }).end('not found');
    }
  };
}

export interface HealthServer {
  /** http://host:port, with the port actually bound. */
  readonly url: string;
  /** Stops listening and drops open connections (probes are short and retried). */
  readonly close: () => Promise<void>;
}

/** Serves the checks on `host:port`; rejects with a one-line StartupError (e.g. the port is taken). */
export async function startHealthServer(
  checks: HealthChecks,
  address: { readonly host: string; readonly port: number },
): Promise<HealthServer> {
  const server = createServer(
    { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS },
    healthListener(checks),
  );
  const port = await listen(server, 'health port', address.host, address.port);
  return {
    url: `http://${hostPort(address.host, port)}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
