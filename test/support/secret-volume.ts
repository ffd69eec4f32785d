// Writes files the way the kubelet updates a mounted Secret: a timestamped directory, a `..data`
// symlink swapped atomically by rename, and user-visible names that link through `..data`.
import {
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class SecretVolume {
  readonly dir: string;
  private generation = 0;

  constructor(files: Record<string, string>) {
    this.dir = mkdtempSync(join(tmpdir(), 'secret-volume-'));
    this.update(files);
    for (const name of Object.keys(files)) symlinkSync(join('..data', name), join(this.dir, name));
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Replaces every file at once, as one atomic symlink swap. */
  update(files: Record<string, string>): void {
    const data = `..${++this.generation}_${Date.now()}`;
    mkdirSync(join(this.dir, data));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(this.dir, data, name), content);
    const previous = existsSync(join(this.dir, '..data')) ? readlinkSync(join(this.dir, '..data')) : undefined;
    symlinkSync(data, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (previous !== undefined) rmSync(join(this.dir, previous), { recursive: true });
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
