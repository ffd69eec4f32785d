import { describe, expect, test } from 'vitest';
import { generateCa, generateServingCertificate } from '../../certs-gen/generate.ts';
import { parseConfig } from '../config/config.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import { contentHash } from '../sync/desired.ts';
import {
  type ExpectedSecret,
  fixLine,
  judgeCertificate,
  judgeLease,
  judgePod,
  judgeSecret,
  verifyChain,
} from './checks.ts';
import { formatTable } from './format.ts';

const NOW = new Date('2026-06-01T12:00:00Z');
const ca = generateCa({ validityDays: 365, now: NOW });
const otherCa = generateCa({ validityDays: 365, now: NOW });
const serving = generateServingCertificate(ca, {
  dnsNames: ['webhook.acr.svc'],
  ipAddresses: ['127.0.0.1'],
  validityDays: 30,
  now: NOW,
});
const DAY = 86_400_000;

describe('verifyChain: the caBundle verifies the served certificate as the apiserver would', () => {
  test.each([
    { when: 'signed by the bundle CA, for its DNS name', bundle: ca.certPem, host: 'webhook.acr.svc', at: NOW },
    { when: 'signed by the bundle CA, for its IP address', bundle: ca.certPem, host: '127.0.0.1', at: NOW },
    {
      when: 'the CA is the second of two in the bundle',
      bundle: otherCa.certPem + ca.certPem,
      host: '127.0.0.1',
      at: NOW,
    },
  ])('passes when $when', ({ bundle, host, at }) => {
    expect(verifyChain([serving.certPem], bundle, host, at)).toEqual({
      ok: true,
      notAfter: new Date(NOW.getTime() + 30 * DAY),
    });
  });

  test.each([
    {
      when: 'another CA signed it',
      bundle: otherCa.certPem,
      host: 'webhook.acr.svc',
      at: NOW,
      problem: 'the certificate is not signed by the caBundle (a CA from another install?)',
    },
    {
      when: 'it names another host',
      bundle: ca.certPem,
      host: 'webhook.other.svc',
      at: NOW,
      problem: 'the certificate does not name webhook.other.svc',
    },
    {
      when: 'the bundle holds no certificate',
      bundle: 'not a PEM',
      host: 'webhook.acr.svc',
      at: NOW,
      problem: 'the caBundle holds no PEM certificate',
    },
  ])('fails when $when', ({ bundle, host, at, problem }) => {
    expect(verifyChain([serving.certPem], bundle, host, at)).toEqual({ ok: false, problem });
  });

  test('fails once the certificate has expired, and before it is valid', () => {
    const after = verifyChain([serving.certPem], ca.certPem, 'webhook.acr.svc', new Date(NOW.getTime() + 31 * DAY));
    expect(after).toEqual({ ok: false, problem: expect.stringMatching(/ expired on /) });
    const before = verifyChain([serving.certPem], ca.certPem, 'webhook.acr.svc', new Date(NOW.getTime() - DAY));
    expect(before).toEqual({ ok: false, problem: expect.stringMatching(/ is not valid before /) });
  });
});

describe('judgeCertificate', () => {
  const base64 = (text: string): string => Buffer.from(text).toString('base64');
  const served = { source: 'the certificate served at 127.0.0.1:8443', host: '127.0.0.1', chain: [serving.certPem] };

  test('a webhook without a caBundle fails, whatever is served', () => {
    expect(judgeCertificate({ name: 'hook', caBundle: '' }, served, NOW)).toMatchObject({
      status: 'fail',
      detail: 'the webhook has no caBundle: the apiserver cannot trust it and fails every call',
    });
  });

  test('a certificate verified but expiring within 7 days is a warning, with more room it is ok', () => {
    const hook = { name: 'hook', caBundle: base64(ca.certPem) };
    expect(judgeCertificate(hook, served, new Date(NOW.getTime() + 25 * DAY))).toMatchObject({
      status: 'warn',
      detail: 'the caBundle verifies the certificate served at 127.0.0.1:8443 for 127.0.0.1; expires in 5d 0h',
    });
    expect(judgeCertificate(hook, served, NOW)).toMatchObject({ status: 'ok' });
  });

  test('a certificate that could not be read fails, saying why', () => {
    const hook = { name: 'hook', caBundle: base64(ca.certPem) };
    const unreadable = {
      source: 'the certificate served at 127.0.0.1:1',
      unreadable: 'cannot connect: ECONNREFUSED',
      fix: 'check that the webhook listens',
    };
    expect(judgeCertificate(hook, unreadable, NOW)).toMatchObject({
      fix: 'check that the webhook listens',
      status: 'fail',
      detail:
        'cannot read the served certificate from the certificate served at 127.0.0.1:1: cannot connect: ECONNREFUSED',
    });
  });
});

/** A JWS compact token with `exp`; its signature is never checked. */
function jwt(exp: number): string {
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ exp })}.${Buffer.from('sig').toString('base64url')}`;
}

function managedSecret(text: string, annotation = contentHash(text)): SecretObject {
  return {
    metadata: {
      labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
      annotations: { 'acr-pull-webhook/content-hash': annotation },
    },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from(text).toString('base64') },
  };
}

describe('judgeSecret', () => {
  const tokenSecret: ExpectedSecret = { name: 'acr', synced: true, tokenServers: ['reg.azurecr.io'] };
  const withToken = (exp: number): string =>
    JSON.stringify({ auths: { 'reg.azurecr.io': { username: '0', password: jwt(exp), auth: '' } } });
  const seconds = NOW.getTime() / 1000;

  test("a token entry's secret reports when the token in it expires", () => {
    expect(judgeSecret('team-a', tokenSecret, managedSecret(withToken(seconds + 3 * 3600)), NOW)).toEqual({
      status: 'ok',
      subject: 'secret team-a/acr',
      detail: 'managed, content not compared; token for reg.azurecr.io expires in 3h 0m',
    });
  });

  test('an expired token fails', () => {
    expect(judgeSecret('team-a', tokenSecret, managedSecret(withToken(seconds - 600)), NOW)).toMatchObject({
      status: 'fail',
      detail: 'the token for reg.azurecr.io expired 10m ago',
    });
  });

  test('a password that is not a JWT fails without quoting it', () => {
    const text = JSON.stringify({ auths: { 'reg.azurecr.io': { password: 'hunter2' } } });
    const finding = judgeSecret('team-a', tokenSecret, managedSecret(text), NOW);
    expect(finding).toMatchObject({ status: 'fail' });
    expect(finding.detail).not.toContain('hunter2');
  });

  test('a secret the user creates (no credentials configured) is fine unlabelled; a wrong type is not', () => {
    const user: ExpectedSecret = { name: 'mine', synced: false, tokenServers: [] };
    const unlabelled = { ...managedSecret('{}'), metadata: {} };
    expect(judgeSecret('team-a', user, unlabelled, NOW)).toMatchObject({ status: 'ok' });
    expect(judgeSecret('team-a', user, { ...unlabelled, type: 'Opaque' }, NOW)).toMatchObject({
      status: 'fail',
      detail: 'type Opaque, not kubernetes.io/dockerconfigjson: the kubelet ignores it',
    });
    expect(judgeSecret('team-a', user, undefined, NOW).fix).toBe(
      'create it: kubectl -n team-a create secret docker-registry mine --docker-server=...',
    );
  });
});

describe('judgeLease', () => {
  const where = { namespace: 'acr', name: 'acr-pull-webhook-sync-secrets' };
  test.each([
    {
      lease: { ...where, missing: true as const },
      status: 'warn',
      detail: 'no Lease: no sync-secrets --watch has run here',
    },
    { lease: { ...where, holder: '' }, status: 'fail', detail: 'no holder: no sync-secrets replica is leading' },
    {
      lease: { ...where, holder: 'sync-0', renewTime: new Date(NOW.getTime() - 60_000), leaseDurationSeconds: 15 },
      status: 'fail',
      detail: 'held by sync-0, last renewed 60s ago (over its 15s): that replica is gone or stuck',
    },
    {
      lease: { ...where, holder: 'sync-0', renewTime: new Date(NOW.getTime() - 3_000), leaseDurationSeconds: 15 },
      status: 'ok',
      detail: 'held by sync-0, renewed 3s ago',
    },
  ])('$detail: $status', ({ lease, status, detail }) => {
    expect(judgeLease(lease, NOW)).toMatchObject({ status, detail });
  });
});

describe('judgePod', () => {
  const config = parseConfig('registries: [{server: reg.azurecr.io, secretName: acr}]', 'test');
  const pod = (image: string, labels: Record<string, string> = {}) => ({
    metadata: { labels },
    spec: { containers: [{ name: 'app', image }] },
  });
  const facts = { namespace: 'team-a', name: 'app-0', events: [], secrets: [] };
  const optedIn = { 'acr-pull-webhook/inject': 'enabled' };

  test('an opted-out pod whose images need no secret, and an unmatched image off Azure, are fine', () => {
    const { findings } = judgePod(
      {
        ...facts,
        pod: pod('docker.io/library/nginx', { 'acr-pull-webhook/inject': 'disabled' }),
        namespaceLabels: optedIn,
      },
      config,
    );
    expect(findings.map((finding) => finding.status)).toEqual(['ok', 'ok', 'ok']);
    expect(fixLine(findings)).toBe('fix: nothing: every check passed');
  });

  test('the fix line is the root cause: the namespace opt-in before the missing imagePullSecrets it caused', () => {
    const { findings } = judgePod({ ...facts, pod: pod('reg.azurecr.io/app'), namespaceLabels: {} }, config);
    expect(findings.map((finding) => `${finding.status} ${finding.subject}`)).toEqual([
      'fail namespace team-a',
      'ok image reg.azurecr.io/app',
      'fail pod team-a/app-0',
    ]);
    expect(fixLine(findings)).toBe(
      'fix: kubectl label namespace team-a acr-pull-webhook/inject=enabled, then recreate the pod',
    );
  });

  test('an unmatched image that failed to pull fails even off Azure', () => {
    const events = [{ reason: 'Failed', message: 'Failed to pull image "ghcr.io/x/app": 401', count: 1 }];
    const { findings } = judgePod({ ...facts, events, pod: pod('ghcr.io/x/app'), namespaceLabels: optedIn }, config);
    expect(findings.find((finding) => finding.subject === 'image ghcr.io/x/app')?.status).toBe('fail');
  });
});

describe('formatTable', () => {
  const findings = [
    { status: 'ok' as const, subject: 'a', detail: 'fine' },
    { status: 'fail' as const, subject: 'longer', detail: 'broken', fix: 'mend it' },
  ];
  test('pads subjects to one column, and colours the status only when asked', () => {
    expect(formatTable(findings, false)).toEqual(['ok    a       fine', 'FAIL  longer  broken']);
    expect(formatTable(findings, true)).toEqual([
      '\u001b[32mok  \u001b[0m  a       fine',
      '\u001b[31mFAIL\u001b[0m  longer  broken',
    ]);
  });
});
