// Starting a long-running command in steps (ports, watches, timers) so that a failed step undoes the
// ones before it: a process that cannot start exits with one line instead of half-running.
import type { Server } from 'node:net';

/** A start-up step failed; the message is one line naming what (port, address, file) and why. */
export class StartupError extends Error {
  override name = 'StartupError';
}

/**
 * Runs `start`, which calls `undo(close)` after each thing it has started. When `start` throws, every
 * registered close runs, last first, and the error is rethrown; a failing close does not hide it.
 */
export async function startOrUndo<T>(start: (undo: (close: () => unknown) => void) => Promise<T>): Promise<T> {
  const closes: (() => unknown)[] = [];
  try {
    return await start((close) => void closes.push(close));
  } catch (error) {
    for (const close of closes.reverse()) {
      try {
        await close();
      } catch {
        // The start-up error is the one to report.
      }
    }
    throw error;
  }
}

const LISTEN_FAILURES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available on this host',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name cannot be resolved now',
};

/** `host:port`, with IPv6 addresses in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A failed listen as one line: `<what> <host>:<port>: <reason> (<code>)`. */
export function listenError(what: string, host: string, port: number, error: unknown): StartupError {
  const code = (error as NodeJS.ErrnoException).code;
  const known = code === undefined ? undefined : LISTEN_FAILURES[code];
  const reason = known ?? oneLine(error instanceof Error ? error.message : String(error));
  return new StartupError(`${what} ${hostPort(host, port)}: ${reason}${known === undefined ? '' : ` (${code})`}`);
}

/** Listens on `host:port`; resolves with the port bound (port 0 picks one), rejects with listenError. */
export function listen(server: Server, what: string, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (error: Error): void => reject(listenError(what, host, port, error));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.removeListener('error', failed);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

/** An error message folded onto one line: messages from the file system or parsers can span several. */
export function oneLine(message: string): string {
  return message.replaceAll(/\s*\n\s*/g, ' ').trim();
}
