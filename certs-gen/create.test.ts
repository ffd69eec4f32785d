import { describe, expect, it } from 'vitest';
import {
  PREVIOUS_CA_UNTIL_ANNOTATION,
  carryOut,
  decideCreate,
  ownershipProblem,
  secretManifest,
  storedFromSecret,
  type StoredCertificates,
  type Wanted,
} from './create.ts';
import {
  generateCa,
  generateServingCertificate,
  inspectCertificate,
  verifyServingPair,
  type PemPair,
} from './generate.ts';

const DAY = 24 * 60 * 60 * 1000;
const now = new Date('2026-03-01T12:00:00.000Z');
const daysAgo = (days: number) => new Date(now.getTime() - days * DAY);
const later = (ms: number) => new Date(now.getTime() + ms);

const names = ['hook', 'hook.ns', 'hook.ns.svc', 'hook.ns.svc.cluster.local'];
const want: Wanted = { dnsNames: names, ipAddresses: [], validityDays: 30 };
const leaf = (ca: PemPair, issued: Date, dnsNames = names, validityDays = 30) =>
  generateServingCertificate(ca, { dnsNames, ipAddresses: [], validityDays, now: issued });

// Key generation dominates, so the table shares these few. CAs live 10 × 30 days, as create makes them.
const ca = generateCa({ validityDays: 300, now });
const newCa = generateCa({ validityDays: 300, now });
const agingCa = generateCa({ validityDays: 300, now: daysAgo(250) }); // 50 days left: under a third
const expiredCa = generateCa({ validityDays: 10, now: daysAgo(20) });
const fresh = leaf(ca, now);
const nearExpiry = leaf(ca, daysAgo(25)); // 5 of 30 days left
const otherNames = leaf(ca, now, ['hook', 'elsewhere.example']);
const fromAging = leaf(agingCa, now);
const expiredFromAging = leaf(agingCa, daysAgo(40));
const fromNew = leaf(newCa, now);

function stored(
  serving: PemPair | undefined,
  current: PemPair,
  extra: Partial<StoredCertificates> = {},
): StoredCertificates {
  return {
    servingCertPem: serving?.certPem,
    servingKeyPem: serving?.keyPem,
    caCertPem: current.certPem,
    caKeyPem: current.keyPem,
    previousCaCertPem: undefined,
    previousCaUntil: undefined,
    ...extra,
  };
}
const fingerprint = (pair: PemPair) => inspectCertificate(pair.certPem).fingerprintSha256;
// Mid-rotation: the new CA is current, the aging one is previous.
const staged = stored(fromAging, newCa, { previousCaCertPem: agingCa.certPem });
const switched = (until: Date | undefined) =>
  stored(fromNew, newCa, { previousCaCertPem: agingCa.certPem, previousCaUntil: until });

describe('decideCreate', () => {
  it.each<
    [
      string,
      StoredCertificates | undefined,
      Partial<Wanted>,
      ReadonlySet<string> | undefined,
      string,
      RegExp | undefined,
    ]
  >([
    [
      'no Secret yet: create a CA and a serving certificate',
      undefined,
      {},
      undefined,
      'create',
      /the Secret does not exist/,
    ],
    ['a valid pair with the wanted names: keep it', stored(fresh, ca), {}, undefined, 'keep', undefined],
    [
      'a valid pair whose CA every caBundle trusts: keep it',
      stored(fresh, ca),
      {},
      new Set([fingerprint(ca)]),
      'keep',
      undefined,
    ],
    [
      'a pair with less than a third of its validity left: renew it from the same CA',
      stored(nearExpiry, ca),
      {},
      undefined,
      'renew-serving',
      /less than a third of the validity left/,
    ],
    ['a pair for other names: renew it', stored(otherNames, ca), {}, undefined, 'renew-serving', /^names changed/],
    [
      'a tls.key of another certificate: renew',
      stored({ ...fresh, keyPem: nearExpiry.keyPem }, ca),
      {},
      undefined,
      'renew-serving',
      /private key does not match/,
    ],
    ['no tls.crt: renew', stored(undefined, ca), {}, undefined, 'renew-serving', /tls.crt is missing/],
    [
      'a tls.crt from a CA the Secret does not hold: renew',
      stored(fromNew, ca),
      {},
      undefined,
      'renew-serving',
      /not issued by the given CA/,
    ],
    [
      'a renewal due while the caBundle does not trust the CA: wait for patch',
      stored(nearExpiry, ca),
      {},
      new Set([fingerprint(newCa)]),
      'wait-for-bundle',
      /less than a third.*run patch first/,
    ],
    [
      'an expired CA: replace everything',
      stored(leaf(expiredCa, daysAgo(19), names, 5), expiredCa),
      {},
      undefined,
      'replace-all',
      /ca.crt expired at/,
    ],
    [
      'a ca.crt that is not PEM: replace everything',
      stored(fresh, { certPem: 'garbage', keyPem: ca.keyPem }),
      {},
      undefined,
      'replace-all',
      /ca.crt is not a PEM certificate/,
    ],
    [
      'a ca.crt that is a leaf: replace everything',
      stored(fresh, fresh),
      {},
      undefined,
      'replace-all',
      /ca.crt is not a CA certificate/,
    ],
    [
      'a broken pair when the CA ends before a new pair would: replace everything',
      stored(undefined, ca),
      { validityDays: 400 },
      undefined,
      'replace-all',
      /CA ends before/,
    ],
    [
      'a lost ca.key while the pair still verifies: stage a new CA, keeping the pair',
      stored(fresh, { certPem: ca.certPem, keyPem: '' }, { caKeyPem: undefined }),
      {},
      undefined,
      'stage-ca',
      /ca.key is missing/,
    ],
    [
      'a ca.key of another CA: stage a new CA',
      stored(fresh, { certPem: ca.certPem, keyPem: newCa.keyPem }),
      {},
      undefined,
      'stage-ca',
      /ca.key does not belong to ca.crt/,
    ],
    [
      'a CA with less than a third of its validity left: stage a new CA',
      stored(fromAging, agingCa),
      {},
      undefined,
      'stage-ca',
      /less than a third of the CA's validity left/,
    ],
    [
      'a renewal that would outlive the CA: stage a new CA',
      stored(nearExpiry, ca),
      { validityDays: 400 },
      undefined,
      'stage-ca',
      /CA ends .* before a new serving certificate would/,
    ],
    [
      'tls.crt still from the previous CA: switch it to the new CA',
      staged,
      {},
      undefined,
      'switch-serving',
      /still signed by the previous CA/,
    ],
    [
      'tls.crt still from the previous CA and every caBundle trusts the new one: switch',
      staged,
      {},
      new Set([fingerprint(newCa), fingerprint(agingCa)]),
      'switch-serving',
      undefined,
    ],
    [
      'tls.crt still from the previous CA but a caBundle lacks the new one: wait for patch',
      staged,
      {},
      new Set([fingerprint(agingCa)]),
      'wait-for-bundle',
      /run patch first/,
    ],
    [
      'tls.crt from the previous CA expired meanwhile: renew it from the new CA',
      stored(expiredFromAging, newCa, { previousCaCertPem: agingCa.certPem }),
      {},
      undefined,
      'renew-serving',
      /^certificate was not issued by the given CA; against the previous CA: certificate expired at/,
    ],
    ['switched, and the previous CA is still to be kept: keep', switched(later(DAY)), {}, undefined, 'keep', undefined],
    [
      'switched, and the time to keep the previous CA has passed: drop it',
      switched(later(-1)),
      {},
      undefined,
      'drop-previous-ca',
      /was to be kept until/,
    ],
    [
      'switched, but nothing says how long to keep the previous CA: drop it',
      switched(undefined),
      {},
      undefined,
      'drop-previous-ca',
      /no acr-pull-webhook\/previous-ca-until annotation/,
    ],
    [
      'a previous CA that expired: drop it',
      stored(fresh, ca, { previousCaCertPem: expiredCa.certPem, previousCaUntil: later(DAY) }),
      {},
      undefined,
      'drop-previous-ca',
      /previous CA expired/,
    ],
    [
      'a previous CA that is the current one: drop it',
      stored(fresh, ca, { previousCaCertPem: ca.certPem, previousCaUntil: later(DAY) }),
      {},
      undefined,
      'drop-previous-ca',
      /is the current CA/,
    ],
    [
      'a CA rotation due while the previous CA is still kept: keep, the rotation waits',
      stored(fromAging, agingCa, { previousCaCertPem: ca.certPem, previousCaUntil: later(DAY) }),
      {},
      undefined,
      'keep',
      undefined,
    ],
  ])('%s', (_case, state, override, trusted, step, reason) => {
    const decided = decideCreate(state, { ...want, ...override }, now, trusted);
    expect(decided.step).toBe(step);
    if (reason !== undefined) expect(decided).toMatchObject({ reason: expect.stringMatching(reason) });
  });

  it('keeps a 30-day pair until a third of its lifetime is left, and says from when it renews', () => {
    expect(decideCreate(stored(fresh, ca), want, now)).toEqual({
      step: 'keep',
      servingNotAfter: new Date('2026-03-31T12:00:00.000Z'),
      // lifetime is 30 days + the 5-minute backdating
      renewFrom: new Date('2026-03-21T11:58:20.000Z'),
    });
  });
});

describe('carryOut', () => {
  const verifies = (state: StoredCertificates | undefined, caPem: string | undefined) =>
    verifyServingPair({ certPem: state?.servingCertPem ?? '', keyPem: state?.servingKeyPem ?? '' }, caPem ?? '', now);

  it('writes nothing to keep or to wait', () => {
    expect(
      carryOut({ step: 'keep', servingNotAfter: now, renewFrom: now }, stored(fresh, ca), want, now),
    ).toBeUndefined();
    expect(carryOut({ step: 'wait-for-bundle', reason: '' }, staged, want, now)).toBeUndefined();
  });

  it('creates a CA valid ten times as long as a serving certificate for exactly the wanted names', () => {
    const next = carryOut({ step: 'create', reason: '' }, undefined, want, now);
    expect(verifies(next, next?.caCertPem)).toEqual({ ok: true });
    expect(inspectCertificate(next?.servingCertPem ?? '')).toMatchObject({
      dnsNames: names,
      ipAddresses: [],
      notAfter: later(30 * DAY),
    });
    expect(inspectCertificate(next?.caCertPem ?? '')).toMatchObject({ isCa: true, notAfter: later(300 * DAY) });
    expect(next).toMatchObject({
      caKeyPem: expect.stringMatching(/^-----BEGIN PRIVATE KEY-----/),
      previousCaCertPem: undefined,
      previousCaUntil: undefined,
    });
  });

  it('renews the serving certificate from the same CA, leaving ca.crt and ca.key as they were', () => {
    const next = carryOut({ step: 'renew-serving', reason: '' }, stored(nearExpiry, ca), want, now);
    expect(next).toMatchObject({ caCertPem: ca.certPem, caKeyPem: ca.keyPem, previousCaCertPem: undefined });
    expect(next?.servingCertPem).not.toBe(nearExpiry.certPem);
    expect(verifies(next, ca.certPem)).toEqual({ ok: true });
  });

  it('stages a new CA: the old one becomes ca-previous.crt and tls.crt stays as it is', () => {
    const before = stored(fromAging, agingCa);
    const next = carryOut({ step: 'stage-ca', reason: '' }, before, want, now);
    expect(next).toMatchObject({
      servingCertPem: fromAging.certPem,
      servingKeyPem: fromAging.keyPem,
      previousCaCertPem: agingCa.certPem,
      previousCaUntil: undefined,
    });
    expect(next?.caCertPem).not.toBe(agingCa.certPem);
    expect(verifies(next, next?.previousCaCertPem)).toEqual({ ok: true });
  });

  it(
    'switches tls.crt to the new CA and keeps the previous CA for a day, or until the old certificate ' +
      'ends if sooner',
    () => {
      const next = carryOut({ step: 'switch-serving', reason: '' }, staged, want, now);
      expect(verifies(next, newCa.certPem)).toEqual({ ok: true });
      expect(next).toMatchObject({
        caCertPem: newCa.certPem,
        previousCaCertPem: agingCa.certPem,
        previousCaUntil: later(DAY),
      });
      const endsSoon = leaf(agingCa, daysAgo(29.5));
      const sooner = carryOut(
        { step: 'switch-serving', reason: '' },
        stored(endsSoon, newCa, { previousCaCertPem: agingCa.certPem }),
        want,
        now,
      );
      expect(sooner?.previousCaUntil).toEqual(inspectCertificate(endsSoon.certPem).notAfter);
    },
  );

  it(
    'keeps a previous CA for a day when a broken pair is renewed mid-rotation, since a replica may still ' +
      'serve an older one',
    () => {
      const next = carryOut(
        { step: 'renew-serving', reason: '' },
        stored(expiredFromAging, newCa, { previousCaCertPem: agingCa.certPem }),
        want,
        now,
      );
      expect(next).toMatchObject({ previousCaCertPem: agingCa.certPem, previousCaUntil: later(DAY) });
    },
  );

  it('drops the previous CA and its annotation, and nothing else', () => {
    const next = carryOut({ step: 'drop-previous-ca', reason: '' }, switched(later(-1)), want, now);
    expect(next).toEqual({ ...switched(undefined), previousCaCertPem: undefined });
  });
});

describe('the Secret', () => {
  const full = stored(fresh, newCa, { previousCaCertPem: agingCa.certPem, previousCaUntil: later(DAY) });

  it('is a kubernetes.io/tls Secret with tls.crt, tls.key, ca.crt, ca.key, ca-previous.crt, labelled as ours', () => {
    const secret = secretManifest('ns', 'hook-tls', full);
    expect(secret).toMatchObject({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: {
        name: 'hook-tls',
        namespace: 'ns',
        labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
        annotations: { 'acr-pull-webhook/previous-ca-until': '2026-03-02T12:00:00.000Z' },
      },
    });
    expect(Object.keys(secret.data ?? {})).toEqual(['tls.crt', 'tls.key', 'ca.crt', 'ca.key', 'ca-previous.crt']);
    expect(Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64').toString()).toBe(fresh.certPem);
  });

  it('reads back as what was written', () => {
    expect(storedFromSecret(secretManifest('ns', 'hook-tls', full))).toEqual(full);
  });

  it(
    "on update keeps the resourceVersion read and others' labels and annotations, and drops the " +
      'annotation once the previous CA goes',
    () => {
      const existing = {
        metadata: {
          name: 'hook-tls',
          namespace: 'ns',
          resourceVersion: '42',
          labels: { team: 'a', 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
          annotations: { note: 'x', [PREVIOUS_CA_UNTIL_ANNOTATION]: 'old' },
          managedFields: [{ manager: 'kubectl' }],
        },
      };
      const secret = secretManifest(
        'ns',
        'hook-tls',
        { ...full, previousCaCertPem: undefined, previousCaUntil: undefined },
        existing,
      );
      expect(secret.metadata).toEqual({
        name: 'hook-tls',
        namespace: 'ns',
        resourceVersion: '42',
        labels: { team: 'a', 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
        annotations: { note: 'x' },
      });
      expect(Object.keys(secret.data ?? {})).not.toContain('ca-previous.crt');
    },
  );

  it('reads empty values and an unreadable annotation as absent', () => {
    const state = storedFromSecret({
      data: { 'tls.crt': '', 'tls.key': '' },
      metadata: { annotations: { [PREVIOUS_CA_UNTIL_ANNOTATION]: 'soon' } },
    });
    expect(state).toEqual({
      servingCertPem: undefined,
      servingKeyPem: undefined,
      caCertPem: undefined,
      caKeyPem: undefined,
      previousCaCertPem: undefined,
      previousCaUntil: undefined,
    });
  });

  it.each([
    [
      'one labelled as ours, of type kubernetes.io/tls',
      { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      'kubernetes.io/tls',
      false,
      undefined,
    ],
    [
      'one without our label (e.g. issued by cert-manager)',
      {},
      'kubernetes.io/tls',
      false,
      /^Secret ns\/hook-tls exists but is not managed by certs-gen/,
    ],
    [
      'one managed by someone else',
      { 'app.kubernetes.io/managed-by': 'Helm' },
      'kubernetes.io/tls',
      false,
      /not managed by certs-gen/,
    ],
    [
      'one of another type',
      { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      'Opaque',
      false,
      /has type Opaque, not kubernetes.io\/tls/,
    ],
    [
      'an immutable one',
      { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      'kubernetes.io/tls',
      true,
      /is immutable/,
    ],
  ])('an existing Secret: %s', (_case, labels, type, immutable, problem) => {
    const found = ownershipProblem({ metadata: { name: 'hook-tls', namespace: 'ns', labels }, type, immutable });
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(problem);
  });
});
