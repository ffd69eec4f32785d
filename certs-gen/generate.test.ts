import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import {
  generateCa,
  generateServingCertificate,
  inspectCertificate,
  needsRenewal,
  serviceDnsNames,
  verifyServingPair,
  type PemPair,
} from './generate.ts';

const DAY = 24 * 60 * 60 * 1000;
const now = new Date('2026-03-01T12:00:00.000Z');
const names = { dnsNames: ['localhost', 'webhook.acr.svc'], ipAddresses: ['127.0.0.1', '::1'] };

// Key generation dominates the run time, so every test shares these few pairs.
const ca = generateCa({ validityDays: 3650, now });
const otherCa = generateCa({ validityDays: 3650, now });
const serving = generateServingCertificate(ca, { ...names, validityDays: 90, now });
const sibling = generateServingCertificate(ca, { ...names, validityDays: 90, now });

function extension(certPem: string, name: string): Record<string, unknown> {
  const found = forge.pki.certificateFromPem(certPem).getExtension(name);
  if (found === undefined) throw new Error(`no ${name} extension`);
  return found as Record<string, unknown>;
}

describe('generateCa', () => {
  it.each([
    ['basicConstraints', { critical: true, cA: true, pathLenConstraint: 0 }],
    ['keyUsage', { critical: true, keyCertSign: true, cRLSign: true, digitalSignature: false }],
    ['subjectKeyIdentifier', { subjectKeyIdentifier: expect.stringMatching(/^[0-9a-f]{40}$/) }],
  ])('writes the %s extension as %o', (name, expected) => {
    expect(extension(ca.certPem, name)).toMatchObject(expected);
  });

  it('is self-signed with sha256 and names itself acr-pull-webhook-ca unless told otherwise', () => {
    const cert = new X509Certificate(ca.certPem);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(forge.pki.oids[forge.pki.certificateFromPem(ca.certPem).signatureOid]).toBe('sha256WithRSAEncryption');
    expect(inspectCertificate(ca.certPem)).toMatchObject({ isCa: true, subjectCommonName: 'acr-pull-webhook-ca' });
    expect(inspectCertificate(otherCa.certPem).fingerprintSha256).not.toBe(
      inspectCertificate(ca.certPem).fingerprintSha256,
    );
  });

  it('takes a custom common name', () => {
    const custom = generateCa({ commonName: 'my test CA', validityDays: 1, now });
    expect(inspectCertificate(custom.certPem).subjectCommonName).toBe('my test CA');
  });
});

describe('generateServingCertificate', () => {
  it.each([
    ['basicConstraints', { critical: true, cA: false }],
    ['keyUsage', { critical: true, digitalSignature: true, keyEncipherment: true, keyCertSign: false }],
    ['extKeyUsage', { serverAuth: true }],
    ['subjectKeyIdentifier', { subjectKeyIdentifier: expect.stringMatching(/^[0-9a-f]{40}$/) }],
  ])('writes the %s extension as %o', (name, expected) => {
    expect(extension(serving.certPem, name)).toMatchObject(expected);
  });

  it("points its authorityKeyIdentifier at the CA's subjectKeyIdentifier", () => {
    const aki = forge.asn1.fromDer(extension(serving.certPem, 'authorityKeyIdentifier')['value'] as string);
    const keyIdentifier = (aki.value as forge.asn1.Asn1[])[0]?.value as string;
    expect(forge.util.bytesToHex(keyIdentifier)).toBe(
      extension(ca.certPem, 'subjectKeyIdentifier')['subjectKeyIdentifier'],
    );
  });

  it('lists exactly the requested DNS names and IP addresses as SANs', () => {
    expect(inspectCertificate(serving.certPem)).toMatchObject({
      dnsNames: ['localhost', 'webhook.acr.svc'],
      ipAddresses: ['127.0.0.1', '::1'],
      isCa: false,
      subjectCommonName: 'acr-pull-webhook',
    });
  });

  it.each([
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['FE80::1:0:0:ABCD', 'fe80::1:0:0:abcd'],
    ['2001:db8::', '2001:db8::'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['10.96.0.1', '10.96.0.1'],
  ])('stores IP %s so that it reads back as %s', (input, canonical) => {
    const cert = generateServingCertificate(ca, { dnsNames: [], ipAddresses: [input], validityDays: 1, now });
    expect(inspectCertificate(cert.certPem).ipAddresses).toEqual([canonical]);
  });

  it('is issued and signed by the CA with sha256, with a 2048-bit RSA key in PKCS#8', () => {
    const cert = new X509Certificate(serving.certPem);
    const issuer = new X509Certificate(ca.certPem);
    expect(cert.checkIssued(issuer)).toBe(true);
    expect(cert.verify(issuer.publicKey)).toBe(true);
    expect(forge.pki.oids[forge.pki.certificateFromPem(serving.certPem).signatureOid]).toBe('sha256WithRSAEncryption');
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBeGreaterThanOrEqual(2048);
    expect(serving.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it('gives every certificate a different positive 16-byte serial number', () => {
    const serials = [ca, otherCa, serving, sibling].map((pair) => new X509Certificate(pair.certPem).serialNumber);
    expect(new Set(serials).size).toBe(4);
    for (const serial of serials) expect(serial).toMatch(/^[4-7][0-9A-F]{31}$/);
  });

  it.each([
    ['no names at all', { dnsNames: [], ipAddresses: [] }, /at least one DNS name or IP address/],
    ['a DNS name with a space', { dnsNames: ['bad name'] }, /invalid DNS name: "bad name"/],
    ['an empty DNS name', { dnsNames: [''] }, /invalid DNS name: ""/],
    ['an IPv4 octet above 255', { ipAddresses: ['10.0.0.256'] }, /invalid IP address: "10.0.0.256"/],
    ['an IPv6 zone', { ipAddresses: ['fe80::1%eth0'] }, /invalid IP address/],
    ['zero days of validity', { validityDays: 0 }, /positive whole number of days, got 0/],
    ['fractional days of validity', { validityDays: 1.5 }, /positive whole number of days, got 1.5/],
    [
      'a validity longer than the CA',
      { validityDays: 3651 },
      /would expire after its CA \(CA notAfter 2036-02-27T12:00:00.000Z\)/,
    ],
  ])('refuses %s', (_case, override, message) => {
    expect(() => generateServingCertificate(ca, { ...names, validityDays: 30, now, ...override })).toThrow(message);
  });

  it.each([
    ['a leaf certificate as the CA', serving, /not a CA/],
    ["another CA's key", { certPem: ca.certPem, keyPem: otherCa.keyPem }, /CA key does not match the CA certificate/],
  ])('refuses %s', (_case, badCa, message) => {
    expect(() => generateServingCertificate(badCa, { ...names, validityDays: 30, now })).toThrow(message);
  });
});

describe('validity dates', () => {
  it.each([
    ['a CA for 3650 days', () => ca, '2026-03-01T11:55:00.000Z', '2036-02-27T12:00:00.000Z'],
    ['a serving certificate for 90 days', () => serving, '2026-03-01T11:55:00.000Z', '2026-05-30T12:00:00.000Z'],
    [
      'a serving certificate for 1 day from a time with milliseconds (truncated to the second)',
      () => generateServingCertificate(ca, { ...names, validityDays: 1, now: new Date('2026-03-01T12:00:00.999Z') }),
      '2026-03-01T11:55:00.000Z',
      '2026-03-02T12:00:00.000Z',
    ],
    [
      'a CA reaching past 2049, where X.509 switches to GeneralizedTime',
      () => generateCa({ validityDays: 36500, now }),
      '2026-03-01T11:55:00.000Z',
      '2126-02-05T12:00:00.000Z',
    ],
  ])('%s starts 5 minutes before now at %s and ends at %s', (_case, make: () => PemPair, notBefore, notAfter) => {
    const info = inspectCertificate(make().certPem);
    expect(info.notBefore.toISOString()).toBe(notBefore);
    expect(info.notAfter.toISOString()).toBe(notAfter);
  });
});

describe('serviceDnsNames', () => {
  it('lists the short, namespaced, .svc and fully qualified names of a Service', () => {
    expect(serviceDnsNames('acr-pull-webhook', 'kube-system')).toEqual([
      'acr-pull-webhook',
      'acr-pull-webhook.kube-system',
      'acr-pull-webhook.kube-system.svc',
      'acr-pull-webhook.kube-system.svc.cluster.local',
    ]);
  });
});

describe('verifyServingPair', () => {
  const at = (offset: number) => new Date(now.getTime() + offset);
  it.each([
    ['a fresh pair against its own CA', serving, ca.certPem, at(0), undefined],
    ['a pair inside the 5-minute backdating', serving, ca.certPem, at(-4 * 60 * 1000), undefined],
    ['a pair on its last day', serving, ca.certPem, at(89 * DAY), undefined],
    [
      'a pair before its notBefore',
      serving,
      ca.certPem,
      at(-6 * 60 * 1000),
      /not valid until 2026-03-01T11:55:00.000Z/,
    ],
    [
      'a pair after its notAfter',
      serving,
      ca.certPem,
      at(90 * DAY + 1000),
      /^certificate expired at 2026-05-30T12:00:00.000Z/,
    ],
    ['a pair against another CA', serving, otherCa.certPem, at(0), /not issued by the given CA/],
    [
      'a certificate with the key of its sibling',
      { ...serving, keyPem: sibling.keyPem },
      ca.certPem,
      at(0),
      /private key does not match/,
    ],
    ['a leaf passed as the CA', serving, sibling.certPem, at(0), /not a CA/],
    [
      'a certificate that is not PEM',
      { ...serving, certPem: 'garbage' },
      ca.certPem,
      at(0),
      /cannot parse certificate/,
    ],
    ['a key that is not PEM', { ...serving, keyPem: 'garbage' }, ca.certPem, at(0), /cannot use private key/],
  ])('%s', (_case, pair: PemPair, caPem: string, when: Date, failure: RegExp | undefined) => {
    const result = verifyServingPair(pair, caPem, when);
    if (failure === undefined) expect(result).toEqual({ ok: true });
    else expect(result).toEqual({ ok: false, reason: expect.stringMatching(failure) });
  });

  it('fails while the CA itself is not yet valid, even though the leaf is', () => {
    const futureCa = generateCa({ validityDays: 10, now: new Date(now.getTime() + DAY) });
    const leaf = generateServingCertificate(futureCa, { ...names, validityDays: 1, now });
    expect(verifyServingPair(leaf, futureCa.certPem, now)).toEqual({
      ok: false,
      reason: 'CA certificate is not valid until 2026-03-02T11:55:00.000Z',
    });
  });
});

describe('needsRenewal', () => {
  const at = (days: number) => new Date(now.getTime() + days * DAY);
  // Lifetime is 90 days + 5 minutes, so renewal starts a little over 30 days before notAfter.
  it.each([
    ['a fresh pair with the same names', serving, ca.certPem, names, at(0), undefined],
    [
      'the same names in another order and case',
      serving,
      ca.certPem,
      { dnsNames: ['WEBHOOK.acr.svc', 'localhost'], ipAddresses: ['0:0::1', '127.0.0.1'] },
      at(0),
      undefined,
    ],
    ['a pair with 31 days left', serving, ca.certPem, names, at(59), undefined],
    [
      'a pair with 29 days left',
      serving,
      ca.certPem,
      names,
      at(61),
      /less than a third of the validity left \(expires 2026-05-30T12:00:00.000Z\)/,
    ],
    ['an expired pair', serving, ca.certPem, names, at(91), /expired at/],
    [
      'a pair missing a wanted DNS name',
      serving,
      ca.certPem,
      { ...names, dnsNames: [...names.dnsNames, 'extra.example'] },
      at(0),
      /^names changed: .*want \[.*DNS:extra.example/,
    ],
    [
      'a pair with a DNS name no longer wanted',
      serving,
      ca.certPem,
      { ...names, dnsNames: ['localhost'] },
      at(0),
      /^names changed/,
    ],
    [
      'a pair with a different IP address',
      serving,
      ca.certPem,
      { ...names, ipAddresses: ['127.0.0.2', '::1'] },
      at(0),
      /^names changed/,
    ],
    ['a pair from another CA', serving, otherCa.certPem, names, at(0), /not issued by the given CA/],
    [
      'a pair with a mismatched key',
      { ...serving, keyPem: sibling.keyPem },
      ca.certPem,
      names,
      at(0),
      /private key does not match/,
    ],
    ['an unparseable certificate', { ...serving, certPem: '' }, ca.certPem, names, at(0), /cannot parse certificate/],
  ])('%s', (_case, pair: PemPair, caPem: string, want, when: Date, reason: RegExp | undefined) => {
    const result = needsRenewal(pair, caPem, want, when);
    if (reason === undefined) expect(result).toEqual({ renew: false });
    else expect(result).toEqual({ renew: true, reason: expect.stringMatching(reason) });
  });

  it('renews exactly when less than a third of the lifetime is left, at any moment of validity', () => {
    const { notBefore, notAfter } = inspectCertificate(serving.certPem);
    const lifetime = notAfter.getTime() - notBefore.getTime();
    fc.assert(
      fc.property(fc.date({ min: notBefore, max: notAfter, noInvalidDate: true }), (when) => {
        const left = notAfter.getTime() - when.getTime();
        expect(needsRenewal(serving, ca.certPem, names, when).renew).toBe(left < lifetime / 3);
      }),
    );
  });
});
