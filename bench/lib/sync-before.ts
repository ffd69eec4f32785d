// The build from before the secret watch (the parent of the first commit adding
// src/k8s/secret-watch.ts), checked out as a git worktree next to this one and compiled the way
// `npm run build` compiles, so its steady-state request rate is measured rather than estimated.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './processes.ts';

export interface BeforeBuild {
  readonly commit: string;
  readonly subject: string;
  readonly main: string;
  remove(): void;
}

const git = (args: readonly string[]): string =>
  execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', timeout: 60_000 }).trim();

/** The parent of the oldest commit that touches src/k8s/secret-watch.ts. */
export function commitBeforeSecretWatch(): { commit: string; subject: string } {
  const first = git(['log', '--format=%H', '--reverse', '--', 'src/k8s/secret-watch.ts']).split('\n')[0];
  if (first === undefined || first === '') throw new Error('no commit adds src/k8s/secret-watch.ts');
  const commit = git(['rev-parse', `${first}^`]);
  return { commit, subject: git(['log', '-1', '--format=%s', commit]) };
}

/** Checks the commit out and compiles it without blocking the event loop (it overlaps the first set-up). */
export async function buildBefore(log: (line: string) => void): Promise<BeforeBuild> {
  const { commit, subject } = commitBeforeSecretWatch();
  const dir = join(mkdtempSync(join(tmpdir(), 'acr-pull-webhook-sync-before-')), 'tree');
  const remove = (): void => {
    try {
      git(['worktree', 'remove', '--force', dir]);
    } catch {
      rmSync(dir, { recursive: true, force: true });
      git(['worktree', 'prune']);
    }
    rmSync(join(dir, '..'), { recursive: true, force: true });
  };
  try {
    git(['worktree', 'add', '--detach', dir, commit]);
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    log(`building ${commit.slice(0, 10)} (${subject}) in ${dir}`);
    await promisify(execFile)(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 300_000,
    });
    const main = join(dir, 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error(`the build of ${commit} has no ${main}`);
    return { commit, subject, main, remove };
  } catch (error) {
    remove();
    throw error;
  }
}
