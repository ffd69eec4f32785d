// A value read from mounted files and kept fresh: the serving certificate and the registry
// credentials. A change is decided by comparing bytes (the watch fires for any file in the directory,
// the poll runs regardless), the caller's `load` validates, and files that cannot be used are refused
// while the value in use stays. What is valid is the caller's; when and how to re-read is this.
import { readFileSync } from 'node:fs';
import { watchFiles } from './watch-files.ts';

/** A file's path and the bytes the current value was made from. */
export interface FileBytes {
  readonly path: string;
  readonly bytes: Buffer;
}

/** A value and the files it was made from. */
export interface Loaded<T> {
  readonly value: T;
  readonly files: readonly FileBytes[];
}

export interface ReloadingFilesOptions<T> {
  /** Reads and validates the files; throws an Error with a one-line message when they cannot be used. */
  readonly load: () => Loaded<T>;
  /** Further checks a changed value must pass before it replaces the current one; a reason refuses it. */
  readonly refuse?: (next: T) => string | undefined;
  readonly pollIntervalMs: number;
  /** Called with every new value that passed the checks, before it becomes current. */
  readonly onChange: (next: T) => void;
  /** Called when changed files cannot be used; the current value stays. */
  readonly onReject: (reason: string) => void;
  /** `once-per-reason`: a problem that persists across polls is reported once, until the files change. */
  readonly rejections: 'every-time' | 'once-per-reason';
}

export type ReloadResult = 'unchanged' | 'changed' | { readonly rejected: string };

export class ReloadingFiles<T> {
  private loaded: Loaded<T>;
  private lastRejection: string | undefined;
  private stopWatching: (() => void) | undefined;
  private readonly options: ReloadingFilesOptions<T>;

  /** Loads the initial value; throws what `load` throws. */
  constructor(options: ReloadingFilesOptions<T>) {
    this.options = options;
    this.loaded = options.load();
  }

  current(): T {
    return this.loaded.value;
  }

  /** Re-reads the files; a new value only when some file's bytes changed and it passes the checks. */
  reload(): ReloadResult {
    // Comparing bytes is cheap; parsing keys or building TLS contexts on every poll is not.
    if (this.sameBytes(this.loaded.files)) {
      this.lastRejection = undefined;
      return 'unchanged';
    }
    let next: Loaded<T>;
    try {
      next = this.options.load();
    } catch (error) {
      // A non-atomic update (one file, then the other) is briefly inconsistent; if the files are back
      // to the bytes in use by now, nothing changed.
      if (this.sameBytes(this.loaded.files)) return 'unchanged';
      return this.reject((error as Error).message);
    }
    if (sameFiles(next.files, this.loaded.files)) return 'unchanged';
    const refused = this.options.refuse?.(next.value);
    if (refused !== undefined) return this.reject(refused);
    this.lastRejection = undefined;
    this.options.onChange(next.value);
    this.loaded = next;
    return 'changed';
  }

  /** Starts watching the files' directories and polling. Idempotent. */
  start(): void {
    this.stopWatching ??= watchFiles(
      this.loaded.files.map((file) => file.path),
      this.options.pollIntervalMs,
      () => void this.reload(),
    );
  }

  stop(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  private reject(reason: string): ReloadResult {
    const repeated = reason === this.lastRejection && this.options.rejections === 'once-per-reason';
    this.lastRejection = reason;
    if (!repeated) this.options.onReject(reason);
    return { rejected: reason };
  }

  private sameBytes(files: readonly FileBytes[]): boolean {
    return files.every((file) => {
      try {
        return readFileSync(file.path).equals(file.bytes);
      } catch {
        return false;
      }
    });
  }
}

function sameFiles(a: readonly FileBytes[], b: readonly FileBytes[]): boolean {
  return a.length === b.length && a.every((file, i) => file.path === b[i]?.path && file.bytes.equals(b[i].bytes));
}
