// Log lines written off the event loop, in batches, with a bounded buffer: `serve` on
// stdout (its review lines) and `sync-secrets --once` on stderr (a line per Secret created: written one
// write(2) each, they were a fifth of its CPU at 5,000 namespaces).
import pino from 'pino';

/** Log bytes held while the output is slower than the lines (about 3,000 review lines). */
export const LOG_BUFFER_MAX_BYTES = 1024 * 1024;
/** Lines are written once this many bytes wait... */
export const LOG_BATCH_BYTES = 4096;
/** ...or at the latest this long after they were logged. */
export const LOG_FLUSH_INTERVAL_MS = 250;

/**
 * Stdout (1) or stderr (2), written off the event loop, in batches, with a bounded buffer: when the log reader stalls
 * (a stuck container runtime), the process neither blocks in write(2) nor grows; lines past LOG_BUFFER_MAX_BYTES are
 * dropped (the stream emits 'drop'). A write per line costs more CPU than admitting a pod or creating a Secret.
 * Pino flushes what is queued when the process exits.
 */
export function createLogDestination(dest: 1 | 2 = 1): pino.DestinationStream & NodeJS.EventEmitter {
  return pino.destination({
    dest,
    sync: false,
    minLength: LOG_BATCH_BYTES,
    periodicFlush: LOG_FLUSH_INTERVAL_MS,
    maxLength: LOG_BUFFER_MAX_BYTES,
  });
}
