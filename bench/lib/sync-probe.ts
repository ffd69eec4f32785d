// The cost of a sync to everyone else: while it runs, another client (the admin, over its own
// keep-alive connection) GETs one namespace every 50 ms, open loop (a GET starts on time even if
// the previous one has not answered), and keeps each latency.
import { performance } from 'node:perf_hooks';
import type { RequestOptions } from 'node:https';
import { httpsClient } from './sync-cluster.ts';
import { distribution, type Distribution } from './stats.ts';

export interface Probe {
  /** GETs answered so far, to take the probe's own requests out of the apiserver's counts. */
  answered(): number;
  /** Stops probing, waits for the GETs in flight, and returns their latencies (ms) and failures. */
  stop(): Promise<{ latencyMs: Distribution; failed: number }>;
}

export function startProbe(
  server: string,
  tls: Pick<RequestOptions, 'ca' | 'cert' | 'key'>,
  namespace: string,
  intervalMs = 50,
): Probe {
  const client = httpsClient(server, tls, undefined, 8);
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed = 0;
  const timer = setInterval(() => {
    const started = performance.now();
    const done = client
      .send('GET', `/api/v1/namespaces/${namespace}`)
      .then((answer) => {
        if (answer.status === 200) latencies.push(performance.now() - started);
        else failed++;
      })
      .catch(() => void failed++)
      .finally(() => inFlight.delete(done));
    inFlight.add(done);
  }, intervalMs);
  return {
    answered: () => latencies.length + failed,
    async stop() {
      clearInterval(timer);
      await Promise.all([...inFlight]);
      client.close();
      return { latencyMs: distribution(latencies), failed };
    },
  };
}
