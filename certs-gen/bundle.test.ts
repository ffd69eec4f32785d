import { describe, expect, it } from 'vitest';
import { bundleCas, desiredBundle, planCaBundles, trustedByEvery, type DesiredBundle } from './bundle.ts';
import { generateCa, inspectCertificate, type PemPair } from './generate.ts';

const DAY = 24 * 60 * 60 * 1000;
const now = new Date('2026-03-01T12:00:00.000Z');
const oldCa = generateCa({ validityDays: 300, now: new Date(now.getTime() - 250 * DAY) });
const newCa = generateCa({ validityDays: 300, now });
const expiredCa = generateCa({ validityDays: 10, now: new Date(now.getTime() - 20 * DAY) });
const strangerCa = generateCa({ validityDays: 300, now });

const fp = (ca: PemPair) => inspectCertificate(ca.certPem).fingerprintSha256;
const b64 = (...pems: string[]) => Buffer.from(pems.join(''), 'utf8').toString('base64');
const fingerprints = (bundle: DesiredBundle) => bundle.cas.map((ca) => ca.fingerprintSha256);

describe('desiredBundle', () => {
  it.each([
    ['only a current CA: the new CA only', newCa.certPem, undefined, [newCa]],
    ['a previous CA during a rotation: the new CA, then the old one', newCa.certPem, oldCa.certPem, [newCa, oldCa]],
    ['a previous CA that is the current one: it once', newCa.certPem, newCa.certPem, [newCa]],
    ['a previous CA that expired: the new CA only', newCa.certPem, expiredCa.certPem, [newCa]],
    ['a previous CA that is not PEM: the new CA only', newCa.certPem, 'garbage', [newCa]],
  ])('from %s', (_case, current, previous, expected) => {
    const bundle = desiredBundle({ current, previous }, now);
    expect(fingerprints(bundle)).toEqual(expected.map(fp));
    expect(bundleCas(bundle.caBundle).map((ca) => ca.fingerprintSha256)).toEqual(expected.map(fp));
  });

  it('writes plain PEM blocks with \\n line ends, one after the other, base64-encoded', () => {
    const text = Buffer.from(
      desiredBundle({ current: newCa.certPem, previous: oldCa.certPem }, now).caBundle,
      'base64',
    ).toString();
    const pem = '-----BEGIN CERTIFICATE-----\\n[A-Za-z0-9+/=\\n]+-----END CERTIFICATE-----\\n';
    expect(text).toMatch(new RegExp(`^${pem}${pem}$`));
    expect(text).not.toContain('\r');
  });

  it.each([
    ['no ca.crt', undefined, /^has no ca.crt$/],
    ['a ca.crt that is not PEM', 'garbage', /^ca.crt is not a PEM CA certificate$/],
    ['an expired ca.crt', expiredCa.certPem, /^ca.crt expired at 2026-02-19T12:00:00.000Z$/],
  ])('refuses a Secret with %s', (_case, current, message) => {
    expect(() => desiredBundle({ current, previous: undefined }, now)).toThrow(message);
  });
});

describe('planCaBundles', () => {
  const rotating = desiredBundle({ current: newCa.certPem, previous: oldCa.certPem }, now);
  const settled = desiredBundle({ current: newCa.certPem, previous: undefined }, now);

  it.each([
    ['an empty caBundle gets the new CA', settled, undefined, 'change'],
    ['a caBundle with only the old CA gets old and new during a rotation', rotating, b64(oldCa.certPem), 'change'],
    [
      'a caBundle with old and new loses the old CA once the rotation is over',
      settled,
      b64(newCa.certPem, oldCa.certPem),
      'change',
    ],
    [
      'a caBundle with the new CA twice is rewritten without the duplicate',
      settled,
      b64(newCa.certPem, newCa.certPem),
      'change',
    ],
    ['a caBundle that also trusts a stranger CA loses it', settled, b64(newCa.certPem, strangerCa.certPem), 'change'],
    ['a caBundle that is not PEM is replaced', settled, b64('garbage'), 'change'],
    ['a caBundle already holding exactly the CAs is left alone', rotating, rotating.caBundle, 'unchanged'],
    [
      'a caBundle holding the same CAs in another order and with CRLF line ends is left alone',
      rotating,
      b64(oldCa.certPem, newCa.certPem),
      'unchanged',
    ],
  ])('%s', (_case, desired, caBundle, outcome) => {
    const plan = planCaBundles([{ name: 'pods.acr-pull-webhook.io', caBundle }], desired);
    expect(plan).toEqual(
      outcome === 'change'
        ? { change: ['pods.acr-pull-webhook.io'], unchanged: [] }
        : { change: [], unchanged: ['pods.acr-pull-webhook.io'] },
    );
  });

  it('looks at every webhook of the configuration on its own', () => {
    const plan = planCaBundles(
      [
        { name: 'a', caBundle: settled.caBundle },
        { name: 'b', caBundle: undefined },
        { name: 'c', caBundle: b64(oldCa.certPem) },
      ],
      settled,
    );
    expect(plan).toEqual({ change: ['b', 'c'], unchanged: ['a'] });
  });
});

describe('trustedByEvery', () => {
  it.each([
    ['with no webhooks, nothing is trusted', [], []],
    ['one webhook trusts what its bundle holds', [b64(oldCa.certPem, newCa.certPem)], [oldCa, newCa]],
    [
      'two webhooks trust only what both bundles hold',
      [b64(oldCa.certPem, newCa.certPem), b64(oldCa.certPem)],
      [oldCa],
    ],
    ['a webhook without a bundle makes the set empty', [b64(newCa.certPem), undefined], []],
  ])('%s', (_case, bundles, expected) => {
    const trusted = trustedByEvery(bundles.map((caBundle, index) => ({ name: `w${index}`, caBundle })));
    expect([...trusted].sort()).toEqual(expected.map(fp).sort());
  });
});
