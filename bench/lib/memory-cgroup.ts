// A throw-away memory cgroup with a hard limit, for running one server process under the memory
// limit the chart gives the webhook: the kernel OOM-kills the process at the limit, as the kubelet's
// container runtime would. Needs root and a writable cgroup hierarchy (v1 memory controller, or v2
// with the memory controller available to the current cgroup). Checked here on cgroup v1.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MemoryCgroup {
  readonly path: string;
  /** Prefix for ServerSpec.launcher: a shell that joins the cgroup, then execs the rest of its arguments. */
  readonly launcher: readonly string[];
  /** Highest memory charged to the cgroup (its processes' anonymous memory and the page cache they touched), bytes. */
  peakBytes(): number;
  /** Processes the kernel killed for reaching the limit. */
  oomKills(): number;
  /** Removes the cgroup; its processes must have exited. */
  remove(): void;
}

const V1_ROOT = '/sys/fs/cgroup/memory';
const V2_ROOT = '/sys/fs/cgroup';

/** The current process's cgroup path in the memory hierarchy, and which version that is. */
function ownCgroup(): { version: 1 | 2; dir: string } {
  const lines = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  const v1 = lines.map((line) => line.split(':')).find(([, controllers]) => controllers?.split(',').includes('memory'));
  if (v1 !== undefined && existsSync(V1_ROOT)) return { version: 1, dir: join(V1_ROOT, v1.slice(2).join(':')) };
  const v2 = lines.map((line) => line.split(':')).find(([id, controllers]) => id === '0' && controllers === '');
  if (v2 !== undefined && existsSync(join(V2_ROOT, 'cgroup.controllers')))
    return { version: 2, dir: join(V2_ROOT, v2.slice(2).join(':')) };
  throw new Error('no memory cgroup hierarchy under /sys/fs/cgroup');
}

function readNumber(file: string): number {
  return Number(readFileSync(file, 'utf8').trim());
}

/** Reads `key value` lines (memory.events, memory.oom_control). */
function readKeyed(file: string, key: string): number {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(readFileSync(file, 'utf8'));
  return match ? Number(match[1]) : 0;
}

export function createMemoryCgroup(name: string, limitBytes: number): MemoryCgroup {
  let own: { version: 1 | 2; dir: string };
  let path: string;
  try {
    own = ownCgroup();
    path = join(own.dir, name);
    mkdirSync(path);
    if (own.version === 1) {
      writeFileSync(join(path, 'memory.limit_in_bytes'), String(limitBytes));
      // Without swap limits a v1 group can swap out instead of being killed; keep it like a container.
      if (existsSync(join(path, 'memory.memsw.limit_in_bytes')))
        writeFileSync(join(path, 'memory.memsw.limit_in_bytes'), String(limitBytes));
    } else {
      if (!existsSync(join(path, 'memory.max')))
        throw new Error(`the memory controller is not enabled for ${own.dir} (cgroup.subtree_control)`);
      writeFileSync(join(path, 'memory.max'), String(limitBytes));
      writeFileSync(join(path, 'memory.swap.max'), '0');
    }
  } catch (error) {
    throw new Error(
      `cannot make a memory cgroup (needs root and a writable cgroup hierarchy): ${(error as Error).message}`,
    );
  }
  const v1 = own.version === 1;
  return {
    path,
    launcher: ['sh', '-c', `echo $$ > '${join(path, 'cgroup.procs')}' && exec "$0" "$@"`],
    peakBytes: () => readNumber(join(path, v1 ? 'memory.max_usage_in_bytes' : 'memory.peak')),
    oomKills: () =>
      v1 ? readKeyed(join(path, 'memory.oom_control'), 'oom_kill') : readKeyed(join(path, 'memory.events'), 'oom_kill'),
    remove: () => rmdirSync(path),
  };
}
