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
import type { ReviewSummary } from '../admission/review.ts';
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
  /** Counts one answered review in every review metric; `seconds` is its duration. */
  readonly recordReview: (summary: ReviewSummary, seconds: number) => void;
}

/**
 * A counter with one label, started at zero for each known value like zeroedCounter's, that counts
 * in plain numbers and adds them to the counter when it is read (a scrape, or get()): prom-client's
 * inc() builds and hashes a label object on every call, here every review, for figures read every
 * 15 s or so. Label values are outcomes, reasons and configured secret names: a bounded set.
 */
function talliedCounter<L extends string>(
  registry: Registry,
  options: { readonly name: string; readonly help: string; readonly label: L; readonly values: readonly string[] },
): { readonly counter: Counter<L>; readonly count: (value: string) => void } {
  const pending = new Map<string, number>();
  const counter: Counter<L> = new Counter<L>({
    name: options.name,
    help: options.help,
    labelNames: [options.label],
    registers: [registry],
    collect() {
      for (const [value, count] of pending) counter.inc(labels(value), count);
      pending.clear();
    },
  });
  const labels = (value: string) => ({ [options.label]: value }) as Partial<Record<L, string>>;
  for (const value of options.values) counter.inc(labels(value), 0);
  return { counter, count: (value) => void pending.set(value, (pending.get(value) ?? 0) + 1) };
}

export function createMetrics(options: { processMetrics: boolean } = { processMetrics: true }): WebhookMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });
  const { counter: reviews, count: countOutcome } = talliedCounter(registry, {
    name: METRIC_REVIEWS,
    help: 'AdmissionReviews answered, by outcome.',
    label: 'outcome',
    values: REVIEW_OUTCOMES,
  });
  const { counter: admissionWarnings, count: countWarning } = talliedCounter(registry, {
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
  const podsPatched = new Counter({
    name: METRIC_PODS_PATCHED,
    help: 'Pods that received a patch.',
    registers: [registry],
  });
  const { counter: secretsAdded, count: countSecret } = talliedCounter(registry, {
    name: METRIC_SECRETS_ADDED,
    help: 'imagePullSecrets entries added, by secret name.',
    label: 'secret',
    values: [],
  });
  const reviewDuration = new Histogram({
    name: METRIC_REVIEW_DURATION,
    help: 'Seconds from receiving an AdmissionReview to answering it.',
    buckets: REVIEW_DURATION_BUCKETS,
    registers: [registry],
  });
  const recordReview = (summary: ReviewSummary, seconds: number): void => {
    countOutcome(summary.outcome);
    for (const reason of summary.warnings) countWarning(reason);
    if (summary.outcome === 'patched') {
      podsPatched.inc();
      for (const secret of summary.secretsAdded) countSecret(secret);
    }
    reviewDuration.observe(seconds);
  };
  return {
    registry,
    reviews,
    admissionWarnings,
    podsPatched,
    secretsAdded,
    reviewDuration,
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
    recordReview,
  };
}
