// The reloading-file source behind the serving certificate and the registry credentials: a new value
// only when bytes changed and the caller's checks pass; refusals keep the value in use.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp-dir.ts';
import { ReloadingFiles, type ReloadingFilesOptions } from './reloading-files.ts';

/** One file holding a number; anything else cannot be used. */
function numberFile(rejections: ReloadingFilesOptions<number>['rejections']) {
  const path = join(tempDir('reloading'), 'value');
  writeFileSync(path, '1');
  const changes: number[] = [];
  const rejected: string[] = [];
  const source = new ReloadingFiles<number>({
    load: () => {
      const bytes = readFileSync(path);
      const value = Number(bytes.toString());
      if (!Number.isInteger(value)) throw new Error(`${path}: not a number`);
      return { value, files: [{ path, bytes }] };
    },
    refuse: (next) => (next < 0 ? 'negative' : undefined),
    pollIntervalMs: 60_000,
    onChange: (next) => changes.push(next),
    onReject: (reason) => rejected.push(reason),
    rejections,
  });
  return { source, changes, rejected, write: (text: string) => writeFileSync(path, text), path };
}

describe('a reloading file source', () => {
  test('reports unchanged while the bytes are those in use', () => {
    const { source, changes } = numberFile('every-time');
    expect([source.reload(), source.current(), changes]).toEqual(['unchanged', 1, []]);
  });

  test('takes new bytes that load and pass the checks, telling onChange before they become current', () => {
    const { source, changes, write } = numberFile('every-time');
    write('2');
    expect([source.reload(), source.current(), changes]).toEqual(['changed', 2, [2]]);
  });

  test('keeps the value in use when the new bytes do not load or are refused', () => {
    const { source, rejected, write, path } = numberFile('every-time');
    write('two');
    expect(source.reload()).toEqual({ rejected: `${path}: not a number` });
    write('-1');
    expect(source.reload()).toEqual({ rejected: 'negative' });
    expect([source.current(), rejected]).toEqual([1, [`${path}: not a number`, 'negative']]);
  });

  test.each([
    { rejections: 'every-time', reported: 2 },
    { rejections: 'once-per-reason', reported: 1 },
  ] as const)('with rejections $rejections, a problem seen on two polls is reported $reported times', (row) => {
    const { source, rejected, write } = numberFile(row.rejections);
    write('two');
    source.reload();
    source.reload();
    expect(rejected).toHaveLength(row.reported);
  });

  test('once-per-reason reports the same problem again after the files went back to the bytes in use', () => {
    const { source, rejected, write } = numberFile('once-per-reason');
    write('two');
    source.reload();
    write('1');
    source.reload();
    write('two');
    source.reload();
    expect(rejected).toHaveLength(2);
  });
});
