#!/usr/bin/env node
// The acr-pull-webhook command: dispatches verbs, turns errors into one line and an exit code.
// Exit codes: 0 success, 1 failure (bad config, certificate, cluster), 2 usage error.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/config.ts';
import { CertificateError } from '../tls/certificate-source.ts';
import { EXPLAIN_USAGE, runExplain } from './explain.ts';
import { runServe, SERVE_USAGE } from './serve.ts';
import { runSyncSecrets, SYNC_SECRETS_USAGE } from './sync-secrets.ts';
import { UsageError } from './usage-error.ts';

const USAGE = `Usage: acr-pull-webhook <command> [options]

Commands:
  serve     serve the mutating admission webhook
  explain   show, offline, what the webhook would add to a Pod or workload
  sync-secrets  create and keep the pull secrets in every opted-in namespace

Run 'acr-pull-webhook <command> --help' for a command's options.
Exit codes: 0 success, 1 failure (configuration, certificate, cluster), 2 usage error.
`;

const COMMANDS: Record<string, { usage: string; run: (argv: readonly string[]) => Promise<number> | number }> = {
  serve: { usage: SERVE_USAGE, run: runServe },
  explain: {
    usage: EXPLAIN_USAGE,
    run: (argv) =>
      runExplain(
        argv,
        () => readFileSync(0, 'utf8'),
        (text) => process.stdout.write(`${text}\n`),
      ),
  },
  'sync-secrets': { usage: SYNC_SECRETS_USAGE, run: runSyncSecrets },
};

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`acr-pull-webhook: unknown command "${name}"\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(
        `acr-pull-webhook ${name}: ${error.message}\nRun 'acr-pull-webhook ${name} --help' for usage.\n`,
      );
      return 2;
    }
    if (error instanceof ConfigError || error instanceof CertificateError) {
      process.stderr.write(`acr-pull-webhook ${name}: ${error.message}\n`);
      return 1;
    }
    process.stderr.write(`acr-pull-webhook ${name}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
