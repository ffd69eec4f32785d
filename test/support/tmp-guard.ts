// A vitest globalSetup, first in every project's list: the run gets a TMPDIR of its own, so os.tmpdir() in the
// test files, in their workers (forked after global setup, with its environment) and in the programs they start
// lands there; at teardown anything left in it fails the run, named entry by entry. The founders' rule is that
// a test removes every file, process and mount it makes; /tmp filled with hundreds of chart-values-* and
// serve-* dirs before this existed.
//
// Order: vitest tears a project's global setups down in reverse, so being first here means checking last,
// after e.g. the e2e control plane's own teardown has removed its data dir. Several projects in one run share
// one directory (the environment is per process): the last teardown checks.
//
// Not covered: a program started with a scrubbed environment (env: { PATH, HOME }) falls back to /tmp; pass
// a TMPDIR where such a program may write temporary files (test/support/helm.ts gives helm its own).
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

const PREFIX = 'acr-pull-webhook-tests-';
/** A guarded run's directory; the number is the pid of the vitest process that made it. */
const RUN_DIR = new RegExp(`^${PREFIX}(\\d+)-`);
const KEY = Symbol.for('acr-pull-webhook.tmp-guard');

interface Guard {
  readonly dir: string;
  readonly previous: string | undefined;
  users: number;
}

type GuardHolder = { [KEY]?: Guard };

export default function setup(): () => void {
  const holder = globalThis as GuardHolder;
  let guard = holder[KEY];
  if (guard === undefined) {
    const root = tmpdir();
    sweepDeadRuns(root);
    // The pid in the name lets the next run remove this directory if this one is SIGKILLed before teardown.
    guard = { dir: mkdtempSync(join(root, `${PREFIX}${process.pid}-`)), previous: process.env['TMPDIR'], users: 0 };
    process.env['TMPDIR'] = guard.dir;
    holder[KEY] = guard;
  }
  guard.users++;
  const mine = guard;
  return () => {
    if (--mine.users > 0) return;
    delete holder[KEY];
    if (mine.previous === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = mine.previous;
    check(mine.dir);
  };
}

/** Fails the run if `dir` is not empty; removes it unless a mount is left in it (a recursive rm would descend
 *  into the mounted file system). */
function check(dir: string): void {
  const left = readdirSync(dir).sort();
  const mounts = mountsUnder(dir);
  const lines = left.map((name) => `  ${describe(dir, name, mounts)}`);
  if (mounts.length === 0) rmSync(dir, { recursive: true, force: true });
  if (left.length === 0) return;
  const removal =
    mounts.length === 0
      ? 'They have been removed now.'
      : `Nothing was removed: unmount the mounts first (umount -R), then rm -r ${dir}.`;
  const message =
    `TEMP FILES LEFT BEHIND: the tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in their ` +
    `TMPDIR ${dir}. Every test must remove what it makes (afterAll/onTestFinished, or a disposer); the name ` +
    `prefix is the mkdtemp prefix of the maker:\n${lines.join('\n')}\n${removal}`;
  // vitest 4 only logs an error thrown by a global teardown ("error during close") and still exits 0.
  process.exitCode = 1;
  throw new Error(message);
}

/** Leftovers made by a program rather than by a test's own mkdtemp, with what to do about them. */
const KNOWN: Record<string, string> = {
  'node-compile-cache':
    "Node's compile cache in os.tmpdir(): a child ran npm (which enables it) or called " +
    'module.enableCompileCache(); start it with NODE_DISABLE_COMPILE_CACHE=1',
};

function describe(dir: string, name: string, mounts: readonly string[]): string {
  const known = KNOWN[name] === undefined ? '' : ` — ${KNOWN[name]}`;
  return `${describeEntry(dir, name, mounts)}${known}`;
}

function describeEntry(dir: string, name: string, mounts: readonly string[]): string {
  const path = join(dir, name);
  const mounted = mounts.filter((mount) => mount === path || mount.startsWith(`${path}/`));
  const mountNote =
    mounted.length === 0 ? '' : ` — MOUNT${mounted.length === 1 ? '' : 'S'} still attached: ${mounted.join(', ')}`;
  let stat: ReturnType<typeof lstatSync>;
  try {
    stat = lstatSync(path);
  } catch {
    return `${name} (gone while listing)`;
  }
  if (stat.isDirectory()) {
    let inside: string[] = [];
    try {
      inside = readdirSync(path).sort();
    } catch {
      // unreadable: the name alone still says who made it
    }
    const shown = inside.slice(0, 5).join(', ') + (inside.length > 5 ? ', ...' : '');
    return `${name}/ (directory, ${inside.length} entr${inside.length === 1 ? 'y' : 'ies'}${
      inside.length === 0 ? '' : `: ${shown}`
    })${mountNote}`;
  }
  if (stat.isSymbolicLink()) return `${name} (symbolic link)${mountNote}`;
  if (stat.isSocket()) return `${name} (unix socket: a server that was not closed?)${mountNote}`;
  if (stat.isFIFO()) return `${name} (fifo)${mountNote}`;
  return `${name} (file, ${stat.size} bytes)${mountNote}`;
}

/** Mount points at or below `dir` in this process's mount namespace (/proc/self/mountinfo, field 5, with
 *  the kernel's octal escapes for blanks). A mount made in another namespace (the node tier's holder) is not
 *  visible here, and a plain rm removes what it left on this side. */
function mountsUnder(dir: string): string[] {
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  return table
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .map((field) =>
      field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((mount) => mount === dir || mount.startsWith(`${dir}/`));
}

/** The TMPDIRs of guarded runs whose process is gone (SIGKILLed before its teardown), under `root` (default:
 *  the directory that holds this run's). A harness with an orphan sweep (control-plane.ts, node/cluster.ts)
 *  looks in these as well as in os.tmpdir(): a killed run left its dirs, and perhaps processes, there. */
export function deadRunDirs(root: string = guardRoot()): string[] {
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return [];
  }
  return entries
    .filter((entry) => {
      const match = RUN_DIR.exec(entry);
      return match !== null && !isAlive(Number(match[1]));
    })
    .map((entry) => join(root, entry));
}

function guardRoot(): string {
  const current = tmpdir();
  return RUN_DIR.test(basename(current)) ? dirname(current) : current;
}

/** Removes dead runs' directories, except those still holding a harness's dir (with its owner.pid): that
 *  harness's own sweep, which also kills what the dir's processes left running, removes it first. */
function sweepDeadRuns(root: string): void {
  for (const dir of deadRunDirs(root)) {
    if (mountsUnder(dir).length > 0) continue;
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    if (entries.some((entry) => existsSync(join(dir, entry, 'owner.pid')))) continue;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether a process with this pid exists (EPERM: it does, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
