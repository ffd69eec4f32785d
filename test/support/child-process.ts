// Stopping the processes the tests start: politely first, then for sure.
import type { ChildProcess } from 'node:child_process';

/** Resolves with the exit code once the child has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((done) => child.once('exit', (code) => done(code)));
}

/** SIGTERM, then SIGKILL if it is still there after `graceMs`; resolves with the exit code. */
export async function terminate(child: ChildProcess, graceMs: number): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exitOf(child);
  clearTimeout(timer);
  return code;
}
