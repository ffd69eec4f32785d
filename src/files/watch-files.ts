// Noticing that mounted files changed. Kubernetes updates a Secret or ConfigMap volume by swapping
// a `..data` symlink, which fs.watch on the file itself can miss, so the directories are watched
// AND the files polled; the caller decides what changed by comparing bytes.
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** Calls `check` on any event in the files' directories and every `pollIntervalMs`; returns stop(). */
export function watchFiles(files: readonly string[], pollIntervalMs: number, check: () => void): () => void {
  const timer = setInterval(check, pollIntervalMs);
  timer.unref();
  const watchers: FSWatcher[] = [];
  for (const directory of new Set(files.map((file) => dirname(file)))) {
    try {
      const watcher = watch(directory, { persistent: false }, check);
      watcher.on('error', () => watcher.close());
      watchers.push(watcher);
    } catch {
      // Some filesystems cannot be watched; the poll still notices changes.
    }
  }
  return () => {
    clearInterval(timer);
    for (const watcher of watchers) watcher.close();
  };
}
