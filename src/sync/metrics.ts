// Prometheus metrics of one `sync-secrets --watch` process, served at /metrics on its health port.
// A registry per instance (not prom-client's global), as the webhook's: tests can run several.
// Labels carry only fixed result names: never a namespace, a secret name or anything read from a
// credential file, so cardinality is bounded and nothing secret can be scraped.
import { type Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import {
  METRIC_SYNC_CREDENTIAL_RELOADS,
  METRIC_SYNC_LAST_SUCCESS,
  METRIC_SYNC_LEADER,
  METRIC_SYNC_NAMESPACES,
  METRIC_SYNC_PASSES,
  METRIC_SYNC_SECRETS,
  SYNC_SECRET_RESULTS,
} from '../constants.ts';
import { zeroedCounter } from '../metrics/counters.ts';

export interface SyncMetrics {
  readonly registry: Registry;
  readonly secrets: Counter<'result'>;
  readonly passes: Counter<'result'>;
  readonly lastSuccess: Gauge;
  readonly credentialReloads: Counter<'result'>;
}

export interface SyncMetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop); off in tests that compare whole scrapes. */
  readonly processMetrics: boolean;
  /** Read at every scrape, so the gauge cannot drift from what the elector decides. */
  readonly isLeader: () => boolean;
  /** Read at every scrape. */
  readonly optedInNamespaces: () => number;
}

export function createSyncMetrics(options: SyncMetricsOptions): SyncMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const secrets = zeroedCounter(registry, {
    name: METRIC_SYNC_SECRETS,
    help: 'Pull secrets reconciled (one per namespace and secret name), by result, as the --once summary counts them.',
    label: 'result',
    values: SYNC_SECRET_RESULTS,
  });
  const passes = zeroedCounter(registry, {
    name: METRIC_SYNC_PASSES,
    help: 'Full passes over every opted-in namespace, by result: failure when any secret in it failed.',
    label: 'result',
    values: ['success', 'failure'],
  });
  const credentialReloads = zeroedCounter(registry, {
    name: METRIC_SYNC_CREDENTIAL_RELOADS,
    help: 'Changed credential files, by result: loaded, or rejected and the credentials in use kept.',
    label: 'result',
    values: ['loaded', 'rejected'],
  });
  // These two are set only by their collect(), at scrape time: no handle is needed.
  new Gauge({
    name: METRIC_SYNC_LEADER,
    help: '1 while this replica holds the Lease and may write, else 0.',
    registers: [registry],
    collect() {
      this.set(options.isLeader() ? 1 : 0);
    },
  });
  new Gauge({
    name: METRIC_SYNC_NAMESPACES,
    help: 'Opted-in namespaces (not terminating) known from the namespace watch.',
    registers: [registry],
    collect() {
      this.set(options.optedInNamespaces());
    },
  });
  return {
    registry,
    secrets,
    passes,
    lastSuccess: new Gauge({
      name: METRIC_SYNC_LAST_SUCCESS,
      help:
        'Unix seconds when a full pass last reconciled every opted-in namespace without a failure; ' +
        '0 before (and on followers).',
      registers: [registry],
    }),
    credentialReloads,
  };
}
