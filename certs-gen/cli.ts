// certs-gen entry point: parses the verb and its flags, runs it, and owns the exit code.
// Verbs live in the table below so the cluster verbs (create, patch) slot in beside `local`.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { inspectCertificate } from './generate.ts';
import {
  CA_VALIDITY_FACTOR,
  LOCAL_DEFAULT_VALIDITY_DAYS,
  buildLocalCertificates,
  writeLocalFiles,
} from './local.ts';

const HELP = `Usage: certs-gen <verb> [options]

Issues the TLS certificate of the acr-pull-webhook admission webhook.

Verbs:
  local    Write a new CA and a serving certificate signed by it into a directory,
           for running the webhook outside a cluster.

Options for local:
  --out DIR         directory for ca.crt, tls.crt and tls.key (mode 0600); created if
                    missing (its parent must exist), existing files are replaced
  --dns NAME        DNS name for the serving certificate; repeatable
  --ip ADDR         IP address for the serving certificate; repeatable
                    (with neither --dns nor --ip: localhost, 127.0.0.1 and ::1)
  --validity DAYS   days the serving certificate is valid (default ${LOCAL_DEFAULT_VALIDITY_DAYS}, at most 36500);
                    the CA is valid ${CA_VALIDITY_FACTOR} times as long

  -h, --help        show this help

Exit codes:
  0  success
  1  failure (e.g. the files could not be written)
  2  usage error (unknown verb or option, missing or invalid value)
`;

const MAX_VALIDITY_DAYS = 36_500;

class UsageError extends Error {}

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
      process.stdout.write(`wrote ${paths.join(', ')}\ntls.crt: ${names}; valid until ${info.notAfter.toISOString()}\n`);
    },
  },
};

const PLANNED_VERBS = new Set(['create', 'patch']);

export async function main(argv: readonly string[]): Promise<number> {
  try {
    const [verbName, ...rest] = argv;
    if (verbName === '-h' || verbName === '--help' || rest.includes('-h') || rest.includes('--help')) {
      process.stdout.write(HELP);
      return 0;
    }
    if (verbName === undefined) throw new UsageError('missing verb; run certs-gen --help');
    if (PLANNED_VERBS.has(verbName)) throw new UsageError(`verb '${verbName}' is not implemented yet`);
    const verb = verbs[verbName];
    if (verb === undefined) throw new UsageError(`unknown verb '${verbName}'; run certs-gen --help`);
    const { values } = parseFlags(rest, verb.options);
    await verb.run(values);
    return 0;
  } catch (error) {
    process.stderr.write(`certs-gen: ${messageOf(error)}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

function parseFlags(args: string[], options: ParseArgsOptionsConfig) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
}

function parseValidity(raw: unknown): number {
  if (raw === undefined) return LOCAL_DEFAULT_VALIDITY_DAYS;
  const days = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(days >= 1 && days <= MAX_VALIDITY_DAYS)) {
    throw new UsageError(`--validity must be a whole number of days from 1 to ${MAX_VALIDITY_DAYS}, got '${String(raw)}'`);
  }
  return days;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

// One line on stderr: multi-line messages (e.g. from the file system) are folded.
function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replaceAll(/\s*\n\s*/g, ' ');
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
