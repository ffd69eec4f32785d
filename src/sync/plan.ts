// Pure: given what a namespace holds under a secret name (or nothing) and what it should hold, the
// one write to make. Ownership is the managed-by label: a same-named Secret without it is never
// touched, only reported. An update rewrites only what sync-secrets owns (its data, its label, its
// annotation) and keeps everything else on the object, including others' labels and annotations.
import {
  CONTENT_HASH_ANNOTATION,
  DOCKERCONFIGJSON_KEY,
  DOCKERCONFIGJSON_TYPE,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
} from '../constants.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import { secretManifest, type DesiredSecret } from './desired.ts';

export type SecretPlan =
  | { readonly action: 'create'; readonly secret: SecretObject }
  /** `changed` says what differed, for the log line: never values. */
  | {
      readonly action: 'update';
      readonly secret: SecretObject;
      readonly changed: readonly ('data' | 'hash-annotation')[];
    }
  | { readonly action: 'unchanged' }
  | { readonly action: 'skipped-unmanaged'; readonly reason: string }
  /** Ours, but it cannot be changed in place (immutable, or another type); deleting it is left to a human. */
  | { readonly action: 'skipped-immutable'; readonly reason: string };

export function isManaged(secret: SecretObject): boolean {
  return secret.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

/** The decoded `.dockerconfigjson` of an existing Secret equals the desired bytes, and it holds nothing else. */
function sameData(existing: SecretObject, desired: DesiredSecret): boolean {
  const data = existing.data ?? {};
  const keys = Object.keys(data);
  if (keys.length !== 1 || keys[0] !== DOCKERCONFIGJSON_KEY) return false;
  const stored = data[DOCKERCONFIGJSON_KEY];
  return stored !== undefined && Buffer.from(stored, 'base64').equals(Buffer.from(desired.dockerConfigJson, 'utf8'));
}

export function planSecret(namespace: string, existing: SecretObject | undefined, desired: DesiredSecret): SecretPlan {
  if (existing === undefined) return { action: 'create', secret: secretManifest(desired, namespace) };
  if (!isManaged(existing)) {
    const owner = existing.metadata?.labels?.[MANAGED_BY_LABEL];
    return {
      action: 'skipped-unmanaged',
      reason: owner === undefined ? `it has no ${MANAGED_BY_LABEL} label` : `it is managed by "${owner}"`,
    };
  }
  if (existing.type !== DOCKERCONFIGJSON_TYPE) {
    return {
      action: 'skipped-immutable',
      reason: `its type is "${existing.type ?? ''}", not ${DOCKERCONFIGJSON_TYPE}, and a Secret's type cannot change`,
    };
  }
  const changed: ('data' | 'hash-annotation')[] = [];
  if (!sameData(existing, desired)) changed.push('data');
  if (existing.metadata?.annotations?.[CONTENT_HASH_ANNOTATION] !== desired.contentHash)
    changed.push('hash-annotation');
  if (changed.length === 0) return { action: 'unchanged' };
  if (existing.immutable === true) {
    return { action: 'skipped-immutable', reason: 'it is marked immutable' };
  }
  const wanted = secretManifest(desired, namespace);
  return {
    action: 'update',
    changed,
    secret: {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata?.labels, ...wanted.metadata?.labels },
        annotations: { ...existing.metadata?.annotations, ...wanted.metadata?.annotations },
      },
      // Replaces the whole map: keys another writer added are dropped, the kubelet reads only ours.
      data: { ...wanted.data },
    },
  };
}

export type PrunePlan =
  | { readonly action: 'delete'; readonly uid: string; readonly resourceVersion: string }
  | { readonly action: 'absent' }
  | { readonly action: 'skipped-unmanaged' };

/** In a namespace that is no longer opted in: delete the Secret only if it is ours (pinned to the version read). */
export function planPrune(existing: SecretObject | undefined): PrunePlan {
  if (existing === undefined) return { action: 'absent' };
  if (!isManaged(existing)) return { action: 'skipped-unmanaged' };
  return {
    action: 'delete',
    uid: existing.metadata?.uid ?? '',
    resourceVersion: existing.metadata?.resourceVersion ?? '',
  };
}
