// The one flag parser of both command lines (acr-pull-webhook and certs-gen): node:util parseArgs
// with its errors as UsageError (exit 2), and the value checks the verbs share.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command line that cannot be acted on; the CLI prints it with the usage hint and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** node:util parseArgs (strict by default), with its first message line as a UsageError. */
export function parseFlags<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

/** Parses a whole number in [min, max] from a flag or environment variable, naming it when it is not one. */
export function parseInteger(value: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name}: "${value}" is not a whole number`);
  const number = Number(value);
  if (number < min || number > max) throw new UsageError(`${name}: ${number} is not between ${min} and ${max}`);
  return number;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** A pino level name, or a UsageError listing the valid ones. */
export function parseLogLevel(level: string): string {
  if (!LOG_LEVELS.includes(level))
    throw new UsageError(`--log-level: "${level}" is not one of ${LOG_LEVELS.join(', ')}`);
  return level;
}
