// sync-secrets' Events end to end: the real CLI (--once and --watch) against the real kube-apiserver, as the
// chart's ServiceAccount with only the chart's RBAC (rendered by helm, applied, a TokenRequest token). The Events
// are read back with the events.k8s.io API and with the real kubectl.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  EventsV1Api,
  type EventsV1Event,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { parseAllDocuments, stringify as toYaml } from 'yaml';
import { tokenKubeconfig } from '../support/certs-gen-cli.ts';
import { createNamespace } from '../support/control-plane.ts';
import { type Manifest, renderChart } from '../support/helm.ts';
import { everythingPrinted, runSync, startSyncWatcher, type SyncWatcher, timeUntil } from '../support/sync-process.ts';
import { tempDir } from '../support/temp-dir.ts';

const REPO = resolve(import.meta.dirname, '../..');
const ADMIN_KUBECONFIG = inject('kubeconfigPath');
const kc = new KubeConfig();
kc.loadFromFile(ADMIN_KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const eventsApi = kc.makeApiClient(EventsV1Api);
const dir = tempDir('e2e-sync-events');
const unique = (prefix: string): string => `${prefix}-${randomUUID().slice(0, 8)}`;

const RELEASE = unique('events');
const SYNC_NAME = `${RELEASE}-acr-pull-webhook-sync-secrets`;
const SECRET = 'acr-events';
const SERVER = 'eventsregistry.azurecr.io';
const OPT_IN = `e2e.acr-pull-webhook/events-${randomUUID().slice(0, 8)}`;
const PASSWORD = `${randomBytes(3).toString('hex')}8Q~${randomBytes(27).toString('base64url')}`;
const ROTATED = `${randomBytes(3).toString('hex')}9R~${randomBytes(27).toString('base64url')}`;

const usernameFile = join(dir, 'username');
const passwordFile = join(dir, 'password');
writeFileSync(usernameFile, 'events-sp');
writeFileSync(passwordFile, PASSWORD);
const CONFIG = join(dir, 'config.yaml');
writeFileSync(
  CONFIG,
  toYaml({
    registries: [{ server: SERVER, secretName: SECRET, credentials: { usernameFile, passwordFile } }],
    optIn: { label: OPT_IN, value: 'enabled' },
  }),
);

/** The chart's objects sync-secrets runs with: its ServiceAccount, RBAC and Lease. */
function chartRbac(): Manifest[] {
  const kinds = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'Lease']);
  return renderChart({
    release: RELEASE,
    namespace: RELEASE,
    values: {
      registries: [{ server: SERVER, secretName: SECRET, credentials: { token: { name: 'n', password: 'p' } } }],
    },
  }).filter(
    (object) => kinds.has(object.kind) && object.metadata.labels?.['app.kubernetes.io/component'] === 'sync-secrets',
  );
}

function kubectl(args: readonly string[], input?: string): string {
  return execFileSync('kubectl', ['--kubeconfig', ADMIN_KUBECONFIG, ...args], {
    encoding: 'utf8',
    ...(input === undefined ? {} : { input }),
  });
}

/** Our Events about one namespace, oldest first. */
async function eventsAbout(namespace: string): Promise<EventsV1Event[]> {
  const list = await eventsApi.listNamespacedEvent({ namespace: 'default' });
  return list.items
    .filter(
      (event) =>
        event.reportingController === 'acr-pull-webhook/sync-secrets' &&
        event.regarding?.kind === 'Namespace' &&
        event.regarding.name === namespace,
    )
    .sort((a, b) => String(a.eventTime).localeCompare(String(b.eventTime)));
}
const reasons = (events: readonly EventsV1Event[]): string[] => events.map((event) => event.reason ?? '');

let saKubeconfig = '';
let rendered: Manifest[] = [];
const namespaces: string[] = [];
const watchers: SyncWatcher[] = [];

async function newNamespace(prefix: string, optedIn: boolean): Promise<string> {
  const name = unique(prefix);
  await createNamespace(kc, name, optedIn ? { [OPT_IN]: 'enabled' } : undefined);
  namespaces.push(name);
  return name;
}

/** A same-named Secret sync-secrets does not manage. */
async function createUnmanaged(namespace: string): Promise<void> {
  await core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: SECRET, labels: { 'app.kubernetes.io/managed-by': 'Helm' } }, stringData: { a: 'b' } },
  });
}

beforeAll(async () => {
  await createNamespace(kc, RELEASE);
  rendered = chartRbac();
  kubectl(['apply', '-f', '-'], rendered.map((object) => toYaml(object)).join('---\n'));
  const token = await core.createNamespacedServiceAccountToken({
    namespace: RELEASE,
    name: SYNC_NAME,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  saKubeconfig = tokenKubeconfig(dir, inject('server'), inject('caPem'), token.status?.token ?? '');
});

afterAll(async () => {
  await Promise.all(watchers.map((w) => w.stop()));
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.deleteClusterRoleBinding({ name: SYNC_NAME }).catch(() => undefined);
  await rbac.deleteClusterRole({ name: SYNC_NAME }).catch(() => undefined);
  await rbac.deleteNamespacedRoleBinding({ namespace: 'default', name: `${SYNC_NAME}-events` }).catch(() => undefined);
  await rbac.deleteNamespacedRole({ namespace: 'default', name: `${SYNC_NAME}-events` }).catch(() => undefined);
  for (const name of [...namespaces, RELEASE]) await core.deleteNamespace({ name }).catch(() => undefined);
  // No credential in any line sync-secrets printed, nor in any Event it wrote.
  const ours = (await eventsApi.listNamespacedEvent({ namespace: 'default' })).items.filter(
    (event) => event.reportingController === 'acr-pull-webhook/sync-secrets',
  );
  for (const secret of [PASSWORD, ROTATED]) {
    expect(everythingPrinted()).not.toContain(secret);
    expect(JSON.stringify(ours)).not.toContain(secret);
  }
});

describe("the chart's RBAC for Events", () => {
  test('is create and patch on events.k8s.io events in default, the same in deploy/rbac/sync-secrets.yaml', () => {
    const role = (objects: readonly Manifest[], name: string) =>
      objects.find((object) => object.kind === 'Role' && object.metadata.name === name) as unknown as {
        metadata: { namespace: string };
        rules: unknown;
      };
    const shipped = parseAllDocuments(readFileSync(join(REPO, 'deploy/rbac/sync-secrets.yaml'), 'utf8')).map(
      (document) => document.toJS() as Manifest,
    );
    const expected = { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] };
    expect(role(rendered, `${SYNC_NAME}-events`)).toMatchObject({ metadata: { namespace: 'default' } });
    expect(role(rendered, `${SYNC_NAME}-events`).rules).toEqual([expected]);
    expect(role(shipped, 'acr-pull-webhook-sync-secrets-events').rules).toEqual([expected]);
    expect(role(shipped, 'acr-pull-webhook-sync-secrets-events').metadata.namespace).toBe('default');
  });

  test('allows no more: the account can neither list, get nor delete Events, nor create one elsewhere', async () => {
    const saConfig = new KubeConfig();
    saConfig.loadFromFile(saKubeconfig);
    const sa = saConfig.makeApiClient(EventsV1Api);
    const status = async (call: () => Promise<unknown>): Promise<number> => {
      try {
        await call();
        return 200;
      } catch (error) {
        if (error instanceof ApiException) return error.code;
        throw error;
      }
    };
    const namespace = await newNamespace('events-rbac', false);
    const body: EventsV1Event = {
      metadata: { name: unique('probe') },
      eventTime: new Date().toISOString().replace('Z', '000Z') as unknown as Date,
      reportingController: 'acr-pull-webhook/sync-secrets',
      reportingInstance: 'probe',
      action: 'Probe',
      reason: 'Probe',
      type: 'Normal',
      regarding: { apiVersion: 'v1', kind: 'Secret', namespace, name: 'x' },
    };
    expect(await status(() => sa.listNamespacedEvent({ namespace: 'default' }))).toBe(403);
    expect(await status(() => sa.listEventForAllNamespaces())).toBe(403);
    expect(await status(() => sa.readNamespacedEvent({ namespace: 'default', name: 'anything' }))).toBe(403);
    expect(await status(() => sa.deleteNamespacedEvent({ namespace: 'default', name: 'anything' }))).toBe(403);
    expect(await status(() => sa.createNamespacedEvent({ namespace, body }))).toBe(403);
  });
});

describe('sync-secrets --once records Events on the Namespace', () => {
  let created = '';
  let taken = '';

  beforeAll(async () => {
    created = await newNamespace('events-once', true);
    taken = await newNamespace('events-taken', true);
    await createUnmanaged(taken);
    const once = await runSync(['--config', CONFIG, '--once', '--kubeconfig', saKubeconfig]);
    expect(once.stderr).not.toContain('event not recorded');
    expect(once.stdout).toMatch(/created=1 updated=0 unchanged=0 skipped=1 failed=0/);
    expect(once.status).toBe(0);
  });

  test('SecretCreated (Normal) regarding the Namespace (with its uid), related to the Secret', async () => {
    const [event, ...more] = await eventsAbout(created);
    expect(more).toEqual([]);
    const uid = (await core.readNamespace({ name: created })).metadata?.uid;
    expect(event).toMatchObject({
      type: 'Normal',
      reason: 'SecretCreated',
      action: 'CreateSecret',
      note: `Created pull secret ${SECRET}`,
      regarding: { apiVersion: 'v1', kind: 'Namespace', name: created, uid },
      related: { apiVersion: 'v1', kind: 'Secret', namespace: created, name: SECRET },
      reportingController: 'acr-pull-webhook/sync-secrets',
    });
    expect(event?.metadata?.namespace).toBe('default');
  });

  test('SecretNotManaged (Warning) when a same-named Secret is not ours', async () => {
    const events = await eventsAbout(taken);
    expect(events.map((event) => [event.type, event.reason, event.note])).toEqual([
      [
        'Warning',
        'SecretNotManaged',
        `Left Secret ${SECRET} unchanged, pods using it get no credentials from acr-pull-webhook: ` +
          'it is managed by "Helm"',
      ],
    ]);
  });

  test('kubectl shows them: get events, and events --for the Namespace', () => {
    const listed = kubectl(['get', 'events', '-n', 'default', '--field-selector', `involvedObject.name=${taken}`]);
    expect(listed).toMatch(new RegExp(`Warning\\s+SecretNotManaged\\s+namespace/${taken}`));
    const forNamespace = kubectl(['events', '-n', 'default', '--for', `namespace/${created}`]);
    expect(forNamespace).toMatch(/Normal\s+SecretCreated\s+.*Created pull secret acr-events/);
  });

  test('a second identical run adds no Event for secrets it finds unchanged', async () => {
    const once = await runSync(['--config', CONFIG, '--once', '--kubeconfig', saKubeconfig]);
    expect(once.stdout).toMatch(/created=0 updated=0 unchanged=1 skipped=1 failed=0/);
    expect(reasons(await eventsAbout(created))).toEqual(['SecretCreated']);
  });
});

describe('sync-secrets --once sends its Normal Events after its Secret writes', () => {
  interface Audited {
    readonly user: { readonly username: string };
    readonly objectRef: { readonly resource: string; readonly namespace?: string; readonly name?: string };
    readonly responseStatus?: { readonly code: number };
    readonly requestReceivedTimestamp: string;
    readonly stageTimestamp: string;
  }

  /** The account's creates the apiserver answered, from the audit log (see global-setup.ts). */
  const auditedCreates = (): Audited[] =>
    readFileSync(inject('auditLogPath'), 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Audited)
      .filter((entry) => entry.user.username === `system:serviceaccount:${RELEASE}:${SYNC_NAME}`);

  test('a cold run, one namespace at a time: each SecretCreated arrives after the last Secret is created', async () => {
    const fresh: string[] = [];
    for (let i = 0; i < 4; i++) fresh.push(await newNamespace('events-held', true));
    // Before any --watch of this file runs (it would create them first). One namespace at a time, an Event sent
    // as soon as its Secret was created would arrive while the next namespace's Secret is written.
    const once = await runSync(['--config', CONFIG, '--once', '--concurrency', '1', '--kubeconfig', saKubeconfig]);
    expect(once.status).toBe(0);
    expect(once.stdout).toMatch(/created=4 /);

    let secrets: Audited[] = [];
    let events: Audited[] = [];
    await timeUntil(
      'the four Secrets and four Events in the audit log',
      async () => {
        const creates = auditedCreates();
        secrets = creates.filter(
          (entry) => entry.objectRef.resource === 'secrets' && fresh.includes(entry.objectRef.namespace ?? ''),
        );
        // Events about a Namespace are named `<namespace>.<time in hex>`, in default.
        events = creates.filter(
          (entry) =>
            entry.objectRef.resource === 'events' &&
            fresh.some((namespace) => entry.objectRef.name?.startsWith(`${namespace}.`)),
        );
        return secrets.length === 4 && events.length === 4;
      },
      5_000,
    );
    expect(secrets.map((entry) => entry.responseStatus?.code)).toEqual([201, 201, 201, 201]);
    expect(events.map((entry) => entry.responseStatus?.code)).toEqual([201, 201, 201, 201]);
    // MicroTime: RFC 3339 in UTC with six fractional digits always, so the text sorts as the time does.
    const lastSecretAnswered =
      secrets
        .map((entry) => entry.stageTimestamp)
        .sort()
        .at(-1) ?? '';
    const firstEventArrived = events.map((entry) => entry.requestReceivedTimestamp).sort()[0] ?? '';
    expect(firstEventArrived >= lastSecretAnswered, `${firstEventArrived} >= ${lastSecretAnswered}`).toBe(true);
    for (const namespace of fresh) expect(reasons(await eventsAbout(namespace))).toEqual(['SecretCreated']);
  });
});

describe('sync-secrets --watch records Events, and a resync repeats none', () => {
  let watched = '';
  let taken = '';
  let w: SyncWatcher;

  beforeAll(async () => {
    watched = await newNamespace('events-watch', true);
    taken = await newNamespace('events-wtaken', true);
    await createUnmanaged(taken);
    w = await startSyncWatcher({
      config: CONFIG,
      kubeconfig: saKubeconfig,
      leaseNamespace: RELEASE,
      identity: 'events-replica',
      args: ['--resync-period', '2'],
    });
    watchers.push(w);
    await w.waitForLog((line) => line['msg'] === 'leading: this replica writes');
  });

  test('SecretCreated once, and the skipped Secret one Event whose series counts the resyncs', async () => {
    await timeUntil('SecretCreated', async () => reasons(await eventsAbout(watched)).includes('SecretCreated'));
    // Resyncs every 2 s: the same SecretNotManaged is counted into the first Event's series.
    await timeUntil(
      'a series on SecretNotManaged',
      async () => ((await eventsAbout(taken))[0]?.series?.count ?? 0) >= 3,
      15_000,
    );
    const skipped = await eventsAbout(taken);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ type: 'Warning', reason: 'SecretNotManaged' });
    expect(Date.parse(String(skipped[0]?.series?.lastObservedTime))).toBeGreaterThan(
      Date.parse(String(skipped[0]?.eventTime)),
    );
    expect(reasons(await eventsAbout(watched))).toEqual(['SecretCreated']);
    expect(w.logLines().filter((line) => String(line['msg']).startsWith('event not recorded'))).toEqual([]);
  });

  test('SecretUpdated when rotated credentials change the content, and no more after it', async () => {
    // Atomically, as a Secret volume swaps files: a half-written file would be rejected (CredentialsRejected).
    writeFileSync(`${passwordFile}.next`, ROTATED);
    renameSync(`${passwordFile}.next`, passwordFile);
    await timeUntil('SecretUpdated', async () => reasons(await eventsAbout(watched)).includes('SecretUpdated'));
    const [, updated] = await eventsAbout(watched);
    expect(updated).toMatchObject({
      type: 'Normal',
      reason: 'SecretUpdated',
      action: 'UpdateSecret',
      note: `Updated pull secret ${SECRET}: its content changed`,
      related: { kind: 'Secret', namespace: watched, name: SECRET },
    });
    // Two more resyncs find it unchanged.
    await new Promise((done) => setTimeout(done, 4_500));
    expect(reasons(await eventsAbout(watched))).toEqual(['SecretCreated', 'SecretUpdated']);
  });
});
