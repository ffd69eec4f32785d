// The create and patch verbs as read → decide → write against a Cluster, with optimistic
// concurrency: every write is conditional on the version read, and a conflict (another run wrote
// first) means read and decide again. The second of two concurrent runs thus sees the first one's
// result and, that being valid, keeps it.
import type { V1Secret } from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../src/constants.ts';
import { ClusterError, ConflictError, WebhookConfigurationNotFound, type Cluster } from './cluster.ts';
import {
  BundleError,
  desiredBundle,
  planCaBundles,
  trustedByEvery,
  type DesiredBundle,
  type WebhookBundle,
} from './bundle.ts';
import {
  carryOut,
  decideCreate,
  issuesUnderExistingCa,
  ownershipProblem,
  secretManifest,
  shortFingerprint,
  storedFromSecret,
  type CreateStep,
  type Wanted,
} from './create.ts';
import { inspectCertificate } from './generate.ts';
import { decideOwner, type OwnerStep, type WebhookConfigurationId } from './owner.ts';

/** Writes attempted before giving up; each conflict means someone else changed the object in between. */
export const WRITE_ATTEMPTS = 5;

export interface CreateOptions extends Wanted {
  readonly namespace: string;
  readonly secretName: string;
  /** When given, a serving certificate is issued only by a CA every caBundle in it already trusts. */
  readonly webhookConfig: string | undefined;
}

export interface CreateResult {
  readonly step: CreateStep;
  /** What happened, in one line, for stdout. */
  readonly summary: string;
}

export async function runCreate(
  cluster: Cluster,
  options: CreateOptions,
  clock: () => Date = () => new Date(),
): Promise<CreateResult> {
  const where = `Secret ${options.namespace}/${options.secretName}`;
  for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
    const existing = await cluster.readSecret(options.namespace, options.secretName);
    if (existing !== undefined) {
      const problem = ownershipProblem(existing);
      if (problem !== undefined) throw new ClusterError(problem);
    }
    const stored = existing === undefined ? undefined : storedFromSecret(existing);
    const now = clock();
    let step = decideCreate(stored, options, now);
    if (issuesUnderExistingCa(step) && options.webhookConfig !== undefined) {
      // No configuration (yet, or any more): the apiserver calls no webhook, so no admission can
      // fail whatever is served, and the certificate may be issued at once.
      const trusted = await cluster.readWebhookConfiguration(options.webhookConfig).then(
        (configuration) => trustedByEvery(webhookBundles(configuration.webhooks)),
        (error: unknown) => {
          if (error instanceof WebhookConfigurationNotFound) return undefined;
          throw error;
        },
      );
      step = decideCreate(stored, options, now, trusted);
    }
    const next = carryOut(step, stored, options, now);
    if (next === undefined) return { step, summary: summarize(step, where) };
    const manifest = secretManifest(options.namespace, options.secretName, next, existing);
    try {
      if (existing === undefined) await cluster.createSecret(manifest);
      else await cluster.replaceSecret(manifest);
    } catch (error) {
      if (error instanceof ConflictError) continue;
      throw error;
    }
    const serving = inspectCertificate(next.servingCertPem ?? '');
    const ca = inspectCertificate(next.caCertPem ?? '');
    return {
      step,
      summary:
        `${summarize(step, where)}; tls.crt valid until ${serving.notAfter.toISOString()}, ` +
        `ca.crt ${shortFingerprint(ca.fingerprintSha256)} valid until ${ca.notAfter.toISOString()}`,
    };
  }
  throw new ClusterError(
    `${where} changed under every one of ${WRITE_ATTEMPTS} attempts to write it; ` +
      'is another certs-gen running in a loop?',
  );
}

function summarize(step: CreateStep, where: string): string {
  switch (step.step) {
    case 'keep':
      return (
        `kept ${where}: tls.crt is valid until ${step.servingNotAfter.toISOString()} ` +
        `and is renewed from ${step.renewFrom.toISOString()}`
      );
    case 'create':
      return `created ${where} with a new CA and serving certificate`;
    case 'replace-all':
      return `replaced the CA and serving certificate in ${where} (${step.reason})`;
    case 'renew-serving':
      return `renewed the serving certificate in ${where} (${step.reason})`;
    case 'stage-ca':
      return `staged a new CA in ${where} (${step.reason}); next: patch, then create again to switch tls.crt to it`;
    case 'wait-for-bundle':
      return `waiting: ${where} keeps its serving certificate (${step.reason})`;
    case 'switch-serving':
      return `switched tls.crt in ${where} to the new CA (${step.reason}); the previous CA stays in ca-previous.crt`;
    case 'drop-previous-ca':
      return `dropped ca-previous.crt from ${where} (${step.reason}); next: patch`;
  }
}

export interface PatchOptions {
  readonly namespace: string;
  readonly secretName: string;
  readonly webhookConfig: string;
}

export interface PatchResult {
  readonly changed: readonly string[];
  /** What became of the Secret's ownerReference to the configuration. */
  readonly owner: OwnerStep['step'];
  readonly summary: string;
}

/**
 * Sets every caBundle from the Secret, then makes the configuration the Secret's owner (so the
 * garbage collector deletes the Secret with it). The caBundle goes first: it is what admissions
 * depend on, and a failure to set the owner must not leave it unset.
 */
export async function runPatch(
  cluster: Cluster,
  options: PatchOptions,
  clock: () => Date = () => new Date(),
): Promise<PatchResult> {
  const where = `Secret ${options.namespace}/${options.secretName}`;
  const secret = await cluster.readSecret(options.namespace, options.secretName);
  if (secret === undefined)
    throw new ClusterError(`${where} not found at ${cluster.server}; run certs-gen create first`);
  const stored = storedFromSecret(secret);
  let desired;
  try {
    desired = desiredBundle({ current: stored.caCertPem, previous: stored.previousCaCertPem }, clock());
  } catch (error) {
    if (error instanceof BundleError)
      throw new ClusterError(`${where} ${error.message}; run certs-gen create to repair it`);
    throw error;
  }
  const cas = desired.cas.map((ca) => shortFingerprint(ca.fingerprintSha256)).join(' + ');
  const what = `MutatingWebhookConfiguration ${options.webhookConfig}`;
  const bundles = await patchBundles(cluster, options.webhookConfig, desired, what, cas);
  const owner = await setOwner(cluster, options, secret, bundles.configuration, where);
  return {
    changed: bundles.changed,
    owner: owner.step,
    summary: owner.summary === undefined ? bundles.summary : `${bundles.summary}; ${owner.summary}`,
  };
}

async function patchBundles(
  cluster: Cluster,
  name: string,
  desired: DesiredBundle,
  what: string,
  cas: string,
): Promise<{ changed: readonly string[]; summary: string; configuration: WebhookConfigurationId }> {
  for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
    const configuration = await cluster.readWebhookConfiguration(name);
    const uid = configuration.metadata?.uid;
    if (uid === undefined || uid === '') throw new ClusterError(`${what} has no metadata.uid`);
    const id = { name, uid };
    const webhooks = webhookBundles(configuration.webhooks);
    if (webhooks.length === 0) throw new ClusterError(`${what} has no webhooks`);
    const plan = planCaBundles(webhooks, desired);
    if (plan.change.length === 0)
      return {
        changed: [],
        configuration: id,
        summary: `unchanged: every caBundle of the ${webhooks.length} webhooks in ${what} holds ${cas}`,
      };
    try {
      await cluster.patchCaBundles(
        name,
        configuration.metadata?.resourceVersion ?? '',
        plan.change.map((webhook) => ({ webhook, caBundle: desired.caBundle })),
      );
    } catch (error) {
      if (error instanceof ConflictError) continue;
      throw error;
    }
    return {
      changed: plan.change,
      configuration: id,
      summary: `patched the caBundle of ${plan.change.length} of ${webhooks.length} webhooks in ${what} to ${cas}`,
    };
  }
  throw new ClusterError(`${what} changed under every one of ${WRITE_ATTEMPTS} attempts to patch it`);
}

/**
 * Read → decide → conditional update of the Secret's ownerReferences, starting from the Secret
 * already read. An update (not a patch) on purpose: RBAC grants `update` on the one Secret.
 */
async function setOwner(
  cluster: Cluster,
  options: PatchOptions,
  firstRead: V1Secret,
  configuration: WebhookConfigurationId,
  where: string,
): Promise<{ step: OwnerStep['step']; summary: string | undefined }> {
  let secret: V1Secret | undefined = firstRead;
  for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
    if (attempt > 1) secret = await cluster.readSecret(options.namespace, options.secretName);
    if (secret === undefined) throw new ClusterError(`${where} was deleted while patch ran`);
    const step = decideOwner(secret.metadata, configuration);
    switch (step.step) {
      case 'keep':
        return { step: step.step, summary: undefined };
      case 'not-ours':
        return {
          step: step.step,
          summary: `${where} is not labelled ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}, so it gets no ownerReference`,
        };
      case 'add':
      case 'replace': {
        const { managedFields: _managed, ...metadata } = secret.metadata ?? {};
        try {
          await cluster.replaceSecret({ ...secret, metadata: { ...metadata, ownerReferences: step.ownerReferences } });
        } catch (error) {
          if (error instanceof ConflictError) continue;
          throw error;
        }
        const stale =
          step.step === 'replace' && step.staleUids.length > 0
            ? `, replacing stale uid ${step.staleUids.join(', ')}`
            : '';
        return {
          step: step.step,
          summary:
            `${where} now has an ownerReference to the configuration (uid ${configuration.uid}${stale}), ` +
            'so the Secret is garbage-collected with it',
        };
      }
    }
  }
  throw new ClusterError(`${where} changed under every one of ${WRITE_ATTEMPTS} attempts to set its ownerReference`);
}

function webhookBundles(
  webhooks: readonly { name: string; clientConfig: { caBundle?: string } }[] | undefined,
): WebhookBundle[] {
  return (webhooks ?? []).map((webhook) => ({ name: webhook.name, caBundle: webhook.clientConfig.caBundle }));
}
