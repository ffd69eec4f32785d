// The one way a test makes a temporary directory: under os.tmpdir() (the run's guarded TMPDIR, see
// tmp-guard.ts) and removed by vitest when it is no longer needed, so no test has to remember an rm.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

/** A new directory named `<prefix>-XXXXXX`, removed with everything in it after the test that asked for it
 *  (called inside a test) or after the tests of the file or describe block (called at collection time).
 *  Not from a beforeAll hook: vitest ignores an afterAll registered there (the tmp guard reports the dir). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch {
    // Not inside a test: onTestFinished throws before registering anything.
    afterAll(remove);
  }
  return dir;
}
