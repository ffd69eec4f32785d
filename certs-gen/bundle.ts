// The `patch` verb's decisions, pure: which CAs the caBundle of every webhook must hold, and which
// webhooks need a change. The Secret is the only source: its ca.crt (signs the serving certificate
// now or soon) and, during a rotation, its ca-previous.crt (signed the serving certificate that may
// still be in use). Whatever else a bundle holds is dropped, so a CA retired from the Secret stops
// being trusted at the next patch instead of lingering until it expires.
import { X509Certificate } from 'node:crypto';

export interface BundleCa {
  readonly fingerprintSha256: string;
  readonly notAfter: Date;
  /** PEM with \n line ends, as X509Certificate prints it. */
  readonly pem: string;
}

export interface DesiredBundle {
  /** Current CA first, then the previous one; no duplicates, nothing expired. */
  readonly cas: readonly BundleCa[];
  /** base64 of the concatenated PEMs: the value of clientConfig.caBundle. */
  readonly caBundle: string;
}

export class BundleError extends Error {
  override name = 'BundleError';
}

/** Throws BundleError when the Secret has no CA the apiserver could use. */
export function desiredBundle(
  cas: { current: string | undefined; previous: string | undefined },
  now: Date,
): DesiredBundle {
  if (cas.current === undefined) throw new BundleError('has no ca.crt');
  const current = parseCa(cas.current);
  if (current === undefined) throw new BundleError('ca.crt is not a PEM CA certificate');
  if (now > current.notAfter) throw new BundleError(`ca.crt expired at ${current.notAfter.toISOString()}`);
  const chosen = [current];
  const previous = cas.previous === undefined ? undefined : parseCa(cas.previous);
  // An expired CA verifies nothing; a duplicate only makes the bundle longer.
  if (previous !== undefined && now <= previous.notAfter && previous.fingerprintSha256 !== current.fingerprintSha256) {
    chosen.push(previous);
  }
  return { cas: chosen, caBundle: Buffer.from(chosen.map((ca) => ca.pem).join(''), 'utf8').toString('base64') };
}

/** The CA certificates in a caBundle (base64 of PEMs); anything that does not parse is skipped. */
export function bundleCas(caBundle: string | undefined): BundleCa[] {
  if (caBundle === undefined || caBundle === '') return [];
  const text = Buffer.from(caBundle, 'base64').toString('utf8');
  const found: BundleCa[] = [];
  for (const match of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) {
    const ca = parseCa(match[0]);
    if (ca !== undefined) found.push(ca);
  }
  return found;
}

export interface WebhookBundle {
  readonly name: string;
  readonly caBundle: string | undefined;
}

export interface BundlePlan {
  /** Webhooks whose caBundle must be set to the desired one. */
  readonly change: readonly string[];
  readonly unchanged: readonly string[];
}

/** A bundle already holding exactly the desired CAs, in any order or formatting, is left alone. */
export function planCaBundles(webhooks: readonly WebhookBundle[], desired: DesiredBundle): BundlePlan {
  const want = new Set(desired.cas.map((ca) => ca.fingerprintSha256));
  const change: string[] = [];
  const unchanged: string[] = [];
  for (const webhook of webhooks) {
    const have = bundleCas(webhook.caBundle).map((ca) => ca.fingerprintSha256);
    const same = have.length === want.size && have.every((fingerprint) => want.has(fingerprint));
    (same ? unchanged : change).push(webhook.name);
  }
  return { change, unchanged };
}

/** Fingerprints of the CAs that every webhook's caBundle holds (what the apiserver trusts for all of them). */
export function trustedByEvery(webhooks: readonly WebhookBundle[]): Set<string> {
  const [first, ...rest] = webhooks.map(
    (webhook) => new Set(bundleCas(webhook.caBundle).map((ca) => ca.fingerprintSha256)),
  );
  if (first === undefined) return new Set();
  return new Set([...first].filter((fingerprint) => rest.every((set) => set.has(fingerprint))));
}

function parseCa(pem: string): BundleCa | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch {
    return undefined;
  }
  if (!cert.ca) return undefined;
  return { fingerprintSha256: cert.fingerprint256, notAfter: cert.validToDate, pem: cert.toString() };
}
