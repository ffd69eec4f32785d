// Prometheus metrics of one server instance. A registry per instance (not prom-client's global)
// keeps tests and multiple apps in one process independent.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import {
  ADMISSION_WARNING_REASONS,
  METRIC_ADMISSION_WARNINGS,
  METRIC_CERT_EXPIRY,
  METRIC_CERT_RELOADS,
  METRIC_LOG_LINES_DROPPED,
  METRIC_PODS_PATCHED,
  METRIC_REVIEW_DURATION,
  METRIC_REVIEWS,
  METRIC_SECRETS_ADDED,
  REVIEW_DURATION_BUCKETS,
  REVIEW_OUTCOMES,
} from '../constants.ts';
import { zeroedCounter } from '../metrics/counters.ts';

export interface WebhookMetrics {
  readonly registry: Registry;
  readonly reviews: Counter<'outcome'>;
  readonly admissionWarnings: Counter<'reason'>;
  readonly podsPatched: Counter;
  readonly secretsAdded: Counter<'secret'>;
  readonly reviewDuration: Histogram;
  readonly certificateExpiry: Gauge;
  readonly certificateReloads: Counter<'result'>;
  readonly logLinesDropped: Counter;
}

export function createMetrics(options: { processMetrics: boolean } = { processMetrics: true }): WebhookMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const reviews = zeroedCounter(registry, {
    name: METRIC_REVIEWS,
    help: 'AdmissionReviews answered, by outcome.',
    label: 'outcome',
    values: REVIEW_OUTCOMES,
  });
  const admissionWarnings = zeroedCounter(registry, {
    name: METRIC_ADMISSION_WARNINGS,
    help: 'Warnings returned to the client in AdmissionReview responses, by reason.',
    label: 'reason',
    values: ADMISSION_WARNING_REASONS,
  });
  const certificateReloads = zeroedCounter(registry, {
    name: METRIC_CERT_RELOADS,
    help: 'Serving certificate reloads, by result.',
    label: 'result',
    values: ['loaded', 'rejected'],
  });
  return {
    registry,
    reviews,
    admissionWarnings,
    podsPatched: new Counter({ name: METRIC_PODS_PATCHED, help: 'Pods that received a patch.', registers: [registry] }),
    secretsAdded: new Counter({
      name: METRIC_SECRETS_ADDED,
      help: 'imagePullSecrets entries added, by secret name.',
      labelNames: ['secret'],
      registers: [registry],
    }),
    reviewDuration: new Histogram({
      name: METRIC_REVIEW_DURATION,
      help: 'Seconds from receiving an AdmissionReview to answering it.',
      buckets: REVIEW_DURATION_BUCKETS,
      registers: [registry],
    }),
    certificateExpiry: new Gauge({
      name: METRIC_CERT_EXPIRY,
      help: 'notAfter of the serving certificate in use, in Unix seconds.',
      registers: [registry],
    }),
    certificateReloads,
    logLinesDropped: new Counter({
      name: METRIC_LOG_LINES_DROPPED,
      help: 'Log lines dropped because stdout did not keep up.',
      registers: [registry],
    }),
  };
}
