// The reconciler against an in-memory SecretStore: its error handling (what is retried, how soon,
// what is reported) and its pure edges. Its real API calls are tested against an apiserver in
// test/e2e/sync-secrets.test.ts.
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { KubeApiError } from '../k8s/errors.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import type { SecretStore } from '../k8s/secrets.ts';
import { desiredSecrets, secretManifest, type DesiredSecret } from './desired.ts';
import {
  addResult,
  emptySummary,
  formatSummary,
  isOptedIn,
  Reconciler,
  WRITE_BACKOFF,
  type Outcome,
} from './reconciler.ts';

const LABEL = 'acr-pull-webhook/inject';
const optIn = { label: LABEL, value: 'enabled' };
const desiredFor = (password: string): DesiredSecret[] => [
  ...desiredSecrets([{ server: 'myregistry.azurecr.io', secretName: 'acr-myregistry', username: 'sp', password }]),
];
const [current] = desiredFor('new-password');
const [stale] = desiredFor('old-password');
if (current === undefined || stale === undefined) throw new Error('no desired secret');

type Operation = 'get' | 'create' | 'replace' | 'delete';

/** An in-memory SecretStore with resourceVersions, like the apiserver's; `before` runs ahead of each call. */
class MemorySecretStore implements SecretStore {
  readonly calls: Operation[] = [];
  private readonly objects = new Map<string, SecretObject>();
  private version = 100;
  /** Runs before the call; throwing from it fails the call, writing through `put` races it. */
  before: (operation: Operation, call: number) => void = () => {};

  put(namespace: string, secret: SecretObject): void {
    const name = secret.metadata?.name ?? '';
    this.version += 1;
    this.objects.set(`${namespace}/${name}`, {
      ...secret,
      metadata: { ...secret.metadata, namespace, uid: `uid-${name}`, resourceVersion: String(this.version) },
    });
  }

  read(namespace: string, name: string): SecretObject | undefined {
    return this.objects.get(`${namespace}/${name}`);
  }

  private enter(operation: Operation): void {
    this.calls.push(operation);
    this.before(operation, this.calls.filter((call) => call === operation).length);
  }

  async get(namespace: string, name: string): Promise<SecretObject | undefined> {
    this.enter('get');
    const found = this.read(namespace, name);
    return found === undefined ? undefined : structuredClone(found);
  }

  async create(namespace: string, secret: SecretObject): Promise<void> {
    this.enter('create');
    if (this.read(namespace, secret.metadata?.name ?? '') !== undefined) throw apiError(409, 'AlreadyExists');
    this.put(namespace, secret);
  }

  async replace(namespace: string, name: string, secret: SecretObject): Promise<void> {
    this.enter('replace');
    const existing = this.read(namespace, name);
    if (existing === undefined) throw apiError(404, 'NotFound');
    if (existing.metadata?.resourceVersion !== secret.metadata?.resourceVersion) throw apiError(409, 'Conflict');
    this.put(namespace, secret);
  }

  async delete(namespace: string, name: string): Promise<void> {
    this.enter('delete');
    this.objects.delete(`${namespace}/${name}`);
  }
}

function apiError(status: number, reason: string): KubeApiError {
  return new KubeApiError(status, reason, `secret: HTTP ${status} ${reason}`);
}

function setup(leading: () => boolean = () => true) {
  const store = new MemorySecretStore();
  const slept: number[] = [];
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  const reconciler = new Reconciler({
    store,
    desired: [current as DesiredSecret],
    optIn,
    prune: false,
    canWrite: leading,
    logger: pino({ level: 'debug' }, sink),
    redact: (text) => text,
    backoff: { ...WRITE_BACKOFF, jitter: 0 },
    sleep: async (ms) => {
      slept.push(ms);
      return true;
    },
  });
  return { store, slept, lines, reconciler };
}

const teamA = { name: 'team-a', labels: { [LABEL]: 'enabled' }, terminating: false };

describe('the reconciler, when a call fails', () => {
  test.each<{
    why: string;
    existing?: DesiredSecret;
    fail: (store: MemorySecretStore) => (operation: Operation, call: number) => void;
    outcome: Outcome;
    calls: Operation[];
    slept: number[];
  }>([
    {
      why: 'a create that loses a race (409) is re-planned at once from a fresh read, and updates what the other wrote',
      fail: (store) => (operation, call) => {
        if (operation === 'create' && call === 1) store.put('team-a', secretManifest(stale));
      },
      outcome: 'updated',
      calls: ['get', 'create', 'get', 'replace'],
      slept: [],
    },
    {
      why: 'an update that loses a race (409) is re-planned at once, and finds nothing left to do',
      existing: stale,
      fail: (store) => (operation, call) => {
        if (operation === 'replace' && call === 1) store.put('team-a', secretManifest(current as DesiredSecret));
      },
      outcome: 'unchanged',
      calls: ['get', 'replace', 'get'],
      slept: [],
    },
    {
      why: 'a forbidden read (403) is not retried and fails the secret',
      fail: () => (operation) => {
        if (operation === 'get') throw apiError(403, 'Forbidden');
      },
      outcome: 'failed',
      calls: ['get'],
      slept: [],
    },
    {
      why: 'a server error (503) backs off by the write backoff and succeeds on a later attempt',
      existing: stale,
      fail: () => (operation, call) => {
        if (operation === 'replace' && call <= 2) throw apiError(503, 'ServiceUnavailable');
      },
      outcome: 'updated',
      calls: ['get', 'replace', 'get', 'replace', 'get', 'replace'],
      slept: [250, 500],
    },
    {
      why: 'a server error (500) that never ends fails the secret after every attempt, each delay doubled',
      fail: () => (operation) => {
        if (operation === 'get') throw apiError(500, 'InternalError');
      },
      outcome: 'failed',
      calls: ['get', 'get', 'get', 'get', 'get'],
      slept: [250, 500, 1000, 2000],
    },
  ])('$why', async ({ existing, fail, outcome, calls, slept: delays }) => {
    const { store, slept, reconciler } = setup();
    if (existing !== undefined) store.put('team-a', secretManifest(existing));
    store.before = fail(store);
    const result = await reconciler.reconcileNamespace(teamA);
    expect(result.outcomes).toEqual([outcome]);
    expect(store.calls).toEqual(calls);
    expect(slept).toEqual(delays);
    if (outcome !== 'failed')
      expect(store.read('team-a', 'acr-myregistry')?.metadata?.annotations).toMatchObject({
        'acr-pull-webhook/content-hash': current.contentHash,
      });
  });

  test('a failure that is not retried is reported once, with its status, reason and the attempts made', async () => {
    const { store, lines, reconciler } = setup();
    store.before = (operation) => {
      if (operation === 'get') throw apiError(403, 'Forbidden');
    };
    await reconciler.reconcileNamespace(teamA);
    expect(lines.filter((line) => line['msg'] === 'secret not reconciled')).toEqual([
      expect.objectContaining({
        level: 50,
        namespace: 'team-a',
        secret: 'acr-myregistry',
        status: 403,
        reason: 'Forbidden',
        attempts: 1,
        error: 'secret: HTTP 403 Forbidden',
      }),
    ]);
  });

  test('leadership lost while backing off aborts: no further call, no failure counted', async () => {
    let leading = true;
    const { store, slept, lines, reconciler } = setup(() => leading);
    store.put('team-a', secretManifest(stale));
    store.before = (operation) => {
      if (operation === 'replace') {
        leading = false;
        throw apiError(503, 'ServiceUnavailable');
      }
    };
    const result = await reconciler.reconcileNamespace(teamA);
    expect(result.outcomes).toEqual(['aborted']);
    expect(store.calls).toEqual(['get', 'replace']);
    expect(slept).toEqual([250]);
    expect(lines.filter((line) => line['msg'] === 'secret not reconciled')).toEqual([]);
  });
});

describe('the --once summary line', () => {
  test('counts namespaces that are opted in and every outcome but aborted and ignored', () => {
    const summary = emptySummary();
    addResult(summary, { namespace: 'a', optedIn: true, outcomes: ['created', 'unchanged'] });
    addResult(summary, { namespace: 'b', optedIn: true, outcomes: ['updated', 'skipped'] });
    addResult(summary, { namespace: 'c', optedIn: true, outcomes: ['failed', 'aborted'] });
    addResult(summary, { namespace: 'd', optedIn: false, outcomes: ['pruned', 'ignored'] });
    expect(formatSummary(summary, false)).toBe('namespaces=3 created=1 updated=1 unchanged=1 skipped=1 failed=1');
    expect(formatSummary(summary, true)).toBe(
      'namespaces=3 created=1 updated=1 unchanged=1 skipped=1 failed=1 pruned=1',
    );
  });
});

describe('opting in', () => {
  test.each([
    { why: 'the label with the value opts in', labels: { [LABEL]: 'enabled' }, expected: true },
    { why: 'another value does not', labels: { [LABEL]: 'disabled' }, expected: false },
    { why: 'no label does not', labels: {}, expected: false },
  ])('$why', ({ labels, expected }) => {
    expect(isOptedIn({ name: 'n', labels, terminating: false }, optIn)).toBe(expected);
  });
});

describe('drift, as the secret watch reports it', () => {
  const right = secretManifest(current as DesiredSecret, 'team-a');
  const managed = { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' };
  const secret = (overrides: Partial<SecretObject>): SecretObject => ({ ...right, ...overrides });
  const reconcilerWith = (prune: boolean) =>
    new Reconciler({
      store: new MemorySecretStore(),
      desired: [current as DesiredSecret],
      optIn,
      prune,
      canWrite: () => true,
      logger: pino({ level: 'silent' }),
      redact: (text) => text,
      backoff: WRITE_BACKOFF,
    });
  const left = { name: 'left', labels: {}, terminating: false };

  test.each([
    { why: 'a deleted secret in an opted-in namespace has drifted', ns: teamA, seen: undefined, expected: true },
    { why: 'one as written has not', ns: teamA, seen: right, expected: false },
    {
      why: 'one whose data someone edited has',
      ns: teamA,
      seen: secret({ data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') } }),
      expected: true,
    },
    {
      why: 'one someone made by hand (not ours) has not: it is never touched',
      ns: teamA,
      seen: secret({ metadata: { name: current?.name ?? '', namespace: 'team-a', labels: { team: 'x' } } }),
      expected: false,
    },
    { why: 'a secret of another name has not', ns: teamA, seen: undefined, name: 'someone-elses', expected: false },
    { why: 'ours in a namespace no longer opted in has not, without prune', ns: left, seen: right, expected: false },
    {
      why: 'ours in a namespace no longer opted in has, with prune',
      ns: left,
      seen: right,
      prune: true,
      expected: true,
    },
    {
      why: 'a hand-made one in a namespace not opted in has not, even with prune',
      ns: left,
      seen: secret({ metadata: { name: current?.name ?? '', labels: { team: 'x' } } }),
      prune: true,
      expected: false,
    },
  ])('$why', ({ ns, seen, name, prune, expected }) => {
    expect(right.metadata?.labels).toMatchObject(managed);
    expect(reconcilerWith(prune ?? false).drifted(ns, name ?? current?.name ?? '', seen)).toBe(expected);
  });
});

describe('reconcileAll (--once)', () => {
  test.each([1, 3, 8])('keeps at most %i namespaces in flight (--concurrency) and reconciles every one', async (n) => {
    const { store, reconciler } = setup();
    let inFlight = 0;
    let most = 0;
    const get = store.get.bind(store);
    store.get = async (namespace, name) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 1));
      inFlight -= 1;
      return get(namespace, name);
    };
    const namespaces = Array.from({ length: 20 }, (_, i) => ({ ...teamA, name: `team-${i}` }));
    const summary = await reconciler.reconcileAll(namespaces, n);
    expect(summary).toMatchObject({ namespaces: 20, created: 20, failed: 0 });
    expect(most).toBe(n);
  });

  test('namespaces arriving page by page are written as they arrive, not after the last page', async () => {
    const { store, reconciler } = setup();
    let releaseSecondPage: () => void = () => {};
    const secondPage = new Promise<void>((resolve) => (releaseSecondPage = resolve));
    async function* pages() {
      yield { ...teamA, name: 'team-1' };
      yield { ...teamA, name: 'team-2' };
      await secondPage;
      yield { ...teamA, name: 'team-3' };
    }
    const done = reconciler.reconcileAll(pages(), 4);
    const written = (name: string) => store.read(name, 'acr-myregistry') !== undefined;
    for (let tries = 0; tries < 100 && !(written('team-1') && written('team-2')); tries++)
      await new Promise((resolve) => setTimeout(resolve, 1));
    expect(['team-1', 'team-2', 'team-3'].filter(written)).toEqual(['team-1', 'team-2']);
    releaseSecondPage();
    expect(await done).toMatchObject({ namespaces: 3, created: 3, failed: 0 });
  });

  test('when the list of namespaces fails, what is in flight finishes, then the failure is thrown', async () => {
    const { store, reconciler } = setup();
    async function* failing() {
      yield { ...teamA, name: 'team-1' };
      throw new KubeApiError(500, 'InternalError', 'list namespaces: HTTP 500 InternalError');
    }
    await expect(reconciler.reconcileAll(failing(), 4)).rejects.toThrow('list namespaces: HTTP 500 InternalError');
    expect(store.read('team-1', 'acr-myregistry')).toBeDefined();
  });
});
