// The --watch work queue with a scripted NamespaceReconciler (no API involved: the reconciler's API
// calls are tested against a fake store in reconciler.test.ts and a real apiserver in test/e2e/).
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import { SyncController } from './controller.ts';
import { createSyncMetrics, type SyncMetrics } from './metrics.ts';
import type { DesiredSecret } from './desired.ts';
import type { NamespaceReconciler, NamespaceResult, Outcome } from './reconciler.ts';

const LABEL = 'acr-pull-webhook/inject';
const ns = (name: string, optedIn = true, terminating = false): NamespaceInfo => ({
  name,
  labels: optedIn ? { [LABEL]: 'enabled' } : {},
  terminating,
});

function setup(
  options: {
    leader?: boolean;
    outcome?: (name: string, call: number) => Outcome;
    delayMs?: number;
    metrics?: SyncMetrics;
    now?: () => number;
  } = {},
) {
  const calls: string[] = [];
  /** Namespaces the reconciler was told are gone. */
  const forgotten: string[] = [];
  /** What each reconcile was given. */
  const seen: NamespaceInfo[] = [];
  let leader = options.leader ?? true;
  const wants = (n: NamespaceInfo): boolean => !n.terminating && n.labels[LABEL] === 'enabled';
  const reconciler: NamespaceReconciler & { desired: readonly DesiredSecret[] } = {
    desired: [],
    wants,
    concerns: wants,
    // Scripted: a Secret seen deleted, or labelled drifted, needs work.
    drifted: (_n, _name, secret) => secret === undefined || secret.metadata?.labels?.['drifted'] === 'yes',
    setDesired(desired) {
      this.desired = desired;
    },
    forget: (name) => void forgotten.push(name),
    async reconcileNamespace(n: NamespaceInfo): Promise<NamespaceResult> {
      calls.push(n.name);
      seen.push(n);
      await sleep(options.delayMs ?? 5);
      const outcome = options.outcome?.(n.name, calls.filter((c) => c === n.name).length) ?? 'unchanged';
      return { namespace: n.name, optedIn: wants(n), outcomes: [outcome] };
    },
  };
  const controller = new SyncController({
    reconciler,
    isLeader: () => leader,
    concurrency: 2,
    resyncMs: 60_000,
    requeueBackoff: { duration: 20, factor: 2, jitter: 0, steps: Number.POSITIVE_INFINITY, cap: 80 },
    logger: pino({ level: 'silent' }),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
  return { controller, calls, seen, forgotten, reconciler, setLeader: (value: boolean) => (leader = value) };
}

const settle = () => sleep(60);

describe('the --watch work queue', () => {
  test('a list queues every opted-in namespace once', async () => {
    const { controller, calls } = setup();
    controller.handlers.onList([ns('a'), ns('b'), ns('c', false)]);
    await settle();
    expect(calls.sort()).toEqual(['a', 'b']);
  });

  test('an event queues a namespace only when it is new or its opt-in changed', async () => {
    const { controller, calls } = setup();
    controller.handlers.onList([ns('a', false)]);
    controller.handlers.onUpsert(ns('a', false)); // relabelled with something else: nothing to do
    controller.handlers.onUpsert(ns('a', true)); // labelled
    controller.handlers.onUpsert(ns('a', true)); // another label changed: already done
    controller.handlers.onUpsert(ns('b', true)); // created labelled
    controller.handlers.onUpsert(ns('c', false)); // created without the label
    await settle();
    expect(calls.sort()).toEqual(['a', 'b']);
  });

  test('one that stops being opted in (unlabelled, terminating) is reconciled once more, as it is now', async () => {
    const { controller, seen } = setup();
    controller.handlers.onList([ns('a'), ns('b'), ns('c', false)]);
    await settle();
    controller.handlers.onUpsert(ns('a', false)); // unlabelled
    controller.handlers.onUpsert(ns('b', true, true)); // being deleted
    controller.handlers.onUpsert(ns('c', false)); // never opted in: not even held
    await settle();
    expect(seen.slice(2).map((n) => `${n.name} opted in: ${n.labels[LABEL] === 'enabled' && !n.terminating}`)).toEqual([
      'a opted in: false',
      'b opted in: false',
    ]);
    controller.handlers.onUpsert(ns('a', true)); // labelled again
    await settle();
    expect(seen.slice(4).map((n) => n.name)).toEqual(['a']);
  });

  test('a namespace queued while in flight is reconciled once more afterwards, not twice at once', async () => {
    const { controller, calls } = setup({ delayMs: 30 });
    controller.handlers.onList([ns('a')]);
    controller.enqueue('a');
    controller.enqueue('a');
    await sleep(120);
    expect(calls).toEqual(['a', 'a']);
  });

  test('a newly labelled namespace goes ahead of a full pass already queued, which still finishes', async () => {
    const { controller, calls } = setup({ delayMs: 10 });
    const many = Array.from({ length: 50 }, (_, i) => ns(`team-${i}`));
    controller.handlers.onList([...many, ns('new', false)]);
    controller.handlers.onUpsert(ns('new')); // labelled while 50 others wait: concurrency 2, 2 in flight
    for (let waited = 0; calls.length < 51 && waited < 5_000; waited += 20) await sleep(20);
    expect(calls.indexOf('new')).toBe(2);
    expect(calls).toHaveLength(51);
  });

  test('a follower does no work; becoming leader starts a full pass', async () => {
    const { controller, calls, setLeader } = setup({ leader: false });
    controller.handlers.onList([ns('a'), ns('b')]);
    controller.credentialsChanged([]);
    await settle();
    expect(calls).toEqual([]);
    setLeader(true);
    controller.enqueueAll();
    await settle();
    expect(calls.sort()).toEqual(['a', 'b']);
  });

  test('new credentials reach the reconciler and every opted-in namespace is reconciled again', async () => {
    const { controller, calls, reconciler } = setup();
    controller.handlers.onList([ns('a'), ns('b'), ns('c', false)]);
    await settle();
    const desired = [{ name: 'acr-x', dockerConfigJson: '{}', contentHash: 'sha256:00', servers: ['x.azurecr.io'] }];
    controller.credentialsChanged(desired);
    await settle();
    expect(reconciler.desired).toBe(desired);
    expect(calls.sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  test('a namespace that failed is retried with growing delays until it succeeds', async () => {
    const { controller, calls } = setup({ outcome: (_name, call) => (call < 4 ? 'failed' : 'created') });
    controller.handlers.onList([ns('a')]);
    await sleep(400); // 20 + 40 + 80 ms of requeue delays, then success
    expect(calls).toEqual(['a', 'a', 'a', 'a']);
    await controller.stop();
  });

  test('a drifted or deleted secret queues its namespace; a right one or an unknown namespace does not', async () => {
    const { controller, calls } = setup();
    controller.handlers.onList([ns('a'), ns('b'), ns('c')]);
    await settle();
    calls.length = 0;
    controller.secretChanged('a', 'acr-x', { metadata: { name: 'acr-x', labels: { drifted: 'yes' } } });
    controller.secretChanged('b', 'acr-x', undefined);
    controller.secretChanged('c', 'acr-x', { metadata: { name: 'acr-x', labels: {} } });
    controller.secretChanged('unknown', 'acr-x', undefined);
    await settle();
    expect(calls.sort()).toEqual(['a', 'b']);
  });

  test('a deleted namespace is forgotten, and stop waits for work in flight', async () => {
    const { controller, calls, forgotten } = setup({ delayMs: 40 });
    controller.handlers.onList([ns('a'), ns('b'), ns('c')]);
    controller.handlers.onDelete('c');
    expect(forgotten).toEqual(['c']);
    await sleep(10);
    const stopped = Date.now();
    await controller.stop();
    expect(Date.now() - stopped).toBeGreaterThanOrEqual(20);
    expect(calls.sort()).toEqual(['a', 'b']);
  });
});

describe('the --watch metrics', () => {
  const NOW_MS = 1_767_225_600_000;
  const metrics = (): SyncMetrics =>
    createSyncMetrics({ processMetrics: false, isLeader: () => true, optedInNamespaces: () => 0 });
  /** The value of one series, as Prometheus would scrape it; throws when the series is missing. */
  const sample = async (m: SyncMetrics, series: string): Promise<number> => {
    const line = (await m.registry.metrics()).split('\n').find((candidate) => candidate.startsWith(`${series} `));
    if (line === undefined) throw new Error(`no sample ${series}`);
    return Number(line.slice(series.length + 1));
  };
  const passes = async (m: SyncMetrics) => [
    await sample(m, 'acr_pull_webhook_sync_passes_total{result="success"}'),
    await sample(m, 'acr_pull_webhook_sync_passes_total{result="failure"}'),
  ];

  test('a full pass counts once every opted-in namespace in it is done, and sets the last-success time', async () => {
    const m = metrics();
    const { controller } = setup({ metrics: m, now: () => NOW_MS, delayMs: 30 });
    controller.handlers.onList([ns('a'), ns('b'), ns('c', false)]);
    await sleep(10);
    expect(await passes(m)).toEqual([0, 0]);
    expect(await sample(m, 'acr_pull_webhook_sync_last_success_timestamp_seconds')).toBe(0);
    await sleep(100);
    expect(await passes(m)).toEqual([1, 0]);
    expect(await sample(m, 'acr_pull_webhook_sync_last_success_timestamp_seconds')).toBe(1_767_225_600);
    expect(await sample(m, 'acr_pull_webhook_sync_secret_reconciles_total{result="unchanged"}')).toBe(2);
  });

  test('each secret result counts; a pass with a failure fails, keeps the timestamp; the next succeeds', async () => {
    const m = metrics();
    let now = NOW_MS;
    const outcomes: Record<string, Outcome[]> = {
      a: ['failed', 'created'],
      b: ['updated'],
      c: ['skipped'],
      d: ['pruned'],
    };
    const { controller } = setup({
      metrics: m,
      now: () => now,
      outcome: (name, call) => outcomes[name]?.[call - 1] ?? 'unchanged',
    });
    controller.handlers.onList([ns('a'), ns('b'), ns('c'), ns('d')]);
    await sleep(200); // a fails, is retried 20 ms later and is created
    expect(await passes(m)).toEqual([0, 1]);
    expect(await sample(m, 'acr_pull_webhook_sync_last_success_timestamp_seconds')).toBe(0);
    for (const [result, count] of [
      ['created', 1],
      ['updated', 1],
      ['unchanged', 0],
      ['skipped', 1],
      ['failed', 1],
      ['pruned', 1],
    ] as const) {
      expect(await sample(m, `acr_pull_webhook_sync_secret_reconciles_total{result="${result}"}`), result).toBe(count);
    }
    now = NOW_MS + 300_000;
    controller.enqueueAll(); // the periodic resync
    await sleep(60);
    expect(await passes(m)).toEqual([1, 1]);
    expect(await sample(m, 'acr_pull_webhook_sync_last_success_timestamp_seconds')).toBe(1_767_225_900);
    expect(await sample(m, 'acr_pull_webhook_sync_secret_reconciles_total{result="unchanged"}')).toBe(4);
    await controller.stop();
  });

  test('a follower counts no pass, and a leader counts none before namespaces are listed', async () => {
    const follower = metrics();
    setup({ leader: false, metrics: follower }).controller.handlers.onList([ns('a')]);
    await sleep(60);
    expect(await passes(follower)).toEqual([0, 0]);

    const leader = metrics();
    const { controller } = setup({ metrics: leader });
    controller.enqueueAll(); // leadership came before the first list: nothing is known yet
    expect(await passes(leader)).toEqual([0, 0]);
    controller.handlers.onList([ns('x', false)]); // listed, and nothing is opted in: trivially all right
    expect(await passes(leader)).toEqual([1, 0]);
  });

  test('a pass whose reconcile stopped before writing (leadership lost) is not counted', async () => {
    const m = metrics();
    const { controller } = setup({ metrics: m, outcome: (name) => (name === 'a' ? 'aborted' : 'unchanged') });
    controller.handlers.onList([ns('a'), ns('b')]);
    await sleep(60);
    expect(await passes(m)).toEqual([0, 0]);
    expect(await sample(m, 'acr_pull_webhook_sync_secret_reconciles_total{result="unchanged"}')).toBe(1);
    expect(await m.registry.metrics()).not.toContain('aborted');
  });

  test('a namespace already in flight when a pass begins counts for it only when reconciled again', async () => {
    const m = metrics();
    const { controller, calls } = setup({ metrics: m, delayMs: 100 });
    controller.handlers.onList([ns('a')]);
    await sleep(20);
    controller.enqueueAll(); // new credentials while a is being written with the old ones
    await sleep(130); // the first reconcile is done, the second in flight
    expect(calls).toEqual(['a', 'a']);
    expect(await passes(m)).toEqual([0, 0]);
    await sleep(150);
    expect(await passes(m)).toEqual([1, 0]);
  });

  test('a namespace deleted before its turn no longer holds the pass open', async () => {
    const m = metrics();
    const { controller, calls } = setup({ metrics: m, delayMs: 30 });
    controller.handlers.onList([ns('a'), ns('b'), ns('c')]); // concurrency 2: c waits
    controller.handlers.onDelete('c');
    await sleep(80);
    expect(calls.sort()).toEqual(['a', 'b']);
    expect(await passes(m)).toEqual([1, 0]);
  });

  test('the opted-in namespace count follows the watch', () => {
    const { controller } = setup({ leader: false });
    controller.handlers.onList([ns('a'), ns('b', false), ns('c', true, true)]);
    expect(controller.optedInNamespaces()).toBe(1);
    controller.handlers.onUpsert(ns('b'));
    controller.handlers.onUpsert(ns('d'));
    expect(controller.optedInNamespaces()).toBe(3);
    controller.handlers.onUpsert(ns('d', false));
    controller.handlers.onDelete('a');
    expect(controller.optedInNamespaces()).toBe(1);
  });
});
