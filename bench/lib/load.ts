// One load run with autocannon: POSTs one body to one URL, no pipelining, and records every
// response's latency exactly (autocannon's own histogram rounds to whole milliseconds).
//
// Latency is taken per connection from autocannon's client events: from 'request' (just before
// the request is written) to 'headers' (the response's status line and headers parsed). With one
// request in flight per connection this is the request's latency. It works for reconnectRate: 1
// too, where autocannon itself records nothing: it resets the connection before counting a
// response. A new connection's first request includes the TCP and TLS handshakes.
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { distribution, type Distribution } from './stats.ts';

export interface LoadOptions {
  readonly url: string;
  readonly body: Buffer;
  readonly connections: number;
  readonly durationSeconds: number;
  /** Requests per second over all connections (autocannon overallRate); unlimited when absent. */
  readonly overallRate?: number;
  /** A new TCP + TLS connection for every request (autocannon reconnectRate: 1). */
  readonly newConnectionPerRequest?: boolean;
}

export interface LoadResult {
  readonly seconds: number;
  /** 2xx responses. */
  readonly responses: number;
  readonly requestsPerSecond: number;
  readonly latencyMs: Distribution;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
}

interface ClientEvents {
  on(event: 'request', listener: () => void): void;
  on(event: 'headers', listener: (headers: { statusCode: number }) => void): void;
}

export async function drive(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let non2xx = 0;
  const started = performance.now();
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    autocannon(
      {
        url: options.url,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: options.body,
        connections: options.connections,
        pipelining: 1,
        duration: options.durationSeconds,
        timeout: 10,
        ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
        ...(options.newConnectionPerRequest === true ? { reconnectRate: 1 } : {}),
        setupClient: (client) => {
          const events = client as unknown as ClientEvents;
          let sentAt = 0;
          events.on('request', () => {
            sentAt = performance.now();
          });
          events.on('headers', (headers) => {
            if (headers.statusCode >= 200 && headers.statusCode < 300) latencies.push(performance.now() - sentAt);
            else non2xx += 1;
          });
        },
      },
      (error: unknown, done: autocannon.Result) =>
        error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(done),
    );
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    seconds,
    responses: latencies.length,
    requestsPerSecond: latencies.length / seconds,
    latencyMs: distribution(latencies),
    non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
