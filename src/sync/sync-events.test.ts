// Which Events sync-secrets records, driven through the real Reconciler over an in-memory SecretStore; the
// recorder's aggregation and rate limit are tested in src/k8s/events.test.ts, the API writes in
// test/e2e/sync-secrets-events.test.ts.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { KubeApiError } from '../k8s/errors.ts';
import type { EventInput } from '../k8s/events.ts';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { SecretStore } from '../k8s/secrets.ts';
import { desiredSecrets } from './desired.ts';
import { Reconciler } from './reconciler.ts';
import { SyncEvents } from './sync-events.ts';

const PASSWORD = 'hunter2-not-in-any-event';
const desired = (password: string) =>
  desiredSecrets([{ server: 'myregistry.azurecr.io', secretName: 'acr-myregistry', username: 'sp', password }]);
const optIn = { label: 'acr-pull-webhook/inject', value: 'enabled' };
const teamA: NamespaceInfo = { name: 'team-a', uid: 'uid-a', labels: { [optIn.label]: 'enabled' }, terminating: false };
const teamB: NamespaceInfo = { name: 'team-b', uid: 'uid-b', labels: { [optIn.label]: 'enabled' }, terminating: false };
const optedOut: NamespaceInfo = { ...teamB, labels: {} };

/** Secrets by namespace/name; `refuse` makes writes fail with that status. */
function memoryStore(): SecretStore & { objects: Map<string, SecretObject>; refuse: number | undefined } {
  const store = {
    objects: new Map<string, SecretObject>(),
    refuse: undefined as number | undefined,
    async get(namespace: string, name: string) {
      const found = store.objects.get(`${namespace}/${name}`);
      return found === undefined ? undefined : structuredClone(found);
    },
    async create(namespace: string, secret: SecretObject) {
      if (store.refuse !== undefined) throw new KubeApiError(store.refuse, 'Forbidden', 'create secret: HTTP 403');
      store.objects.set(`${namespace}/${secret.metadata?.name}`, secret);
    },
    async replace(namespace: string, name: string, secret: SecretObject) {
      if (store.refuse !== undefined) throw new KubeApiError(store.refuse, 'Forbidden', 'update secret: HTTP 403');
      store.objects.set(`${namespace}/${name}`, secret);
    },
    async delete() {},
  };
  return store;
}

function setup() {
  const recorded: EventInput[] = [];
  const events = new SyncEvents({ record: (input) => recorded.push(input) });
  const store = memoryStore();
  const reconciler = new Reconciler({
    store,
    desired: desired(PASSWORD),
    optIn,
    prune: false,
    canWrite: () => true,
    logger: pino({ level: 'silent' }, new Writable({ write: (_c, _e, done) => done() })),
    redact: (text) => text,
    backoff: { duration: 0, factor: 1, jitter: 0, steps: 2, cap: 0 },
    sleep: async () => true,
    events,
  });
  return { recorded, events, store, reconciler };
}

const summary = (event: EventInput) => ({
  type: event.type,
  reason: event.reason,
  action: event.action,
  regarding: `${event.regarding.kind}/${event.regarding.name}`,
  related:
    event.related === undefined ? undefined : `${event.related.kind}/${event.related.namespace}/${event.related.name}`,
});

describe('sync-secrets records', () => {
  test('SecretCreated on the Namespace, related to the Secret, when a pull secret is created', async () => {
    const { recorded, reconciler } = setup();
    await reconciler.reconcileNamespace(teamA);
    expect(recorded.map(summary)).toEqual([
      {
        type: 'Normal',
        reason: 'SecretCreated',
        action: 'CreateSecret',
        regarding: 'Namespace/team-a',
        related: 'Secret/team-a/acr-myregistry',
      },
    ]);
    expect(recorded[0]?.regarding.uid).toBe('uid-a');
    expect(recorded[0]?.note).toBe('Created pull secret acr-myregistry');
  });

  test('nothing when a pass finds the secret unchanged', async () => {
    const { recorded, reconciler } = setup();
    await reconciler.reconcileNamespace(teamA);
    recorded.length = 0;
    await reconciler.reconcileNamespace(teamA);
    expect(recorded).toEqual([]);
  });

  test('SecretUpdated when the content changes', async () => {
    const { recorded, reconciler } = setup();
    await reconciler.reconcileNamespace(teamA);
    recorded.length = 0;
    reconciler.setDesired(desired('rotated-password'));
    await reconciler.reconcileNamespace(teamA);
    expect(recorded.map((event) => [event.type, event.reason, event.note])).toEqual([
      ['Normal', 'SecretUpdated', 'Updated pull secret acr-myregistry: its content changed'],
    ]);
  });

  test('nothing when only the content-hash annotation was rewritten (the content is the same)', async () => {
    const { recorded, reconciler, store } = setup();
    await reconciler.reconcileNamespace(teamA);
    const secret = store.objects.get('team-a/acr-myregistry') as SecretObject;
    store.objects.set('team-a/acr-myregistry', {
      ...secret,
      metadata: { ...secret.metadata, annotations: { 'acr-pull-webhook/content-hash': 'sha256:edited' } },
    });
    recorded.length = 0;
    await reconciler.reconcileNamespace(teamA);
    expect(recorded).toEqual([]);
  });

  test('SecretNotManaged (Warning) naming why, when a same-named Secret is not ours', async () => {
    const { recorded, reconciler, store } = setup();
    store.objects.set('team-a/acr-myregistry', {
      metadata: { name: 'acr-myregistry', labels: { 'app.kubernetes.io/managed-by': 'Helm' } },
    });
    await reconciler.reconcileNamespace(teamA);
    expect(recorded.map((event) => [event.type, event.reason, event.action, event.note])).toEqual([
      [
        'Warning',
        'SecretNotManaged',
        'SkipSecret',
        'Left Secret acr-myregistry unchanged, pods using it get no credentials from acr-pull-webhook: ' +
          'it is managed by "Helm"',
      ],
    ]);
  });

  test('SyncFailed (Warning) with the status only, when a write still fails after its retries', async () => {
    const { recorded, reconciler, store } = setup();
    store.refuse = 403;
    await reconciler.reconcileNamespace(teamA);
    expect(recorded.map((event) => [event.type, event.reason, event.action, event.note])).toEqual([
      [
        'Warning',
        'SyncFailed',
        'SyncSecret',
        'Could not write pull secret acr-myregistry after retries (HTTP 403 Forbidden); it is retried later',
      ],
    ]);
  });

  test('no credential in any Event', async () => {
    const { recorded, reconciler, events } = setup();
    await reconciler.reconcileNamespace(teamA);
    reconciler.setDesired(desired(`${PASSWORD}-2`));
    await reconciler.reconcileNamespace(teamA);
    events.tokenRejected('myregistry.azurecr.io', 'acr-myregistry', false);
    events.credentialsRejected();
    expect(recorded.length).toBeGreaterThanOrEqual(4);
    expect(JSON.stringify(recorded)).not.toContain('hunter2');
    expect(JSON.stringify(recorded)).not.toContain(Buffer.from(`sp:${PASSWORD}`).toString('base64'));
  });
});

describe('a token request refused in --watch', () => {
  test('is a Warning on every opted-in Namespace seen, and on none that opted out', async () => {
    const { recorded, reconciler, events } = setup();
    await reconciler.reconcileNamespace(teamA);
    await reconciler.reconcileNamespace(teamB);
    await reconciler.reconcileNamespace(optedOut);
    recorded.length = 0;
    events.tokenRejected('myregistry.azurecr.io', 'acr-myregistry', true);
    expect(recorded.map(summary)).toEqual([
      {
        type: 'Warning',
        reason: 'TokenRequestRejected',
        action: 'RefreshToken',
        regarding: 'Namespace/team-a',
        related: 'Secret/team-a/acr-myregistry',
      },
    ]);
    expect(recorded[0]?.note).toBe(
      'The token request for registry myregistry.azurecr.io was refused; pull secret acr-myregistry: ' +
        'the token in it has expired, so pulls fail until a request succeeds',
    );
  });

  test('reaches no Namespace deleted since it was reconciled', async () => {
    const { recorded, reconciler, events } = setup();
    await reconciler.reconcileNamespace(teamA);
    await reconciler.reconcileNamespace({ ...teamB, name: 'team-c' });
    reconciler.forget('team-a');
    recorded.length = 0;
    events.tokenRejected('myregistry.azurecr.io', 'acr-myregistry', false);
    expect(recorded.map((input) => input.regarding.name)).toEqual(['team-c']);
  });

  test('says the current token is kept while it is valid', () => {
    const { recorded, events } = setup();
    events.namespace(teamA, true);
    events.tokenRejected('myregistry.azurecr.io', 'acr-myregistry', false);
    expect(recorded[0]?.note).toMatch(/keeps its current token while that is valid$/);
  });
});
