// The verbs' read → decide → write loops against an in-memory cluster that keeps resourceVersions
// like the apiserver does, so conflicts can be staged exactly.
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { bundleCas } from './bundle.ts';
import {
  ClusterError,
  ConflictError,
  WebhookConfigurationNotFound,
  type CaBundleChange,
  type Cluster,
} from './cluster.ts';
import { storedFromSecret } from './create.ts';
import { inspectCertificate } from './generate.ts';
import { WRITE_ATTEMPTS, runCreate, runPatch, type CreateOptions } from './run.ts';

const now = new Date('2026-03-01T12:00:00.000Z');
const clock = () => now;
const options: CreateOptions = {
  namespace: 'ns',
  secretName: 'hook-tls',
  webhookConfig: undefined,
  dnsNames: ['hook', 'hook.ns', 'hook.ns.svc', 'hook.ns.svc.cluster.local'],
  ipAddresses: [],
  validityDays: 30,
};

class FakeCluster implements Cluster {
  readonly server = 'https://fake';
  secret: V1Secret | undefined;
  configuration: V1MutatingWebhookConfiguration | undefined;
  version = 1;
  writes: string[] = [];
  /** Runs just before the next write lands, as another certs-gen would between our read and write. */
  beforeWrite: (() => Promise<void>) | undefined;

  private stamp<T extends { metadata?: { resourceVersion?: string } }>(object: T): T {
    return { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.version) } };
  }
  private async interleave(): Promise<void> {
    const other = this.beforeWrite;
    this.beforeWrite = undefined;
    await other?.();
  }
  async readSecret() {
    return structuredClone(this.secret);
  }
  async createSecret(secret: V1Secret) {
    await this.interleave();
    if (this.secret !== undefined) throw new ConflictError('already exists');
    this.writes.push('create');
    return (this.secret = this.stamp(secret));
  }
  async replaceSecret(secret: V1Secret) {
    await this.interleave();
    if (secret.metadata?.resourceVersion !== this.secret?.metadata?.resourceVersion)
      throw new ConflictError('modified');
    this.writes.push('update');
    return (this.secret = this.stamp(secret));
  }
  async readWebhookConfiguration(name: string) {
    if (this.configuration === undefined)
      throw new WebhookConfigurationNotFound(`MutatingWebhookConfiguration "${name}" not found`);
    return structuredClone(this.configuration);
  }
  async patchCaBundles(_name: string, resourceVersion: string, changes: readonly CaBundleChange[]) {
    await this.interleave();
    const configuration = this.configuration;
    if (configuration === undefined) throw new ClusterError('gone');
    if (resourceVersion !== configuration.metadata?.resourceVersion) throw new ConflictError('modified');
    this.writes.push(`patch ${changes.map((change) => change.webhook).join(',')}`);
    for (const change of changes) {
      const webhook = configuration.webhooks?.find((candidate) => candidate.name === change.webhook);
      if (webhook) webhook.clientConfig.caBundle = change.caBundle;
    }
    return (this.configuration = this.stamp(configuration));
  }
}

function configurationWith(...names: string[]): V1MutatingWebhookConfiguration {
  return {
    metadata: { name: 'hook', uid: 'uid-1', resourceVersion: '1' },
    webhooks: names.map((name) => ({ name, clientConfig: {}, sideEffects: 'None', admissionReviewVersions: ['v1'] })),
  };
}

describe('runCreate', () => {
  it('creates the Secret once, then keeps it without writing', async () => {
    const cluster = new FakeCluster();
    expect((await runCreate(cluster, options, clock)).step.step).toBe('create');
    const version = cluster.secret?.metadata?.resourceVersion;
    expect((await runCreate(cluster, options, clock)).step.step).toBe('keep');
    expect(cluster.writes).toEqual(['create']);
    expect(cluster.secret?.metadata?.resourceVersion).toBe(version);
  });

  it('when another run creates the Secret between our read and write, reads again and keeps theirs', async () => {
    const cluster = new FakeCluster();
    cluster.beforeWrite = async () => {
      await runCreate(cluster, options, clock);
    };
    const theirs = () => storedFromSecret(cluster.secret ?? {}).servingCertPem;
    const result = await runCreate(cluster, options, clock);
    expect(result.step.step).toBe('keep');
    expect(cluster.writes).toEqual(['create']);
    expect(theirs()).toBeDefined();
  });

  it('when another run renews between our read and write, our stale update is refused and theirs stays', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    const renamed = { ...options, dnsNames: [...options.dnsNames, 'extra.example'] };
    cluster.beforeWrite = async () => {
      await runCreate(cluster, renamed, clock);
    };
    const result = await runCreate(cluster, renamed, clock);
    expect(result.step.step).toBe('keep');
    expect(cluster.writes).toEqual(['create', 'update']);
    expect(inspectCertificate(storedFromSecret(cluster.secret ?? {}).servingCertPem ?? '').dnsNames).toContain(
      'extra.example',
    );
  });

  it(`gives up after ${WRITE_ATTEMPTS} conflicting writes in a row, saying so`, async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.replaceSecret = async () => {
      throw new ConflictError('modified');
    };
    await expect(runCreate(cluster, { ...options, dnsNames: ['other'] }, clock)).rejects.toThrow(
      /^Secret ns\/hook-tls changed under every one of 5 attempts to write it/,
    );
  });

  it('refuses to touch a Secret of the same name that is not ours', async () => {
    const cluster = new FakeCluster();
    cluster.secret = { metadata: { name: 'hook-tls', namespace: 'ns' }, type: 'kubernetes.io/tls', data: {} };
    await expect(runCreate(cluster, options, clock)).rejects.toThrow(
      /^Secret ns\/hook-tls exists but is not managed by certs-gen/,
    );
    expect(cluster.writes).toEqual([]);
  });

  it('with --webhook-config naming no existing configuration, renews at once: no webhook is called', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    const result = await runCreate(
      cluster,
      { ...options, webhookConfig: 'not-installed', dnsNames: ['renamed'] },
      clock,
    );
    expect(result.step.step).toBe('renew-serving');
  });

  it('fills a Secret made beforehand, empty but labelled ours, with an update (so RBAC needs no create)', async () => {
    const cluster = new FakeCluster();
    cluster.secret = {
      metadata: {
        name: 'hook-tls',
        namespace: 'ns',
        resourceVersion: '1',
        labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': '', 'tls.key': '' },
    };
    const result = await runCreate(cluster, options, clock);
    expect(result.summary).toMatch(
      /^replaced the CA and serving certificate in Secret ns\/hook-tls \(ca.crt is missing\)/,
    );
    expect(cluster.writes).toEqual(['update']);
  });

  it('with --webhook-config, renews once the caBundle trusts the CA, reading the configuration then', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    const gated = { ...options, webhookConfig: 'hook', dnsNames: ['renamed'] };
    let reads = 0;
    const read = cluster.readWebhookConfiguration.bind(cluster);
    cluster.readWebhookConfiguration = async (name) => {
      reads++;
      return read(name);
    };
    cluster.configuration = configurationWith('pods.acr-pull-webhook.io');
    expect((await runCreate(cluster, { ...options, webhookConfig: 'hook' }, clock)).step.step).toBe('keep');
    expect(reads).toBe(0);
    const waiting = await runCreate(cluster, gated, clock);
    expect(waiting.step.step).toBe('wait-for-bundle');
    expect(waiting.summary).toMatch(
      /^waiting: Secret ns\/hook-tls keeps its serving certificate \(names changed: .*run patch first\)$/,
    );
    await runPatch(cluster, { namespace: 'ns', secretName: 'hook-tls', webhookConfig: 'hook' }, clock);
    reads = 0;
    expect((await runCreate(cluster, gated, clock)).step.step).toBe('renew-serving');
    expect(reads).toBe(1);
  });
});

describe('runPatch', () => {
  const patchOptions = { namespace: 'ns', secretName: 'hook-tls', webhookConfig: 'hook' };

  it('sets the caBundle of every webhook to ca.crt, then changes nothing on a second run', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io', 'b.acr-pull-webhook.io');
    const first = await runPatch(cluster, patchOptions, clock);
    expect(first.summary).toMatch(
      new RegExp(
        '^patched the caBundle of 2 of 2 webhooks in MutatingWebhookConfiguration hook to [0-9A-F:]{23}; ' +
          'Secret ns/hook-tls now has an ownerReference to the configuration \\(uid uid-1\\), ' +
          'so the Secret is garbage-collected with it$',
      ),
    );
    expect(first.owner).toBe('add');
    const ca = inspectCertificate(storedFromSecret(cluster.secret ?? {}).caCertPem ?? '').fingerprintSha256;
    for (const webhook of cluster.configuration.webhooks ?? []) {
      expect(bundleCas(webhook.clientConfig.caBundle).map((entry) => entry.fingerprintSha256)).toEqual([ca]);
    }
    const second = await runPatch(cluster, patchOptions, clock);
    expect(second).toEqual({
      changed: [],
      owner: 'keep',
      summary: expect.stringMatching(
        /^unchanged: every caBundle of the 2 webhooks in MutatingWebhookConfiguration hook holds [0-9A-F:]{23}$/,
      ),
    });
    expect(cluster.writes).toEqual(['create', 'patch a.acr-pull-webhook.io,b.acr-pull-webhook.io', 'update']);
    expect(cluster.secret?.metadata?.ownerReferences).toEqual([
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        name: 'hook',
        uid: 'uid-1',
        controller: false,
      },
    ]);
  });

  it('sets the ownerReference even when every caBundle is right (a release from before it was set)', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    await runPatch(cluster, patchOptions, clock);
    const { ownerReferences: _dropped, ...metadata } = cluster.secret?.metadata ?? {};
    cluster.secret = { ...cluster.secret, metadata };
    const result = await runPatch(cluster, patchOptions, clock);
    expect(result).toMatchObject({ changed: [], owner: 'add' });
    expect(result.summary).toMatch(
      /^unchanged: every caBundle .*; Secret ns\/hook-tls now has an ownerReference to the configuration \(uid uid-1\)/,
    );
    expect(cluster.secret?.metadata?.ownerReferences?.map((reference) => reference.uid)).toEqual(['uid-1']);
  });

  it('replaces the ownerReference of a configuration made again (new uid), keeping other owners', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    await runPatch(cluster, patchOptions, clock);
    const secret = cluster.secret ?? {};
    const other = { apiVersion: 'v1', kind: 'ConfigMap', name: 'keep-me', uid: 'uid-cm' };
    cluster.secret = {
      ...secret,
      metadata: { ...secret.metadata, ownerReferences: [other, ...(secret.metadata?.ownerReferences ?? [])] },
    };
    cluster.configuration = { ...cluster.configuration, metadata: { ...cluster.configuration.metadata, uid: 'uid-2' } };
    const result = await runPatch(cluster, patchOptions, clock);
    expect(result.owner).toBe('replace');
    expect(result.summary).toMatch(/\(uid uid-2, replacing stale uid uid-1\)/);
    expect(cluster.secret?.metadata?.ownerReferences?.map((reference) => reference.uid)).toEqual(['uid-cm', 'uid-2']);
  });

  it('when the Secret changes before the owner update (a renewal), reads again and keeps the renewal', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    const renamed = { ...options, dnsNames: [...options.dnsNames, 'extra.example'] };
    const patch = cluster.patchCaBundles.bind(cluster);
    cluster.patchCaBundles = async (...args) => {
      const patched = await patch(...args);
      await runCreate(cluster, renamed, clock);
      return patched;
    };
    expect((await runPatch(cluster, patchOptions, clock)).owner).toBe('add');
    expect(cluster.writes).toEqual(['create', 'patch a.acr-pull-webhook.io', 'update', 'update']);
    expect(inspectCertificate(storedFromSecret(cluster.secret ?? {}).servingCertPem ?? '').dnsNames).toContain(
      'extra.example',
    );
    expect(cluster.secret?.metadata?.ownerReferences?.map((reference) => reference.uid)).toEqual(['uid-1']);
  });

  it('a later create keeps the ownerReference', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    await runPatch(cluster, patchOptions, clock);
    expect((await runCreate(cluster, { ...options, dnsNames: ['renamed'] }, clock)).step.step).toBe('renew-serving');
    expect(cluster.secret?.metadata?.ownerReferences?.map((reference) => reference.uid)).toEqual(['uid-1']);
  });

  it('patches the caBundle from a Secret not labelled ours, but does not tie it to the configuration', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    const secret = cluster.secret ?? {};
    cluster.secret = {
      ...secret,
      metadata: { ...secret.metadata, labels: { 'app.kubernetes.io/managed-by': 'someone-else' } },
    };
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    const result = await runPatch(cluster, patchOptions, clock);
    expect(result).toMatchObject({ changed: ['a.acr-pull-webhook.io'], owner: 'not-ours' });
    expect(result.summary).toMatch(
      new RegExp(
        '; Secret ns/hook-tls is not labelled app.kubernetes.io/managed-by=acr-pull-webhook, ' +
          'so it gets no ownerReference$',
      ),
    );
    expect(cluster.writes).toEqual(['create', 'patch a.acr-pull-webhook.io']);
    expect(cluster.secret?.metadata?.ownerReferences).toBeUndefined();
  });

  it('when the configuration changes between read and patch, reads it again and patches the current one', async () => {
    const cluster = new FakeCluster();
    await runCreate(cluster, options, clock);
    cluster.configuration = configurationWith('a.acr-pull-webhook.io');
    cluster.beforeWrite = async () => {
      const configuration = cluster.configuration;
      if (configuration === undefined) return;
      configuration.webhooks?.push({
        name: 'late.acr-pull-webhook.io',
        clientConfig: {},
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
      });
      configuration.metadata = { ...configuration.metadata, resourceVersion: '99' };
    };
    const result = await runPatch(cluster, patchOptions, clock);
    expect(result.changed).toEqual(['a.acr-pull-webhook.io', 'late.acr-pull-webhook.io']);
  });

  it.each([
    [
      'no Secret',
      undefined,
      configurationWith('a'),
      /^Secret ns\/hook-tls not found at https:\/\/fake; run certs-gen create first$/,
    ],
    [
      'a Secret without ca.crt',
      { metadata: { name: 'hook-tls' }, data: {} },
      configurationWith('a'),
      /^Secret ns\/hook-tls has no ca.crt; run certs-gen create to repair it$/,
    ],
    ['no webhook configuration', 'created', undefined, /^MutatingWebhookConfiguration "hook" not found$/],
    [
      'a configuration without webhooks',
      'created',
      configurationWith(),
      /^MutatingWebhookConfiguration hook has no webhooks$/,
    ],
  ] as const)('fails in one line given %s', async (_case, secret, configuration, message) => {
    const cluster = new FakeCluster();
    if (secret === 'created') await runCreate(cluster, options, clock);
    else cluster.secret = secret;
    cluster.configuration = configuration;
    await expect(runPatch(cluster, patchOptions, clock)).rejects.toThrow(message);
  });
});
