// Pure certificate generation and inspection for the webhook's TLS: no file or network I/O and no
// clock (callers pass `now`); key randomness is the only hidden input.
//
// Writing uses node-forge; reading and verifying use Node's OpenSSL-backed X509Certificate, so a
// certificate we did not issue (any key type) can still be inspected, and everything forge writes
// is checked by an independent parser.
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { SocketAddress, isIP } from 'node:net';
import forge from 'node-forge';

export interface PemPair {
  certPem: string;
  /** PKCS#8 (`-----BEGIN PRIVATE KEY-----`), which Node's tls and OpenSSL read directly. */
  keyPem: string;
}

export interface CaOptions {
  commonName?: string;
  validityDays: number;
  now: Date;
}

export interface ServingOptions {
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  validityDays: number;
  now: Date;
  commonName?: string;
}

export interface CertificateInfo {
  notBefore: Date;
  notAfter: Date;
  /** As written in the certificate. */
  dnsNames: string[];
  /** Canonical text form (RFC 5952 for IPv6, e.g. `::1`), so they compare with user input. */
  ipAddresses: string[];
  isCa: boolean;
  subjectCommonName: string | undefined;
  /** Colon-separated uppercase hex, the format of `openssl x509 -fingerprint -sha256`. */
  fingerprintSha256: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
// Backdating absorbs clock skew between this host and the apiserver / clients.
const CLOCK_SKEW_MS = 5 * 60 * 1000;
const RSA_BITS = 2048;
const DEFAULT_CA_COMMON_NAME = 'acr-pull-webhook-ca';
// Clients match names against the SANs only; the CN just labels the certificate for humans.
const DEFAULT_SERVING_COMMON_NAME = 'acr-pull-webhook';
// Four-digit years are all X.509 GeneralizedTime can hold.
const LATEST_NOT_AFTER = Date.UTC(9999, 11, 31, 23, 59, 59);
const DNS_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

export function generateCa(opts: CaOptions): PemPair {
  const { notBefore, notAfter } = validityWindow(opts.now, opts.validityDays);
  const key = newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.forgePublic;
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const name = [{ name: 'commonName', value: opts.commonName ?? DEFAULT_CA_COMMON_NAME }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    // pathLen 0: this CA signs serving certificates only, never another CA.
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key.forgePrivate, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.pkcs8Pem };
}

export function generateServingCertificate(ca: PemPair, opts: ServingOptions): PemPair {
  const { notBefore, notAfter } = validityWindow(opts.now, opts.validityDays);
  const altNames = subjectAltNames(opts.dnsNames, opts.ipAddresses);

  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  if (!isForgeCa(caCert)) throw new Error('CA certificate is not a CA (basicConstraints cA is not set)');
  if (!caKey.n.equals((caCert.publicKey as forge.pki.rsa.PublicKey).n)) {
    throw new Error('CA key does not match the CA certificate');
  }
  // A leaf that outlives its issuer stops verifying early, without anything saying why.
  if (notAfter > caCert.validity.notAfter) {
    throw new Error(
      `serving certificate would expire after its CA (CA notAfter ${caCert.validity.notAfter.toISOString()})`,
    );
  }

  const key = newRsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = key.forgePublic;
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: 'commonName', value: opts.commonName ?? DEFAULT_SERVING_COMMON_NAME }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    // forge's `keyIdentifier: true` would use the leaf's own key, so pass the CA's explicitly.
    { name: 'authorityKeyIdentifier', keyIdentifier: caKeyIdentifier(caCert) },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: key.pkcs8Pem };
}

/** Throws, as generation would, when the names cannot go into a serving certificate; generates nothing. */
export function checkSubjectAltNames(dnsNames: readonly string[], ipAddresses: readonly string[]): void {
  subjectAltNames(dnsNames, ipAddresses);
}

/** The names a client inside the cluster may use for a Service: short, namespaced and fully qualified. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

export function inspectCertificate(certPem: string): CertificateInfo {
  const x509 = new X509Certificate(certPem);
  const { dnsNames, ipAddresses } = parseSubjectAltName(x509.subjectAltName);
  return {
    notBefore: x509.validFromDate,
    notAfter: x509.validToDate,
    dnsNames,
    ipAddresses,
    isCa: x509.ca,
    subjectCommonName: x509.subject
      .split('\n')
      .find((line) => line.startsWith('CN='))
      ?.slice('CN='.length),
    fingerprintSha256: x509.fingerprint256,
  };
}

export function verifyServingPair(
  pair: PemPair,
  caCertPem: string,
  now: Date,
): { ok: true } | { ok: false; reason: string } {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(pair.certPem);
    ca = new X509Certificate(caCertPem);
  } catch (error) {
    return { ok: false, reason: `cannot parse certificate: ${messageOf(error)}` };
  }
  if (!ca.ca) return { ok: false, reason: 'the given CA certificate is not a CA' };
  // checkIssued compares names, key identifiers and the issuer's key usage; verify checks the signature.
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    return { ok: false, reason: 'certificate was not issued by the given CA' };
  }
  try {
    if (!cert.checkPrivateKey(createPrivateKey(pair.keyPem))) {
      return { ok: false, reason: 'private key does not match the certificate' };
    }
  } catch (error) {
    return { ok: false, reason: `cannot use private key: ${messageOf(error)}` };
  }
  for (const [what, c] of [
    ['certificate', cert],
    ['CA certificate', ca],
  ] as const) {
    if (now < c.validFromDate)
      return { ok: false, reason: `${what} is not valid until ${c.validFromDate.toISOString()}` };
    if (now > c.validToDate) return { ok: false, reason: `${what} expired at ${c.validToDate.toISOString()}` };
  }
  return { ok: true };
}

export function needsRenewal(
  pair: PemPair,
  caCertPem: string,
  want: { dnsNames: readonly string[]; ipAddresses: readonly string[] },
  now: Date,
): { renew: false } | { renew: true; reason: string } {
  const verified = verifyServingPair(pair, caCertPem, now);
  if (!verified.ok) return { renew: true, reason: verified.reason };

  const info = inspectCertificate(pair.certPem);
  const have = nameSet(info.dnsNames, info.ipAddresses);
  const wanted = nameSet(want.dnsNames, want.ipAddresses);
  if (have.size !== wanted.size || [...wanted].some((name) => !have.has(name))) {
    return { renew: true, reason: `names changed: have [${[...have].join(', ')}], want [${[...wanted].join(', ')}]` };
  }

  // Renewing with a third of the lifetime left leaves room for several failed attempts before expiry.
  const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
  const left = info.notAfter.getTime() - now.getTime();
  if (left < lifetime / 3) {
    return { renew: true, reason: `less than a third of the validity left (expires ${info.notAfter.toISOString()})` };
  }
  return { renew: false };
}

function validityWindow(now: Date, validityDays: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isInteger(validityDays) || validityDays < 1) {
    throw new Error(`validity must be a positive whole number of days, got ${validityDays}`);
  }
  // X.509 times have whole seconds; truncating here makes the stored dates exactly predictable.
  const start = Math.floor(now.getTime() / 1000) * 1000;
  if (Number.isNaN(start)) throw new Error('now is not a valid date');
  const notAfter = start + validityDays * DAY_MS;
  if (notAfter > LATEST_NOT_AFTER) throw new Error(`validity of ${validityDays} days ends after the year 9999`);
  return { notBefore: new Date(start - CLOCK_SKEW_MS), notAfter: new Date(notAfter) };
}

interface RsaKey {
  pkcs8Pem: string;
  forgePrivate: forge.pki.rsa.PrivateKey;
  forgePublic: forge.pki.rsa.PublicKey;
}

// Native keygen: forge's pure-JS RSA takes seconds per key.
function newRsaKey(): RsaKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: RSA_BITS,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    pkcs8Pem: privateKey,
    forgePrivate: forge.pki.privateKeyFromPem(privateKey),
    forgePublic: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey,
  };
}

// 16 random bytes, positive. forge writes the hex verbatim as the DER INTEGER, so a leading zero
// byte would be non-minimal DER, which OpenSSL rejects: setting bit 6 rules it out (126 random bits).
function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

interface ForgeAltName {
  type: number;
  value: string;
}

function subjectAltNames(dnsNames: readonly string[], ipAddresses: readonly string[]): ForgeAltName[] {
  if (dnsNames.length === 0 && ipAddresses.length === 0) {
    throw new Error('a serving certificate needs at least one DNS name or IP address');
  }
  const dns = dnsNames.map((name) => {
    if (name.length > 253 || !DNS_NAME.test(name)) throw new Error(`invalid DNS name: ${JSON.stringify(name)}`);
    return { type: 2, value: name };
  });
  const ips = ipAddresses.map((ip) => ({ type: 7, value: String.fromCharCode(...ipBytes(ip)) }));
  return [...dns, ...ips];
}

// Built by hand: forge's own IPv6 parser mishandles embedded IPv4 (::ffff:1.2.3.4) and
// silently wraps out-of-range IPv4 octets.
function ipBytes(ip: string): number[] {
  const family = ip.includes('%') ? 0 : isIP(ip);
  if (family === 4) return ip.split('.').map(Number);
  if (family !== 6) throw new Error(`invalid IP address: ${JSON.stringify(ip)}`);
  const v4Tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const hex = v4Tail
    ? ip.slice(0, v4Tail.index) +
      [1, 3].map((i) => ((Number(v4Tail[i]) << 8) | Number(v4Tail[i + 1])).toString(16)).join(':')
    : ip;
  const [head = '', tail] = hex.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].flatMap((group) => {
    const n = parseInt(group, 16);
    return [n >> 8, n & 0xff];
  });
}

function isForgeCa(cert: forge.pki.Certificate): boolean {
  const bc = cert.getExtension('basicConstraints') as { cA?: boolean } | undefined;
  return bc?.cA === true;
}

function caKeyIdentifier(caCert: forge.pki.Certificate): string {
  const ski = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  return ski?.subjectKeyIdentifier !== undefined
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : caCert.generateSubjectKeyIdentifier().getBytes();
}

// Node renders SANs as `DNS:a, IP Address:1.2.3.4`, JSON-quoting values that contain separators.
function parseSubjectAltName(san: string | undefined): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const match of (san ?? '').matchAll(/([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const [, type, raw = ''] = match;
    const value = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    if (type === 'DNS') dnsNames.push(value);
    else if (type === 'IP Address') ipAddresses.push(canonicalIp(value));
  }
  return { dnsNames, ipAddresses };
}

function canonicalIp(ip: string): string {
  return isIP(ip) === 6 ? new SocketAddress({ address: ip, family: 'ipv6' }).address : ip;
}

// DNS names compare case-insensitively; IPs by canonical form.
function nameSet(dnsNames: readonly string[], ipAddresses: readonly string[]): Set<string> {
  return new Set([
    ...dnsNames.map((name) => `DNS:${name.toLowerCase()}`),
    ...ipAddresses.map((ip) => `IP:${canonicalIp(ip)}`),
  ]);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
