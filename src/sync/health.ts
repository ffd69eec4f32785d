// Probes and metrics for `sync-secrets --watch` on a plain-HTTP port: /healthz (liveness) fails
// when the namespace watch has stopped making progress, so the kubelet restarts a process that
// would otherwise sit silent; /readyz says the first list is done and the process is not shutting
// down; /metrics lets operators alert when secrets stop being kept (a stall liveness cannot see,
// such as writes that keep failing). The CLI creates the server and listens; this only answers.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { HEALTHZ_PATH, METRICS_PATH, READYZ_PATH } from '../constants.ts';

export interface HealthDeps {
  /** Why the process is not live, or undefined when it is. */
  readonly notLiveReason: () => string | undefined;
  /** Why the process is not ready, or undefined when it is. */
  readonly notReadyReason: () => string | undefined;
  /** Served at /metrics in Prometheus text format. */
  readonly registry: Pick<Registry, 'contentType' | 'metrics'>;
}

/** The liveness rule: a list, watch event, bookmark or normal watch end within `stallMs` (counted from start before the first). */
export function watchStallReason(
  lastProgressAt: number,
  startedAt: number,
  stallMs: number,
  now: number = Date.now(),
): string | undefined {
  const since = Math.max(lastProgressAt, startedAt);
  const quietMs = now - since;
  if (quietMs <= stallMs) return undefined;
  return `namespace watch has made no progress for ${Math.round(quietMs / 1000)} s (limit ${Math.round(stallMs / 1000)} s)`;
}

export function healthListener(deps: HealthDeps): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    const path = (request.url ?? '').split('?')[0];
    const answer = (reason: string | undefined, prefix: string): void => {
      response.writeHead(reason === undefined ? 200 : 503, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-store',
      });
      response.end(reason === undefined ? 'ok' : `${prefix}: ${reason}`);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === HEALTHZ_PATH) {
      answer(deps.notLiveReason(), 'not live');
    } else if (path === READYZ_PATH) {
      answer(deps.notReadyReason(), 'not ready');
    } else if (path === METRICS_PATH) {
      void deps.registry.metrics().then(
        (body) =>
          response.writeHead(200, { 'content-type': deps.registry.contentType, 'cache-control': 'no-store' }).end(body),
        // A collector that throws must not take the probes down with it.
        (error: unknown) =>
          response
            .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
            .end(`metrics: ${error instanceof Error ? error.message : String(error)}`),
      );
    } else {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found');
    }
  };
}
