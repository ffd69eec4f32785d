#!/usr/bin/env node
// certs-gen entry point: parses the verb and its flags, runs it, and owns the exit code.
// Verbs live in the table below: `local` writes files; `create` and `patch` talk to the cluster.
import type { ParseArgsOptionsConfig } from 'node:util';
import { isDnsLabel, isDnsSubdomain } from '../src/names.ts';
import { exitOnCrash, reportLingering } from '../src/process/crash.ts';
import { parseFlags, UsageError } from '../src/process/flags.ts';
import { oneLine } from '../src/process/startup.ts';
import type { Cluster } from './cluster.ts';
import { checkSubjectAltNames, inspectCertificate, serviceDnsNames } from './generate.ts';
import { CA_VALIDITY_FACTOR, LOCAL_DEFAULT_VALIDITY_DAYS, buildLocalCertificates, writeLocalFiles } from './local.ts';

const HELP = `Usage: certs-gen <verb> [options]

Issues the TLS certificate of the acr-pull-webhook admission webhook and keeps the
webhook configuration trusting it. See certs-gen/README.md for the rotation sequence and RBAC.

Verbs:
  local    Write a new CA and a serving certificate signed by it into a directory,
           for running the webhook outside a cluster.
  create   Keep a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt, ca.key) with a CA and
           a serving certificate for a Service; renew or rotate it when due, else change nothing.
  patch    Set the caBundle of every webhook in a MutatingWebhookConfiguration to the CAs
           of that Secret (ca.crt, and ca-previous.crt while a CA is being replaced), and
           make the configuration the Secret's owner, so the Secret is deleted with it.

Options for local:
  --out DIR         directory for ca.crt, tls.crt and tls.key (mode 0600); created if
                    missing (its parent must exist), existing files are replaced
  --dns NAME        DNS name for the serving certificate; repeatable
  --ip ADDR         IP address for the serving certificate; repeatable
                    (with neither --dns nor --ip: localhost, 127.0.0.1 and ::1)
  --validity DAYS   days the serving certificate is valid (default ${LOCAL_DEFAULT_VALIDITY_DAYS}, at most 36500);
                    the CA is valid ${CA_VALIDITY_FACTOR} times as long

Options for create:
  --namespace NS         namespace of the Secret and the Service (required)
  --secret-name NAME     the Secret (required)
  --service SVC          the webhook's Service: the certificate names SVC, SVC.NS, SVC.NS.svc
                         and SVC.NS.svc.cluster.local (required)
  --dns NAME, --ip ADDR  further names; repeatable
  --validity DAYS        as for local; renewal starts when a third of it is left
  --webhook-config NAME  issue a serving certificate only from a CA that every caBundle in
                         this MutatingWebhookConfiguration already trusts (recommended)
  --kubeconfig FILE      credentials; default: KUBECONFIG, else in-cluster, else ~/.kube/config

Options for patch:
  --webhook-config NAME  the MutatingWebhookConfiguration (required)
  --namespace NS, --secret-name NAME   the Secret written by create (required)
  --kubeconfig FILE      as for create

  -h, --help        show this help

Exit codes:
  0  success, including "nothing to change" and "waiting for patch"
  1  failure (files not written; API unreachable, forbidden, object missing or not ours)
  2  usage error (unknown verb or option, missing or invalid value)
`;

const MAX_VALIDITY_DAYS = 36_500;
const LOG_BASE = { service: 'certs-gen' };
/** After the verb has returned, how long before whatever still holds the process is named. */
const LINGER_REPORT_MS = 5_000;

interface Verb {
  options: ParseArgsOptionsConfig;
  run(values: Record<string, string | boolean | (string | boolean)[] | undefined>): Promise<void>;
}

const verbs: Record<string, Verb> = {
  local: {
    options: {
      out: { type: 'string' },
      dns: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
      validity: { type: 'string' },
    },
    async run(values) {
      const outDir = values['out'];
      if (typeof outDir !== 'string' || outDir === '') throw new UsageError('local: --out DIR is required');
      const validityDays = parseValidity(values['validity']);
      let files;
      try {
        files = buildLocalCertificates({
          dnsNames: strings(values['dns']),
          ipAddresses: strings(values['ip']),
          validityDays,
          now: new Date(),
        });
      } catch (error) {
        // Generation is pure and the CA is fresh, so anything it rejects came from the flags.
        throw new UsageError(`local: ${messageOf(error)}`);
      }
      const paths = await writeLocalFiles(outDir, files).catch((error: unknown) => {
        throw new Error(`local: ${messageOf(error)}`);
      });
      const info = inspectCertificate(files['tls.crt'].contents);
      const names = [...info.dnsNames, ...info.ipAddresses].join(', ');
      process.stdout.write(
        `wrote ${paths.join(', ')}\ntls.crt: ${names}; valid until ${info.notAfter.toISOString()}\n`,
      );
    },
  },
  create: {
    options: {
      namespace: { type: 'string' },
      'secret-name': { type: 'string' },
      service: { type: 'string' },
      dns: { type: 'string', multiple: true },
      ip: { type: 'string', multiple: true },
      validity: { type: 'string' },
      'webhook-config': { type: 'string' },
      kubeconfig: { type: 'string' },
    },
    async run(values) {
      const verb = 'create';
      const namespace = requiredName(values, verb, 'namespace', DNS_LABEL);
      const secretName = requiredName(values, verb, 'secret-name', DNS_SUBDOMAIN);
      const service = requiredName(values, verb, 'service', DNS_LABEL);
      const webhookConfig = optionalName(values, verb, 'webhook-config');
      const dnsNames = [...serviceDnsNames(service, namespace), ...strings(values['dns'])];
      const ipAddresses = strings(values['ip']);
      try {
        checkSubjectAltNames(dnsNames, ipAddresses);
      } catch (error) {
        throw new UsageError(`create: ${messageOf(error)}`);
      }
      const validityDays = parseValidity(values['validity']);
      const cluster = await connectCluster(values);
      const { runCreate } = await import('./run.ts');
      const result = await runCreate(cluster, {
        namespace,
        secretName,
        webhookConfig,
        dnsNames,
        ipAddresses,
        validityDays,
      });
      process.stdout.write(`${result.summary}\n`);
    },
  },
  patch: {
    options: {
      'webhook-config': { type: 'string' },
      namespace: { type: 'string' },
      'secret-name': { type: 'string' },
      kubeconfig: { type: 'string' },
    },
    async run(values) {
      const verb = 'patch';
      const webhookConfig = requiredName(values, verb, 'webhook-config', DNS_SUBDOMAIN);
      const namespace = requiredName(values, verb, 'namespace', DNS_LABEL);
      const secretName = requiredName(values, verb, 'secret-name', DNS_SUBDOMAIN);
      const cluster = await connectCluster(values);
      const { runPatch } = await import('./run.ts');
      const result = await runPatch(cluster, { namespace, secretName, webhookConfig });
      process.stdout.write(`${result.summary}\n`);
    },
  },
};

// Namespaces and Services are DNS labels, Secrets and webhook configurations DNS subdomains.
interface NameRule {
  readonly valid: (name: string) => boolean;
  readonly what: string;
}
const DNS_LABEL: NameRule = { valid: isDnsLabel, what: 'a DNS label (lowercase, at most 63 characters)' };
const DNS_SUBDOMAIN: NameRule = { valid: isDnsSubdomain, what: 'a DNS subdomain (lowercase, at most 253 characters)' };

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function requiredName(values: Values, verb: string, flag: string, rule: NameRule): string {
  const value = values[flag];
  if (typeof value !== 'string' || value === '') throw new UsageError(`${verb}: --${flag} is required`);
  if (!rule.valid(value)) throw new UsageError(`${verb}: --${flag} must be ${rule.what}, got '${value}'`);
  return value;
}

function optionalName(values: Values, verb: string, flag: string): string | undefined {
  return values[flag] === undefined ? undefined : requiredName(values, verb, flag, DNS_SUBDOMAIN);
}

/** Loaded only by create and patch: the API client takes most of a second to load, and local never needs it. */
async function connectCluster(values: Values): Promise<Cluster> {
  const [{ loadKubeConfig }, { connect }] = await Promise.all([
    import('../src/k8s/kube-config.ts'),
    import('./cluster.ts'),
  ]);
  return connect(loadKubeConfig({ flag: optionalString(values['kubeconfig']), env: process.env }));
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    const [verbName, ...rest] = argv;
    if (verbName === '-h' || verbName === '--help' || rest.includes('-h') || rest.includes('--help')) {
      process.stdout.write(HELP);
      return 0;
    }
    if (verbName === undefined) throw new UsageError('missing verb; run certs-gen --help');
    const verb = Object.hasOwn(verbs, verbName) ? verbs[verbName] : undefined;
    if (verb === undefined) throw new UsageError(`unknown verb '${verbName}'; run certs-gen --help`);
    const { values } = parseFlags({ args: rest, options: verb.options, allowPositionals: false });
    await verb.run(values);
    return 0;
  } catch (error) {
    process.stderr.write(`certs-gen: ${messageOf(error)}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

function parseValidity(raw: unknown): number {
  if (raw === undefined) return LOCAL_DEFAULT_VALIDITY_DAYS;
  const days = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(days >= 1 && days <= MAX_VALIDITY_DAYS)) {
    throw new UsageError(
      `--validity must be a whole number of days from 1 to ${MAX_VALIDITY_DAYS}, got '${String(raw)}'`,
    );
  }
  return days;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

// One line on stderr: multi-line messages (e.g. from the file system) are folded.
function messageOf(error: unknown): string {
  return oneLine(error instanceof Error ? error.message : String(error));
}

if (import.meta.main) {
  exitOnCrash(LOG_BASE);
  process.exitCode = await main(process.argv.slice(2));
  reportLingering(LOG_BASE, LINGER_REPORT_MS);
}
