// The elector's terms, against an in-memory Lease store standing in for coordination.k8s.io (the
// real apiserver is exercised by test/e2e/sync-secrets.test.ts: failover, release, expiry).
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiException, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { afterEach, describe, expect, test } from 'vitest';
import { timeUntil } from '../../test/support/sync-process.ts';
import { LeaderElector } from './leader-election.ts';

/** One Lease with resourceVersion checks; each replace can be held back by `renewDelayMs`. */
function leaseStore() {
  let lease: V1Lease | undefined;
  let version = 0;
  const store = {
    renewDelayMs: 0,
    replaces: 0,
    api: {
      readNamespacedLease: async () => {
        if (lease === undefined)
          throw new ApiException(404, 'not found', { code: 404, reason: 'NotFound', message: 'not found' }, {});
        return structuredClone(lease);
      },
      createNamespacedLease: async ({ body }: { body: V1Lease }) => {
        version += 1;
        lease = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(version) } };
        return structuredClone(lease);
      },
      replaceNamespacedLease: async ({ body }: { body: V1Lease }) => {
        store.replaces += 1;
        await sleep(store.renewDelayMs);
        version += 1;
        lease = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(version) } };
        return structuredClone(lease);
      },
    } as unknown as CoordinationV1Api,
  };
  return store;
}

let elector: LeaderElector | undefined;
afterEach(async () => {
  await elector?.stop();
  elector = undefined;
});

function start(store: ReturnType<typeof leaseStore>) {
  const events: string[] = [];
  elector = new LeaderElector({
    coordination: store.api,
    namespace: 'release',
    name: 'lease',
    identity: 'me',
    leaseDurationSeconds: 15,
    // Far above the 20 ms retry period, so a busy test machine cannot end a term by accident.
    renewDeadlineMs: 1000,
    retryPeriodMs: 20,
    onStartedLeading: () => events.push('started'),
    onStoppedLeading: () => events.push('stopped'),
    onError: (message) => events.push(`error: ${message}`),
  });
  elector.start();
  return { elector, events };
}

describe('LeaderElector terms', () => {
  test('renewals within the deadline keep one term: started once, leader throughout', async () => {
    const store = leaseStore();
    const { elector: running, events } = start(store);
    await timeUntil('leadership', async () => running.isLeader(), 5000);
    const renewalsBefore = store.replaces;
    await timeUntil('five renewals', async () => store.replaces >= renewalsBefore + 5, 5000);
    expect(running.isLeader()).toBe(true);
    expect(events).toEqual(['started']);
  });

  test('a renewal after the deadline ends the term and starts another, so queued work is picked up again', async () => {
    const store = leaseStore();
    const { elector: running, events } = start(store);
    await timeUntil('leadership', async () => running.isLeader(), 5000);
    store.renewDelayMs = 1500; // longer than renewDeadlineMs: isLeader() turns false while it is in flight
    await timeUntil('the deadline to pass', async () => !running.isLeader(), 5000);
    store.renewDelayMs = 0;
    await timeUntil('leadership again', async () => running.isLeader(), 5000);
    expect(events).toEqual(['started', 'stopped', 'started']);
  });
});
