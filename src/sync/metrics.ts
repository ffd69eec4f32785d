// Prometheus metrics of one `sync-secrets --watch` process, served at /metrics on its health port.
// A registry per instance (not prom-client's global), as the webhook's: tests can run several.
// Labels carry only fixed result names and configured servers: never a namespace, a secret name or
// anything read from a credential file, so cardinality is bounded and nothing secret can be scraped.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import {
  METRIC_SYNC_CREDENTIAL_RELOADS,
  METRIC_SYNC_EVENTS_DROPPED,
  METRIC_SYNC_LAST_SUCCESS,
  METRIC_SYNC_LEADER,
  METRIC_SYNC_NAMESPACES,
  METRIC_SYNC_PASSES,
  METRIC_SYNC_SECRETS,
  METRIC_SYNC_TOKEN_EXPIRY,
  METRIC_SYNC_TOKEN_REQUESTS,
  SYNC_SECRET_RESULTS,
  SYNC_TOKEN_REQUEST_RESULTS,
} from '../constants.ts';
import { zeroedCounter } from '../metrics/counters.ts';

export interface SyncMetrics {
  readonly registry: Registry;
  readonly secrets: Counter<'result'>;
  readonly passes: Counter<'result'>;
  readonly lastSuccess: Gauge;
  readonly credentialReloads: Counter<'result'>;
  /** The `exp` (Unix seconds) of the ACR refresh token in use, per azure entry's server. */
  readonly tokenExpiry: Gauge<'server'>;
  readonly tokenRequests: Counter<'server' | 'result'>;
  readonly eventsDropped: Counter<'type'>;
}

export interface SyncMetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop); off in tests that compare whole scrapes. */
  readonly processMetrics: boolean;
  /** Read at every scrape, so the gauge cannot drift from what the elector decides. */
  readonly isLeader: () => boolean;
  /** Read at every scrape. */
  readonly optedInNamespaces: () => number;
  /** The servers of the azure entries, whose token request series start at zero. */
  readonly tokenServers?: readonly string[];
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
  const eventsDropped = zeroedCounter(registry, {
    name: METRIC_SYNC_EVENTS_DROPPED,
    help:
      'Events not written, by type: more than the queue holds (Normal ones dropped first), or still queued at ' +
      'shutdown. Writes of Secrets never wait for Events.',
    label: 'type',
    values: ['Normal', 'Warning'],
  });
  const tokenRequests = new Counter({
    name: METRIC_SYNC_TOKEN_REQUESTS,
    help:
      'ACR refresh token requests (Entra ID, then the ACR exchange) per azure registry, by result: issued, ' +
      'rejected (refused or unreadable credential: fix the configuration), failed (network, timeout, 429, 5xx).',
    labelNames: ['server', 'result'] as const,
    registers: [registry],
  });
  for (const server of new Set(options.tokenServers ?? [])) {
    for (const result of SYNC_TOKEN_REQUEST_RESULTS) tokenRequests.inc({ server, result }, 0);
  }
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
    tokenExpiry: new Gauge({
      name: METRIC_SYNC_TOKEN_EXPIRY,
      help:
        'Unix seconds when the ACR refresh token this replica holds for a registry expires (its JWT exp); ' +
        'alert when it comes near: refreshes have been failing.',
      labelNames: ['server'] as const,
      registers: [registry],
    }),
    tokenRequests,
    eventsDropped,
  };
}
