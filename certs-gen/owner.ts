// The `patch` verb's other decision, pure: whether the TLS Secret must (again) name the
// MutatingWebhookConfiguration as its owner. With that ownerReference, Kubernetes' garbage collector
// deletes the Secret once the configuration is deleted (by `helm uninstall`, say): no release object
// owns the Secret otherwise, since certs-gen, not Helm, created it. A namespaced dependent may have a
// cluster-scoped owner.
//
// The reference is looked up by API group, kind and name. Its uid must be the live one: the garbage
// collector treats an owner whose uid differs (the configuration was deleted and created again) as
// gone, and would delete the Secret. blockOwnerDeletion is left out: setting it needs `update` on
// the owner's finalizers subresource, and nothing needs to wait for the Secret. Other owners the
// Secret may have are kept (the collector deletes a dependent only once all its owners are gone).
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../src/constants.ts';

export const OWNER_API_VERSION = 'admissionregistration.k8s.io/v1';
export const OWNER_KIND = 'MutatingWebhookConfiguration';
const OWNER_GROUP = OWNER_API_VERSION.split('/')[0];

export interface WebhookConfigurationId {
  readonly name: string;
  readonly uid: string;
}

export type OwnerStep =
  /** The Secret already names this configuration, with its live uid: nothing to write. */
  | { readonly step: 'keep' }
  /** The Secret names no such owner: add it. */
  | { readonly step: 'add'; readonly ownerReferences: V1OwnerReference[] }
  /** The Secret names a configuration of that name with another uid (it was re-created): replace it. */
  | { readonly step: 'replace'; readonly staleUids: readonly string[]; readonly ownerReferences: V1OwnerReference[] }
  /** Not labelled as certs-gen's: someone else's Secret is never made to die with the configuration. */
  | { readonly step: 'not-ours' };

export function ownerReferenceTo(configuration: WebhookConfigurationId): V1OwnerReference {
  return {
    apiVersion: OWNER_API_VERSION,
    kind: OWNER_KIND,
    name: configuration.name,
    uid: configuration.uid,
    controller: false,
  };
}

/** What to do with the ownerReferences of the Secret whose metadata is given. */
export function decideOwner(secret: V1ObjectMeta | undefined, configuration: WebhookConfigurationId): OwnerStep {
  if (secret?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return { step: 'not-ours' };
  const current = secret.ownerReferences ?? [];
  const isThisConfiguration = (reference: V1OwnerReference): boolean =>
    reference.kind === OWNER_KIND &&
    reference.apiVersion.split('/')[0] === OWNER_GROUP &&
    reference.name === configuration.name;
  const previous = current.filter(isThisConfiguration);
  if (previous.length === 1 && previous[0]?.uid === configuration.uid) return { step: 'keep' };
  const ownerReferences = [
    ...current.filter((reference) => !isThisConfiguration(reference)),
    ownerReferenceTo(configuration),
  ];
  if (previous.length === 0) return { step: 'add', ownerReferences };
  return {
    step: 'replace',
    staleUids: previous.map((reference) => reference.uid).filter((uid) => uid !== configuration.uid),
    ownerReferences,
  };
}
