// The --watch work queue with a stand-in reconciler (no API involved: the reconciler's API calls
// are tested against a real apiserver in test/e2e/sync-secrets.test.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import { SyncController } from './controller.ts';
import type { NamespaceResult, Outcome, Reconciler } from './reconciler.ts';

const LABEL = 'acr-pull-webhook/inject';
const ns = (name: string, optedIn = true): NamespaceInfo => ({ name, labels: optedIn ? { [LABEL]: 'enabled' } : {}, terminating: false });

function setup(options: { leader?: boolean; outcome?: (name: string, call: number) => Outcome; delayMs?: number } = {}) {
  const calls: string[] = [];
  let leader = options.leader ?? true;
  const wants = (n: NamespaceInfo): boolean => n.labels[LABEL] === 'enabled';
  const reconciler = {
    wants,
    concerns: wants,
    setDesired: () => {},
    async reconcileNamespace(n: NamespaceInfo): Promise<NamespaceResult> {
      calls.push(n.name);
      await sleep(options.delayMs ?? 5);
      const outcome = options.outcome?.(n.name, calls.filter((c) => c === n.name).length) ?? 'unchanged';
      return { namespace: n.name, optedIn: wants(n), outcomes: [outcome] };
    },
  } as unknown as Reconciler;
  const controller = new SyncController({
    reconciler,
    isLeader: () => leader,
    concurrency: 2,
    resyncMs: 60_000,
    requeueMs: 20,
    requeueMaxMs: 80,
    logger: pino({ level: 'silent' }),
  });
  return { controller, calls, setLeader: (value: boolean) => (leader = value) };
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

  test('a namespace queued while in flight is reconciled once more afterwards, not twice at once', async () => {
    const { controller, calls } = setup({ delayMs: 30 });
    controller.handlers.onList([ns('a')]);
    controller.enqueue('a');
    controller.enqueue('a');
    await sleep(120);
    expect(calls).toEqual(['a', 'a']);
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

  test('a namespace that failed is retried with growing delays until it succeeds', async () => {
    const { controller, calls } = setup({ outcome: (_name, call) => (call < 4 ? 'failed' : 'created') });
    controller.handlers.onList([ns('a')]);
    await sleep(400); // 20 + 40 + 80 ms of requeue delays, then success
    expect(calls).toEqual(['a', 'a', 'a', 'a']);
    await controller.stop();
  });

  test('a deleted namespace is forgotten, and stop waits for work in flight', async () => {
    const { controller, calls } = setup({ delayMs: 40 });
    controller.handlers.onList([ns('a'), ns('b'), ns('c')]);
    controller.handlers.onDelete('c');
    await sleep(10);
    const stopped = Date.now();
    await controller.stop();
    expect(Date.now() - stopped).toBeGreaterThanOrEqual(20);
    expect(calls.sort()).toEqual(['a', 'b']);
  });
});
