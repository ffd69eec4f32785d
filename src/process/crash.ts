// What both entry points (acr-pull-webhook, certs-gen) do when an error escapes every handler: one
// fatal pino line on stderr, which log pipelines parse, instead of Node's multi-line stack trace, and
// exit 1. A crash leaves state nobody can vouch for, so the process exits at once without a shutdown.
import pino, { type Logger } from 'pino';

/** Fields on every line, as the commands' own loggers set them (pino's pid and hostname are left out). */
export type LogBase = Readonly<Record<string, string>>;

/** pino JSON lines on stderr, written synchronously: nothing is lost when the process exits right after. */
export function stderrLogger(base: LogBase, level = 'info'): Logger {
  return pino({ level, base }, pino.destination({ dest: 2, sync: true }));
}

/** Installs the crash handlers; call first thing in an entry point. */
export function exitOnCrash(base: LogBase): void {
  let crashed = false;
  const crash = (message: string, error: unknown): void => {
    // A second error while the first is being logged must not log twice.
    if (crashed) return;
    crashed = true;
    try {
      stderrLogger(base).fatal({ err: error }, message);
    } finally {
      process.exit(1);
    }
  };
  process.on('uncaughtException', (error) => crash('uncaught exception', error));
  process.on('unhandledRejection', (reason) => crash('unhandled rejection', reason));
}

/**
 * Once a command has finished, says what still keeps the process alive after `graceMs` (a socket or
 * timer something forgot to close) instead of forcing an exit that would hide it. The timer is
 * unref'd: it fires only when something else still holds the event loop.
 */
export function reportLingering(base: LogBase, graceMs: number): void {
  setTimeout(() => {
    stderrLogger(base).warn(
      { graceMs, resources: process.getActiveResourcesInfo() },
      'finished, but still running: these resources were not closed',
    );
  }, graceMs).unref();
}
