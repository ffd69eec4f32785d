// Pure judgements of `acr-pull-webhook doctor`: each takes what the shell read from the cluster (plain objects, PEM
// text, the clock) and returns findings, each saying what is wrong and what to do about it. No I/O here.
import { X509Certificate } from 'node:crypto';
import { readJwtTimes } from '../azure/jwt.ts';
import type { Config } from '../config/config.ts';
import {
  CONTENT_HASH_ANNOTATION,
  DOCKERCONFIGJSON_KEY,
  DOCKERCONFIGJSON_TYPE,
  INJECT_DISABLED,
  INJECT_LABEL,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
} from '../constants.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import { explainPod, type PodExplanation } from '../mutation/explain.ts';
import { isAcrHost } from '../mutation/warnings.ts';
import { contentHash } from '../sync/desired.ts';

export type Status = 'ok' | 'warn' | 'fail';

export interface Finding {
  readonly status: Status;
  /** What was checked: "webhook configuration", "secret team-a/acr". */
  readonly subject: string;
  readonly detail: string;
  /** For a warn or fail: what to do, as one line. */
  readonly fix?: string;
}

const ok = (subject: string, detail: string): Finding => ({ status: 'ok', subject, detail });
const fail = (subject: string, detail: string, fix: string): Finding => ({ status: 'fail', subject, detail, fix });
const warn = (subject: string, detail: string, fix: string): Finding => ({ status: 'warn', subject, detail, fix });

export const isHealthy = (findings: readonly Finding[]): boolean => findings.every((f) => f.status !== 'fail');

/** "3h 12m", "45s", "2d 4h": how long, for people. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

// ---------------------------------------------------------------------------------------------
// The webhook configuration and the certificate it trusts

/** The few fields of one webhook in a MutatingWebhookConfiguration that doctor reads. */
export interface WebhookClient {
  readonly name: string;
  readonly caBundle?: string | undefined;
  readonly url?: string | undefined;
  readonly service?: { readonly namespace: string; readonly name: string; readonly port?: number } | undefined;
}

/** The PEM blocks of a bundle, in order. */
export function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Whether `chain` (leaf first, then any intermediates, as served) leads to a certificate of `caBundle` for `host`,
 * as the apiserver's TLS client decides: signatures, validity at `now`, and the name (a DNS name or an IP).
 */
export function verifyChain(
  chain: readonly string[],
  caBundle: string,
  host: string,
  now: Date,
): { readonly ok: true; readonly notAfter: Date } | { readonly ok: false; readonly problem: string } {
  let certificates: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    certificates = chain.map((pem) => new X509Certificate(pem));
    anchors = pemCertificates(caBundle).map((pem) => new X509Certificate(pem));
  } catch {
    return { ok: false, problem: 'a certificate cannot be parsed' };
  }
  const leaf = certificates[0];
  if (leaf === undefined) return { ok: false, problem: 'no certificate is served' };
  if (anchors.length === 0) return { ok: false, problem: 'the caBundle holds no PEM certificate' };
  for (const certificate of certificates) {
    if (new Date(certificate.validTo) <= now)
      return { ok: false, problem: `the certificate ${certificate.subject} expired on ${certificate.validTo}` };
    if (new Date(certificate.validFrom) > now)
      return {
        ok: false,
        problem: `the certificate ${certificate.subject} is not valid before ${certificate.validFrom}`,
      };
  }
  const signs = (issuer: X509Certificate, subject: X509Certificate): boolean =>
    subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
  let current = leaf;
  const intermediates = certificates.slice(1);
  for (let depth = 0; ; depth++) {
    if (anchors.some((anchor) => signs(anchor, current) || anchor.raw.equals(current.raw))) break;
    const next = intermediates.find((candidate) => signs(candidate, current));
    if (next === undefined || depth > intermediates.length)
      return { ok: false, problem: 'the certificate is not signed by the caBundle (a CA from another install?)' };
    current = next;
  }
  const named = /^[0-9.]+$|:/.test(host) ? leaf.checkIP(host) : leaf.checkHost(host);
  if (named === undefined) return { ok: false, problem: `the certificate does not name ${host}` };
  return { ok: true, notAfter: new Date(leaf.validTo) };
}

/** Where the certificate that was checked came from, and what it was. */
export type ServedCertificate =
  | { readonly source: string; readonly host: string; readonly chain: readonly string[] }
  | { readonly source: string; readonly unreadable: string; readonly fix: string };

export function judgeCertificate(
  webhook: WebhookClient,
  served: ServedCertificate,
  now: Date,
  expiryWarningDays = 7,
): Finding {
  const subject = `certificate ${webhook.name}`;
  if (webhook.caBundle === undefined || webhook.caBundle === '')
    return fail(
      subject,
      'the webhook has no caBundle: the apiserver cannot trust it and fails every call',
      'run certs-gen patch (the chart\u2019s hook) or check cert-manager\u2019s cainjector',
    );
  if ('unreadable' in served)
    return fail(subject, `cannot read the served certificate from ${served.source}: ${served.unreadable}`, served.fix);
  const caBundle = Buffer.from(webhook.caBundle, 'base64').toString('utf8');
  const verdict = verifyChain(served.chain, caBundle, served.host, now);
  if (!verdict.ok)
    return fail(
      subject,
      `the caBundle does not verify ${served.source}: ${verdict.problem}`,
      'rerun certs-gen (create, then patch) so the Secret and the caBundle come from the same CA',
    );
  const left = (verdict.notAfter.getTime() - now.getTime()) / 1000;
  const detail = `the caBundle verifies ${served.source} for ${served.host}; expires in ${duration(left)}`;
  if (left < expiryWarningDays * 86_400) return warn(subject, detail, 'renew the serving certificate (certs-gen)');
  return ok(subject, detail);
}

export function judgeEndpoints(
  service: { readonly namespace: string; readonly name: string },
  found: boolean,
  ready: number,
  notReady: number,
): Finding {
  const subject = `endpoints ${service.namespace}/${service.name}`;
  if (!found)
    return fail(subject, 'the webhook\u2019s Service does not exist', 'install the chart, or fix clientConfig.service');
  if (ready === 0)
    return fail(
      subject,
      `no ready endpoint (${notReady} not ready): every pod is created without pull secrets (or refused)`,
      `kubectl -n ${service.namespace} get pods; see the webhook pods\u2019 logs and /readyz`,
    );
  return ok(subject, `${ready} ready${notReady > 0 ? `, ${notReady} not ready` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// Pull secrets

/** What the configuration says about one secretName. */
export interface ExpectedSecret {
  readonly name: string;
  /** sync-secrets writes it (some entry naming it has credentials); otherwise the user creates it. */
  readonly synced: boolean;
  /** The content hash sync-secrets would write now, when doctor could read every credential file. */
  readonly contentHash?: string | undefined;
  /** Servers of azure entries: their password is an ACR refresh token whose `exp` is read. */
  readonly tokenServers: readonly string[];
}

export function expectedSecrets(config: Config, hashes: ReadonlyMap<string, string>): ExpectedSecret[] {
  const names = [...new Set(config.registries.map((entry) => entry.secretName))];
  return names.map((name) => {
    const entries = config.registries.filter((entry) => entry.secretName === name);
    return {
      name,
      synced: entries.some((entry) => entry.credentials !== undefined),
      contentHash: hashes.get(name),
      tokenServers: entries.filter((entry) => entry.credentials?.kind === 'azure').map((entry) => entry.server),
    };
  });
}

function dockerConfigText(secret: SecretObject): string | undefined {
  const data = secret.data?.[DOCKERCONFIGJSON_KEY];
  return data === undefined ? undefined : Buffer.from(data, 'base64').toString('utf8');
}

function tokenExpiry(text: string, server: string): number | string {
  try {
    const auths = (JSON.parse(text) as { auths?: Record<string, { password?: unknown }> }).auths ?? {};
    const password = auths[server]?.password;
    if (typeof password !== 'string') return `no password for ${server}`;
    return readJwtTimes(password).exp;
  } catch (error) {
    return error instanceof Error && error.name === 'JwtError' ? error.message : 'not JSON';
  }
}

export function judgeSecret(
  namespace: string,
  expected: ExpectedSecret,
  secret: SecretObject | undefined,
  now: Date,
): Finding {
  const subject = `secret ${namespace}/${expected.name}`;
  if (secret === undefined)
    return fail(
      subject,
      'missing',
      expected.synced
        ? 'sync-secrets writes it: check that it runs (see the Lease line) and its logs'
        : `create it: kubectl -n ${namespace} create secret docker-registry ${expected.name} --docker-server=...`,
    );
  if (secret.type !== DOCKERCONFIGJSON_TYPE)
    return fail(
      subject,
      `type ${secret.type ?? '(none)'}, not ${DOCKERCONFIGJSON_TYPE}: the kubelet ignores it`,
      expected.synced
        ? 'delete it; sync-secrets writes it again'
        : 'delete it; create it with kubectl create secret docker-registry',
    );
  if (!expected.synced) return ok(subject, 'present (created by you: no credentials configured)');
  if (secret.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE)
    return fail(
      subject,
      `not managed by acr-pull-webhook (no ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}): sync-secrets leaves it alone`,
      `delete it (sync-secrets writes its own), or rename registries[].secretName`,
    );
  const text = dockerConfigText(secret) ?? '';
  const annotated = secret.metadata?.annotations?.[CONTENT_HASH_ANNOTATION];
  const stale = `sync-secrets rewrites it at its next pass; if it stays, see the Lease line and its logs`;
  if (annotated !== contentHash(text))
    return fail(
      subject,
      'edited since sync-secrets wrote it (content differs from its content-hash annotation)',
      stale,
    );
  if (expected.contentHash !== undefined && annotated !== expected.contentHash)
    return fail(subject, 'stale: its content is not what the configured credentials give now', stale);
  const notes = [expected.contentHash === undefined ? 'managed, content not compared' : 'managed, current'];
  for (const server of expected.tokenServers) {
    const exp = tokenExpiry(text, server);
    if (typeof exp === 'string') return fail(subject, `the token for ${server} cannot be read: ${exp}`, stale);
    const left = exp - now.getTime() / 1000;
    if (left <= 0)
      return fail(
        subject,
        `the token for ${server} expired ${duration(-left)} ago`,
        'see sync-secrets\u2019 logs (token requests)',
      );
    notes.push(`token for ${server} expires in ${duration(left)}`);
  }
  return ok(subject, notes.join('; '));
}

// ---------------------------------------------------------------------------------------------
// The sync-secrets Lease

export interface LeaseFacts {
  readonly namespace: string;
  readonly name: string;
  readonly holder?: string | undefined;
  readonly renewTime?: Date | undefined;
  readonly leaseDurationSeconds?: number | undefined;
}

export function judgeLease(
  lease: LeaseFacts | { readonly namespace: string; readonly name: string; readonly missing: true },
  now: Date,
): Finding {
  const subject = `lease ${lease.namespace}/${lease.name}`;
  if ('missing' in lease)
    return warn(
      subject,
      'no Lease: no sync-secrets --watch has run here',
      'fine if sync-secrets runs with --once (a Job); otherwise pass --lease-namespace, or start it',
    );
  if (lease.holder === undefined || lease.holder === '' || lease.renewTime === undefined)
    return fail(subject, 'no holder: no sync-secrets replica is leading', 'check the sync-secrets pods');
  const age = (now.getTime() - lease.renewTime.getTime()) / 1000;
  const limit = lease.leaseDurationSeconds ?? 15;
  if (age > limit)
    return fail(
      subject,
      `held by ${lease.holder}, last renewed ${duration(age)} ago (over its ${limit}s): that replica is gone or stuck`,
      'check the sync-secrets pods and their logs',
    );
  return ok(subject, `held by ${lease.holder}, renewed ${duration(age)} ago`);
}

// ---------------------------------------------------------------------------------------------
// One pod

export interface PodEvent {
  readonly reason: string;
  readonly message: string;
  readonly count: number;
}

const PULL_FAILURE = /^(Failed|ErrImagePull|ImagePullBackOff|BackOff)$/;

export function isPullFailure(event: PodEvent): boolean {
  return PULL_FAILURE.test(event.reason) && /pull|image/i.test(event.message);
}

export interface ContainerWaiting {
  readonly container: string;
  readonly image: string;
  readonly reason: string;
  readonly message: string;
}

/** The waiting states of a pod's containers that are image pull failures. */
export function pullWaiting(status: unknown): ContainerWaiting[] {
  const lists = (status ?? {}) as Record<string, unknown>;
  return ['initContainerStatuses', 'containerStatuses', 'ephemeralContainerStatuses'].flatMap((key) =>
    (
      (lists[key] ?? []) as {
        name?: string;
        image?: string;
        state?: { waiting?: { reason?: string; message?: string } };
      }[]
    )
      .filter((entry) => /^(ErrImagePull|ImagePullBackOff)$/.test(entry.state?.waiting?.reason ?? ''))
      .map((entry) => ({
        container: entry.name ?? '',
        image: entry.image ?? '',
        reason: entry.state?.waiting?.reason ?? '',
        message: entry.state?.waiting?.message ?? '',
      })),
  );
}

export interface PodFacts {
  readonly namespace: string;
  readonly name: string;
  readonly pod: { readonly metadata?: unknown; readonly spec?: unknown };
  readonly namespaceLabels: Readonly<Record<string, string>>;
  readonly events: readonly PodEvent[];
  /** Containers waiting on a failed pull (pod status): they outlive the Events, which expire after an hour. */
  readonly waiting?: readonly ContainerWaiting[];
  /** judgeSecret's findings for the secrets the pod's images need, in this namespace. */
  readonly secrets: readonly Finding[];
  /**
   * A workload's pod template, not a pod: its rows are headed `template KIND/NAME`, and it is not expected to carry
   * the imagePullSecrets that the webhook adds to each pod.
   */
  readonly template?: { readonly kind: string } | undefined;
  /** How to make the fix take effect: "then recreate the pod" unless a workload says better. */
  readonly recreate?: string | undefined;
}

/** Findings for one pod, root causes first: the first failure's fix is the one line to act on. */
export function judgePod(facts: PodFacts, config: Config): { findings: Finding[]; explanation: PodExplanation } {
  const { namespace, name } = facts;
  const findings: Finding[] = [];
  const { label, value } = config.optIn;
  const recreate = facts.recreate ?? 'then recreate the pod';
  const self = facts.template === undefined ? `pod ${namespace}/${name}` : `template ${facts.template.kind}/${name}`;
  if (facts.namespaceLabels[label] === value)
    findings.push(ok(`namespace ${namespace}`, `opted in (${label}=${value})`));
  else
    findings.push(
      fail(
        `namespace ${namespace}`,
        `not opted in: no ${label}=${value}`,
        `kubectl label namespace ${namespace} ${label}=${value}, ${recreate}`,
      ),
    );
  const explanation = explainPod(facts.pod, config.rules);
  const metadata = (facts.pod.metadata ?? {}) as { labels?: Record<string, string> };
  const matched = new Set(explanation.images.flatMap((image) => image.matches.map((match) => match.secretName)));
  if (explanation.optedOut)
    findings.push(
      matched.size > 0
        ? fail(
            self,
            `opted out (${INJECT_LABEL}=${INJECT_DISABLED}) although its images need ${[...matched].join(', ')}`,
            `remove the label ${INJECT_LABEL} from the pod (template), ${recreate}`,
          )
        : ok(self, `opted out (${INJECT_LABEL}=${INJECT_DISABLED}); no image needs a secret`),
    );
  const failing = facts.events.filter(isPullFailure);
  for (const image of explanation.images) {
    const subject = `image ${image.image}`;
    if ('error' in image.resolved) {
      findings.push(fail(subject, `not a valid image reference: ${image.resolved.error}`, 'fix the image name'));
      continue;
    }
    if (image.matches.length > 0) {
      findings.push(ok(subject, image.matches.map((m) => `matches ${m.server} -> ${m.secretName}`).join('; ')));
      continue;
    }
    const pullFails =
      failing.some((event) => event.message.includes(image.image)) ||
      (facts.waiting ?? []).some((waiting) => waiting.image === image.image);
    const misses = image.misses.map((miss) => `not ${miss.server}: ${miss.reason}`).join('; ');
    const detail = `no registries[] entry matches (${misses || 'none configured'})`;
    if (isAcrHost(image.resolved.domain, config.acrHostSuffixes) || pullFails)
      findings.push(fail(subject, detail, `add a registries[] entry for ${image.resolved.domain}, ${recreate}`));
    else findings.push(ok(subject, `${detail}: pulled without credentials`));
  }
  const listed = new Set(
    ((facts.pod.spec as { imagePullSecrets?: { name?: string }[] } | undefined)?.imagePullSecrets ?? []).map(
      (ref) => ref.name ?? '',
    ),
  );
  const missing = [...matched].filter((secret) => !listed.has(secret));
  const patchable = facts.template === undefined && !explanation.optedOut;
  if (missing.length > 0 && patchable && metadata.labels?.[INJECT_LABEL] !== INJECT_DISABLED)
    findings.push(
      fail(
        `pod ${namespace}/${name}`,
        `not patched: imagePullSecrets lacks ${missing.join(', ')} ` +
          '(created before the opt-in, or while the webhook was down)',
        `run acr-pull-webhook doctor (cluster-wide) to check the webhook, ${recreate}`,
      ),
    );
  findings.push(...facts.secrets);
  const refused = 'the credentials in the pull secret are refused or the image does not exist: see the secret lines';
  for (const waiting of facts.waiting ?? [])
    findings.push(
      fail(
        `container ${waiting.container}`,
        `${waiting.reason}${waiting.message === '' ? '' : `: ${waiting.message}`}`,
        refused,
      ),
    );
  for (const event of failing.slice(0, 5))
    findings.push(
      fail(`event ${event.reason}`, `${event.message}${event.count > 1 ? ` (x${event.count})` : ''}`, refused),
    );
  return { findings, explanation };
}

/** The one line to act on: the first failure's fix (root causes come first), else the first warning's. */
export function fixLine(findings: readonly Finding[]): string {
  const first = findings.find((f) => f.status === 'fail') ?? findings.find((f) => f.status === 'warn');
  return `fix: ${first?.fix ?? 'nothing: every check passed'}`;
}
