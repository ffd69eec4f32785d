import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { decideOwner, ownerReferenceTo, type OwnerStep } from './owner.ts';

const configuration = { name: 'hook', uid: 'uid-live' };
const ours = { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' };
const live: V1OwnerReference = {
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind: 'MutatingWebhookConfiguration',
  name: 'hook',
  uid: 'uid-live',
  controller: false,
};
const stale: V1OwnerReference = { ...live, uid: 'uid-deleted' };
const other: V1OwnerReference = { apiVersion: 'v1', kind: 'ConfigMap', name: 'hook', uid: 'uid-cm' };
const otherConfiguration: V1OwnerReference = { ...live, name: 'another-hook', uid: 'uid-another' };
const meta = (ownerReferences?: V1OwnerReference[], labels: Record<string, string> = ours): V1ObjectMeta => ({
  name: 'hook-tls',
  namespace: 'ns',
  labels,
  ...(ownerReferences === undefined ? {} : { ownerReferences }),
});

describe('ownerReferenceTo', () => {
  it(
    'names the configuration by group/version, kind, name and uid; not a controller, and ' +
      "blockOwnerDeletion left out (it needs update on the owner's finalizers)",
    () => {
      expect(ownerReferenceTo(configuration)).toStrictEqual({
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        name: 'hook',
        uid: 'uid-live',
        controller: false,
      });
    },
  );
});

describe('decideOwner', () => {
  it.each<[string, V1ObjectMeta | undefined, OwnerStep]>([
    ['no ownerReferences at all: add it', meta(), { step: 'add', ownerReferences: [live] }],
    ['an empty list: add it', meta([]), { step: 'add', ownerReferences: [live] }],
    [
      'only other owners: add it, keeping them',
      meta([other, otherConfiguration]),
      { step: 'add', ownerReferences: [other, otherConfiguration, live] },
    ],
    ['the reference with the live uid: nothing to write', meta([live]), { step: 'keep' }],
    ['the reference with the live uid among others: nothing to write', meta([other, live]), { step: 'keep' }],
    [
      'the reference under another version of the group, same uid: nothing to write',
      meta([{ ...live, apiVersion: 'admissionregistration.k8s.io/v1beta1' }]),
      { step: 'keep' },
    ],
    [
      'a stale uid (the configuration was re-created): replace it',
      meta([stale]),
      { step: 'replace', staleUids: ['uid-deleted'], ownerReferences: [live] },
    ],
    [
      'a stale uid among other owners: replace it only',
      meta([other, stale]),
      { step: 'replace', staleUids: ['uid-deleted'], ownerReferences: [other, live] },
    ],
    [
      'a stale and the live uid both: one reference, the live one',
      meta([stale, live]),
      { step: 'replace', staleUids: ['uid-deleted'], ownerReferences: [live] },
    ],
    [
      "a Secret not labelled as certs-gen's: leave it alone",
      meta([], { 'app.kubernetes.io/managed-by': 'cert-manager' }),
      { step: 'not-ours' },
    ],
    ['no metadata: not ours', undefined, { step: 'not-ours' }],
  ])('%s', (_case, secret, expected) => {
    expect(decideOwner(secret, configuration)).toStrictEqual(expected);
  });
});
