#!/usr/bin/env node
// The acr-pull-webhook command: dispatches verbs, turns errors into one line and an exit code.
// Exit codes: 0 success, 1 failure (bad config, certificate, port, cluster), 2 usage error.
// Each verb is loaded only when it runs: sync-secrets' API client takes most of a second to load.
import { readFileSync } from 'node:fs';
import { exitOnCrash, reportLingering } from '../process/crash.ts';
import { UsageError } from '../process/flags.ts';
import { oneLine } from '../process/startup.ts';

const LOG_BASE = { service: 'acr-pull-webhook' };
/** After a verb has returned, how long before whatever still holds the process is named. */
const LINGER_REPORT_MS = 5_000;

const USAGE = `Usage: acr-pull-webhook <command> [options]

Commands:
  serve     serve the mutating admission webhook
  explain   show, offline, what the webhook would add to a Pod or workload
  sync-secrets  create and keep the pull secrets in every opted-in namespace
  check-injection  check a running install: dry-run Pod injected, pull secrets present
  doctor    check a running install, or one pod, and say what to fix

Run 'acr-pull-webhook <command> --help' for a command's options.
Exit codes: 0 success, 1 failure (configuration, certificate, port, cluster), 2 usage error.
`;

interface Verb {
  readonly usage: string;
  readonly run: (argv: readonly string[]) => Promise<number> | number;
}

const VERBS: Record<string, () => Promise<Verb>> = {
  serve: async () => {
    const { SERVE_USAGE, runServe } = await import('./serve.ts');
    return { usage: SERVE_USAGE, run: runServe };
  },
  explain: async () => {
    const { EXPLAIN_USAGE, runExplain } = await import('./explain.ts');
    return {
      usage: EXPLAIN_USAGE,
      run: (argv) =>
        runExplain(
          argv,
          () => readFileSync(0, 'utf8'),
          (text) => process.stdout.write(`${text}\n`),
        ),
    };
  },
  'sync-secrets': async () => {
    const { SYNC_SECRETS_USAGE, runSyncSecrets } = await import('./sync-secrets.ts');
    return { usage: SYNC_SECRETS_USAGE, run: runSyncSecrets };
  },
  'check-injection': async () => {
    const { CHECK_INJECTION_USAGE, runCheckInjection } = await import('./check-injection.ts');
    return {
      usage: CHECK_INJECTION_USAGE,
      run: (argv) => runCheckInjection(argv, process.env, (line) => process.stdout.write(`${line}\n`)),
    };
  },
  doctor: async () => {
    const { DOCTOR_USAGE, runDoctor } = await import('./doctor.ts');
    const colour = process.stdout.isTTY === true && !process.env['NO_COLOR'];
    return {
      usage: DOCTOR_USAGE,
      run: (argv) => runDoctor(argv, process.env, (line) => process.stdout.write(`${line}\n`), colour),
    };
  },
};

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const load = Object.hasOwn(VERBS, name) ? VERBS[name] : undefined;
  if (load === undefined) {
    process.stderr.write(`acr-pull-webhook: unknown command "${name}"\n${USAGE}`);
    return 2;
  }
  try {
    const verb = await load();
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(verb.usage);
      return 0;
    }
    return await verb.run(rest);
  } catch (error) {
    const message = oneLine(error instanceof Error ? error.message : String(error));
    if (error instanceof UsageError) {
      process.stderr.write(`acr-pull-webhook ${name}: ${message}\nRun 'acr-pull-webhook ${name} --help' for usage.\n`);
      return 2;
    }
    process.stderr.write(`acr-pull-webhook ${name}: ${message}\n`);
    return 1;
  }
}

if (import.meta.main) {
  exitOnCrash(LOG_BASE);
  process.exitCode = await main(process.argv.slice(2));
  reportLingering(LOG_BASE, LINGER_REPORT_MS);
}
