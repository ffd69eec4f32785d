// Pure arithmetic of `npm run bench:sync`: the apiserver's request counter read before and after a
// phase, the knee of a concurrency curve, and the targets table. No I/O, so it is unit-tested.

/** One series of apiserver_request_total, reduced to what the bench reports. */
export interface RequestCount {
  readonly verb: string;
  /** The resource, with "/subresource" when there is one (namespaces/status, serviceaccounts/token). */
  readonly resource: string;
  readonly code: string;
  readonly count: number;
}

const REQUEST_TOTAL = 'apiserver_request_total';

/** Every apiserver_request_total series of a /metrics text, summed over the labels the bench ignores. */
export function parseRequestCounts(metricsText: string): RequestCount[] {
  const sums = new Map<string, RequestCount>();
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(`${REQUEST_TOTAL}{`)) continue;
    const close = line.lastIndexOf('}');
    const value = Number(
      line
        .slice(close + 1)
        .trim()
        .split(' ')[0],
    );
    if (close < 0 || !Number.isFinite(value)) continue;
    const labels = new Map(
      [...line.slice(REQUEST_TOTAL.length + 1, close).matchAll(/(\w+)="([^"]*)"/g)].map((match) => [
        match[1] ?? '',
        match[2] ?? '',
      ]),
    );
    const subresource = labels.get('subresource') ?? '';
    const row = {
      verb: labels.get('verb') ?? '',
      resource: `${labels.get('resource') ?? ''}${subresource === '' ? '' : `/${subresource}`}`,
      code: labels.get('code') ?? '',
    };
    const key = `${row.verb} ${row.resource} ${row.code}`;
    sums.set(key, { ...row, count: (sums.get(key)?.count ?? 0) + value });
  }
  return [...sums.values()];
}

/** What happened between two readings: series that grew, by how much (a counter reset reads as its new value). */
export function requestDelta(before: readonly RequestCount[], after: readonly RequestCount[]): RequestCount[] {
  const earlier = new Map(before.map((row) => [`${row.verb} ${row.resource} ${row.code}`, row.count]));
  return after
    .map((row) => {
      const previous = earlier.get(`${row.verb} ${row.resource} ${row.code}`) ?? 0;
      return { ...row, count: row.count >= previous ? row.count - previous : row.count };
    })
    .filter((row) => row.count > 0);
}

/**
 * The counts without the probe's own GETs of a namespace: sync-secrets lists and watches namespaces
 * but never GETs one, so whatever GETs of namespaces there are beyond the probe's are left.
 */
export function withoutProbe(rows: readonly RequestCount[], probeGets: number): RequestCount[] {
  let left = probeGets;
  return rows
    .map((row) => {
      if (row.verb !== 'GET' || row.resource !== 'namespaces' || left <= 0) return row;
      const taken = Math.min(left, row.count);
      left -= taken;
      return { ...row, count: row.count - taken };
    })
    .filter((row) => row.count > 0);
}

/** The resources sync-secrets touches; the rest (the bench's own setup, the apiserver's internals) is left out. */
export const SYNC_RESOURCES = ['secrets', 'events', 'namespaces', 'leases'] as const;

/** Counts by "VERB resource" over the given resources, most first; code ignored. */
export function byVerb(
  rows: readonly RequestCount[],
  resources: readonly string[] = SYNC_RESOURCES,
): Record<string, number> {
  const totals = new Map<string, number>();
  for (const row of rows) {
    if (!resources.includes(row.resource)) continue;
    const key = `${row.verb} ${row.resource}`;
    totals.set(key, (totals.get(key) ?? 0) + row.count);
  }
  return Object.fromEntries([...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
}

const WRITE_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'APPLY', 'CREATE', 'UPDATE']);

/** Creates, updates, patches and deletes of Secrets, whatever their answer. */
export function secretWrites(rows: readonly RequestCount[]): number {
  return rows
    .filter((row) => row.resource === 'secrets' && WRITE_VERBS.has(row.verb.toUpperCase()))
    .reduce((sum, row) => sum + row.count, 0);
}

/** Requests API Priority and Fairness (or anything else) answered 429 Too Many Requests. */
export function throttled(rows: readonly RequestCount[], resources: readonly string[] = SYNC_RESOURCES): number {
  return rows
    .filter((row) => row.code === '429' && resources.includes(row.resource))
    .reduce((sum, row) => sum + row.count, 0);
}

/** All requests to the given resources. */
export function totalRequests(rows: readonly RequestCount[], resources: readonly string[] = SYNC_RESOURCES): number {
  return rows.filter((row) => resources.includes(row.resource)).reduce((sum, row) => sum + row.count, 0);
}

/** "VERB resource=n, ..." for a table cell. */
export function formatCounts(counts: Record<string, number>, scale = 1, digits = 0): string {
  const entries = Object.entries(counts);
  if (entries.length === 0) return 'none';
  return entries.map(([key, count]) => `${key}=${(count * scale).toFixed(digits)}`).join(', ');
}

export interface CurvePoint {
  readonly concurrency: number;
  readonly perSecond: number;
}

/**
 * Where throughput stops growing: the first concurrency whose next step adds less than `growth`
 * (10 % by default) of throughput, or the last one measured if every step still grew. Points are
 * taken in ascending concurrency.
 */
export function throughputKnee(points: readonly CurvePoint[], growth = 1.1): number | undefined {
  const sorted = [...points].sort((a, b) => a.concurrency - b.concurrency);
  for (let index = 0; index < sorted.length - 1; index++) {
    const here = sorted[index] as CurvePoint;
    const next = sorted[index + 1] as CurvePoint;
    if (next.perSecond < here.perSecond * growth) return here.concurrency;
  }
  return sorted[sorted.length - 1]?.concurrency;
}

export interface Target {
  /** What is measured, as a sentence fragment: "--once cold at 1000 namespaces vs the minimal client". */
  readonly what: string;
  /** The measured figure, formatted. */
  readonly measured: string;
  /** What it is compared with (the floor, or the fixed bound), formatted. */
  readonly floor: string;
  /** The bound, formatted: "≤ 1.5×". */
  readonly target: string;
  readonly met: boolean;
}

/** A markdown table of targets, each with its floor and met / not met. */
export function targetsTable(targets: readonly Target[]): string[] {
  const lines = ['| target | measured | floor / bound | goal | |', '|---|---|---|---|---|'];
  for (const target of targets)
    lines.push(
      `| ${target.what} | ${target.measured} | ${target.floor} | ${target.target} | ` +
        `${target.met ? 'met' : '**not met**'} |`,
    );
  return lines;
}

/** Per-namespace cost at each scale and its ratio to the smallest scale's (1.00 = linear). */
export function growth(
  points: readonly { scale: number; value: number }[],
): { scale: number; perNamespace: number; ratio: number }[] {
  const sorted = [...points].sort((a, b) => a.scale - b.scale);
  const base = sorted[0] === undefined ? Number.NaN : sorted[0].value / sorted[0].scale;
  return sorted.map(({ scale, value }) => ({ scale, perNamespace: value / scale, ratio: value / scale / base }));
}
