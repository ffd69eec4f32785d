// The `create` verb's decisions, pure: from what the Secret holds (or that there is none), the names
// wanted and the time, the ONE step this run takes, and what the Secret holds after it. Cluster I/O
// lives in cluster.ts and run.ts; key generation (the only hidden input) happens in carryOut.
//
// Where the CA key lives: in the same Secret, as `ca.key`. Routine renewals of the serving
// certificate then keep the CA, so the caBundle does not change and nothing has to be ordered; the
// CA is replaced only when it nears its own end (every few years at the default validity). The
// webhook pod mounts only tls.crt and tls.key (the volume lists them under `items`), so the CA key is
// never on the webhook's file system; it is readable by whoever may read Secrets in the namespace,
// who could read tls.key anyway, and the CA is trusted by this webhook's caBundle only (pathLen 0),
// so holding it gives nothing beyond impersonating this webhook. The alternative, a new CA on every
// renewal, would turn every renewal into the three-step CA rotation below.
//
// A CA rotation takes three runs, each followed by `patch`, so that no admission fails:
//   1. stage-ca:       ca.crt/ca.key become a new CA, the old one moves to ca-previous.crt; tls.crt is
//                      kept. `patch` then publishes a caBundle with both CAs.
//   2. switch-serving: tls.crt is re-issued by the new CA, which the bundle already trusts (checked
//                      against the webhook configuration when create is given --webhook-config).
//   3. drop-previous-ca: once the old serving certificate can no longer be in use (it expired, or a
//                      day has passed since the switch), ca-previous.crt goes; `patch` drops it too.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../src/constants.ts';
import {
  generateCa,
  generateServingCertificate,
  inspectCertificate,
  needsRenewal,
  verifyServingPair,
  type CertificateInfo,
  type PemPair,
} from './generate.ts';
import { CA_VALIDITY_FACTOR } from './local.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * How long after the switch the previous CA stays trusted at most. Every replica serves the new pair
 * within the kubelet's Secret sync (about a minute) plus the webhook's 5 s poll; a day also leaves
 * room for a replica whose reload failed to be noticed, and for one more daily CronJob run.
 */
export const PREVIOUS_CA_GRACE_MS = DAY_MS;

/** Annotation on the Secret: until when ca-previous.crt must stay in the caBundle (RFC 3339). */
export const PREVIOUS_CA_UNTIL_ANNOTATION = 'acr-pull-webhook/previous-ca-until';

export interface StoredCertificates {
  /** tls.crt */
  readonly servingCertPem: string | undefined;
  /** tls.key */
  readonly servingKeyPem: string | undefined;
  /** ca.crt: the CA that signs new serving certificates. */
  readonly caCertPem: string | undefined;
  /** ca.key */
  readonly caKeyPem: string | undefined;
  /** ca-previous.crt: the CA being retired, still in the caBundle during a rotation. */
  readonly previousCaCertPem: string | undefined;
  /** From {@link PREVIOUS_CA_UNTIL_ANNOTATION}. */
  readonly previousCaUntil: Date | undefined;
}

export interface Wanted {
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  /** Of the serving certificate; a new CA gets CA_VALIDITY_FACTOR times as long. */
  readonly validityDays: number;
}

export type CreateStep =
  | { readonly step: 'create'; readonly reason: string }
  | { readonly step: 'keep'; readonly servingNotAfter: Date; readonly renewFrom: Date }
  | { readonly step: 'renew-serving'; readonly reason: string }
  | { readonly step: 'stage-ca'; readonly reason: string }
  | { readonly step: 'wait-for-bundle'; readonly reason: string }
  | { readonly step: 'switch-serving'; readonly reason: string }
  | { readonly step: 'drop-previous-ca'; readonly reason: string }
  | { readonly step: 'replace-all'; readonly reason: string };

/**
 * The one step to take. `trusted` is the set of CA fingerprints (sha256, as in CertificateInfo) that
 * every webhook's caBundle holds; when given, a serving certificate is never issued by a CA outside
 * it, since the apiserver would refuse it the moment the webhook loads it.
 */
export function decideCreate(
  stored: StoredCertificates | undefined,
  want: Wanted,
  now: Date,
  trusted?: ReadonlySet<string>,
): CreateStep {
  const step = decideUngated(stored, want, now);
  if ((step.step === 'renew-serving' || step.step === 'switch-serving') && trusted !== undefined) {
    const ca = inspectCertificate(stored?.caCertPem ?? '');
    if (!trusted.has(ca.fingerprintSha256)) {
      return {
        step: 'wait-for-bundle',
        reason:
          `${step.reason}, but not every caBundle trusts the CA ${shortFingerprint(ca.fingerprintSha256)} yet: ` +
          'run patch first',
      };
    }
  }
  return step;
}

/** Whether the decision may depend on the caBundle, i.e. whether it is worth reading it. */
export function issuesUnderExistingCa(step: CreateStep): boolean {
  return step.step === 'renew-serving' || step.step === 'switch-serving';
}

function decideUngated(stored: StoredCertificates | undefined, want: Wanted, now: Date): CreateStep {
  if (stored === undefined) return { step: 'create', reason: 'the Secret does not exist' };
  const serving = servingPair(stored);
  const ca = checkCa(stored, now);
  const servingVsCa =
    serving.ok && stored.caCertPem !== undefined
      ? verifyServingPair(serving.pair, stored.caCertPem, now)
      : notOk(serving);

  if (!ca.usable) {
    // The serving certificate still verifies (e.g. only ca.key was lost): rotate without a gap.
    return servingVsCa.ok ? { step: 'stage-ca', reason: ca.reason } : { step: 'replace-all', reason: ca.reason };
  }

  const previous = stored.previousCaCertPem;
  const servingVsPrevious =
    previous !== undefined && serving.ok && !servingVsCa.ok
      ? verifyServingPair(serving.pair, previous, now)
      : undefined;
  if (servingVsPrevious?.ok === true)
    return { step: 'switch-serving', reason: 'tls.crt is still signed by the previous CA' };

  const fits = servingWouldFit(ca.info, want.validityDays, now);
  if (!servingVsCa.ok) {
    const reason =
      servingVsPrevious === undefined || servingVsPrevious.ok
        ? servingVsCa.reason
        : `${servingVsCa.reason}; against the previous CA: ${servingVsPrevious.reason}`;
    return fits
      ? { step: 'renew-serving', reason }
      : { step: 'replace-all', reason: `${reason}, and the CA ends before a new serving certificate would` };
  }
  // servingVsCa.ok implies serving.ok and a ca.crt.
  const renewal = needsRenewal(
    serving.ok ? serving.pair : { certPem: '', keyPem: '' },
    stored.caCertPem ?? '',
    want,
    now,
  );
  if (renewal.renew) {
    return fits
      ? { step: 'renew-serving', reason: renewal.reason }
      : {
          step: 'stage-ca',
          reason:
            `${renewal.reason}, and the CA ends (${ca.info.notAfter.toISOString()}) ` +
            'before a new serving certificate would',
        };
  }
  if (previous !== undefined) {
    const retired = previousRetired(previous, stored, ca.info, now);
    if (retired !== undefined) return { step: 'drop-previous-ca', reason: retired };
  }
  const caLifetime = ca.info.notAfter.getTime() - ca.info.notBefore.getTime();
  // Same rule as the serving certificate; with the CA living ten times as long, a rotation has
  // years to complete. While a previous CA is still retained, a new rotation waits for it to go.
  if (ca.info.notAfter.getTime() - now.getTime() < caLifetime / 3 && previous === undefined) {
    return {
      step: 'stage-ca',
      reason: `less than a third of the CA's validity left (expires ${ca.info.notAfter.toISOString()})`,
    };
  }
  const info = inspectCertificate(serving.ok ? serving.pair.certPem : '');
  const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
  return { step: 'keep', servingNotAfter: info.notAfter, renewFrom: new Date(info.notAfter.getTime() - lifetime / 3) };
}

/**
 * What the Secret holds after `step`, or undefined when nothing is to be written. Generates keys
 * (the only impure part): a new CA for create/replace-all/stage-ca, a new serving pair for
 * create/replace-all/renew-serving/switch-serving.
 */
export function carryOut(
  step: CreateStep,
  stored: StoredCertificates | undefined,
  want: Wanted,
  now: Date,
): StoredCertificates | undefined {
  switch (step.step) {
    case 'keep':
    case 'wait-for-bundle':
      return undefined;
    case 'create':
    case 'replace-all': {
      const ca = generateCa({ validityDays: want.validityDays * CA_VALIDITY_FACTOR, now });
      const serving = issue(ca, want, now);
      return fromPairs(serving, ca, undefined, undefined);
    }
    case 'stage-ca': {
      const current = required(stored);
      const ca = generateCa({ validityDays: want.validityDays * CA_VALIDITY_FACTOR, now });
      return {
        ...current,
        caCertPem: ca.certPem,
        caKeyPem: ca.keyPem,
        previousCaCertPem: current.caCertPem,
        previousCaUntil: undefined,
      };
    }
    case 'renew-serving': {
      const current = required(stored);
      const serving = issue(currentCa(current), want, now);
      // A replica may still serve an older pair (it refuses broken files and keeps what it has), so
      // a previous CA stays for the grace period at least.
      const until =
        current.previousCaCertPem === undefined
          ? undefined
          : (current.previousCaUntil ?? new Date(now.getTime() + PREVIOUS_CA_GRACE_MS));
      return fromPairs(serving, currentCa(current), current.previousCaCertPem, until);
    }
    case 'switch-serving': {
      const current = required(stored);
      const serving = issue(currentCa(current), want, now);
      const oldNotAfter = inspectCertificate(current.servingCertPem ?? '').notAfter.getTime();
      const until = new Date(Math.min(oldNotAfter, now.getTime() + PREVIOUS_CA_GRACE_MS));
      return fromPairs(serving, currentCa(current), current.previousCaCertPem, until);
    }
    case 'drop-previous-ca':
      return { ...required(stored), previousCaCertPem: undefined, previousCaUntil: undefined };
  }
}

// ---------------------------------------------------------------------------------------------
// The Secret on the wire

/** A problem that forbids touching an existing Secret, or undefined when it is ours to manage. */
export function ownershipProblem(secret: V1Secret): string | undefined {
  const where = `Secret ${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}`;
  const owner = secret.metadata?.labels?.[MANAGED_BY_LABEL];
  if (owner !== MANAGED_BY_VALUE) {
    return (
      `${where} exists but is not managed by certs-gen (label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE} missing); ` +
      'refusing to overwrite it'
    );
  }
  if (secret.type !== 'kubernetes.io/tls') return `${where} has type ${secret.type ?? '(none)'}, not kubernetes.io/tls`;
  if (secret.immutable === true) return `${where} is immutable`;
  return undefined;
}

export function storedFromSecret(secret: V1Secret): StoredCertificates {
  const data = secret.data ?? {};
  const text = (key: string): string | undefined => {
    const value = data[key];
    return value === undefined || value === '' ? undefined : Buffer.from(value, 'base64').toString('utf8');
  };
  const until = secret.metadata?.annotations?.[PREVIOUS_CA_UNTIL_ANNOTATION];
  const untilDate = until === undefined ? undefined : new Date(until);
  return {
    servingCertPem: text('tls.crt'),
    servingKeyPem: text('tls.key'),
    caCertPem: text('ca.crt'),
    caKeyPem: text('ca.key'),
    previousCaCertPem: text('ca-previous.crt'),
    previousCaUntil: untilDate === undefined || Number.isNaN(untilDate.getTime()) ? undefined : untilDate,
  };
}

/**
 * The Secret to write. On update it carries the existing metadata, resourceVersion included, so the
 * write fails with a conflict if another run changed the Secret since it was read.
 */
export function secretManifest(
  namespace: string,
  name: string,
  stored: StoredCertificates,
  existing?: V1Secret,
): V1Secret {
  const data: Record<string, string> = {};
  const put = (key: string, value: string | undefined): void => {
    if (value !== undefined) data[key] = Buffer.from(value, 'utf8').toString('base64');
  };
  put('tls.crt', stored.servingCertPem);
  put('tls.key', stored.servingKeyPem);
  put('ca.crt', stored.caCertPem);
  put('ca.key', stored.caKeyPem);
  put('ca-previous.crt', stored.previousCaCertPem);
  const { [PREVIOUS_CA_UNTIL_ANNOTATION]: _dropped, ...otherAnnotations } = existing?.metadata?.annotations ?? {};
  const annotations =
    stored.previousCaUntil === undefined
      ? otherAnnotations
      : { ...otherAnnotations, [PREVIOUS_CA_UNTIL_ANNOTATION]: stored.previousCaUntil.toISOString() };
  const { managedFields: _managed, ...metadata } = existing?.metadata ?? { name, namespace };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      ...metadata,
      name,
      namespace,
      labels: { ...metadata.labels, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
      annotations,
    },
    type: 'kubernetes.io/tls',
    data,
  };
}

/** Short form of a sha256 fingerprint for messages: the first 8 bytes. */
export function shortFingerprint(fingerprint: string): string {
  return fingerprint.slice(0, 23);
}

// ---------------------------------------------------------------------------------------------

type ServingRead = { ok: true; pair: PemPair } | { ok: false; reason: string };

function servingPair(stored: StoredCertificates): ServingRead {
  if (stored.servingCertPem === undefined) return { ok: false, reason: 'tls.crt is missing' };
  if (stored.servingKeyPem === undefined) return { ok: false, reason: 'tls.key is missing' };
  return { ok: true, pair: { certPem: stored.servingCertPem, keyPem: stored.servingKeyPem } };
}

function notOk(read: ServingRead): { ok: false; reason: string } {
  return { ok: false, reason: read.ok ? 'ca.crt is missing' : read.reason };
}

type CaCheck = { usable: true; info: CertificateInfo } | { usable: false; reason: string };

function checkCa(stored: StoredCertificates, now: Date): CaCheck {
  if (stored.caCertPem === undefined) return { usable: false, reason: 'ca.crt is missing' };
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(stored.caCertPem);
  } catch {
    return { usable: false, reason: 'ca.crt is not a PEM certificate' };
  }
  if (!cert.ca) return { usable: false, reason: 'ca.crt is not a CA certificate' };
  if (now < cert.validFromDate)
    return { usable: false, reason: `ca.crt is not valid until ${cert.validFromDate.toISOString()}` };
  if (now > cert.validToDate) return { usable: false, reason: `ca.crt expired at ${cert.validToDate.toISOString()}` };
  if (stored.caKeyPem === undefined) return { usable: false, reason: 'ca.key is missing' };
  try {
    if (!cert.checkPrivateKey(createPrivateKey(stored.caKeyPem)))
      return { usable: false, reason: 'ca.key does not belong to ca.crt' };
  } catch {
    return { usable: false, reason: 'ca.key is not a PEM private key' };
  }
  return { usable: true, info: inspectCertificate(stored.caCertPem) };
}

// Mirrors generate.ts: notAfter is now (to the second) plus the validity, and may not pass the CA's.
function servingWouldFit(ca: CertificateInfo, validityDays: number, now: Date): boolean {
  return Math.floor(now.getTime() / 1000) * 1000 + validityDays * DAY_MS <= ca.notAfter.getTime();
}

function previousRetired(
  previousPem: string,
  stored: StoredCertificates,
  ca: CertificateInfo,
  now: Date,
): string | undefined {
  let previous: CertificateInfo;
  try {
    previous = inspectCertificate(previousPem);
  } catch {
    return 'ca-previous.crt is not a PEM certificate';
  }
  if (previous.fingerprintSha256 === ca.fingerprintSha256) return 'ca-previous.crt is the current CA';
  if (now > previous.notAfter) return `the previous CA expired at ${previous.notAfter.toISOString()}`;
  if (stored.previousCaUntil === undefined)
    return `no ${PREVIOUS_CA_UNTIL_ANNOTATION} annotation says how long to keep it`;
  if (now >= stored.previousCaUntil)
    return `the previous CA was to be kept until ${stored.previousCaUntil.toISOString()}`;
  return undefined;
}

function issue(ca: PemPair, want: Wanted, now: Date): PemPair {
  return generateServingCertificate(ca, {
    dnsNames: want.dnsNames,
    ipAddresses: want.ipAddresses,
    validityDays: want.validityDays,
    now,
  });
}

function currentCa(stored: StoredCertificates): PemPair {
  return { certPem: stored.caCertPem ?? '', keyPem: stored.caKeyPem ?? '' };
}

function fromPairs(
  serving: PemPair,
  ca: PemPair,
  previousCaCertPem: string | undefined,
  previousCaUntil: Date | undefined,
): StoredCertificates {
  return {
    servingCertPem: serving.certPem,
    servingKeyPem: serving.keyPem,
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    previousCaCertPem,
    previousCaUntil,
  };
}

function required(stored: StoredCertificates | undefined): StoredCertificates {
  if (stored === undefined) throw new Error('no stored certificates to change');
  return stored;
}
