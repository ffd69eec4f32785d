import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('../../certs-gen/cli.ts', import.meta.url));

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

// The real process, so exit codes and stream contents are what a shell sees. It runs in a scratch
// directory so a relative --out that is wrongly accepted cannot land in the repository.
const scratch = await mkdtemp(join(tmpdir(), 'certs-gen-cli-'));

function certsGen(...args: string[]): Promise<Outcome> {
  return run([cli, ...args]);
}

function run(argv: string[], env?: NodeJS.ProcessEnv): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { cwd: scratch, env }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('certs-gen', () => {
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it.each([
    ['no verb', [], 'certs-gen: missing verb; run certs-gen --help\n'],
    ['an unknown verb', ['renew'], "certs-gen: unknown verb 'renew'; run certs-gen --help\n"],
    ['a verb named like an Object method', ['toString'], "certs-gen: unknown verb 'toString'; run certs-gen --help\n"],
    [
      'create without --namespace',
      ['create', '--secret-name', 's', '--service', 'hook'],
      'certs-gen: create: --namespace is required\n',
    ],
    [
      'create without --service',
      ['create', '--namespace', 'ns', '--secret-name', 's'],
      'certs-gen: create: --service is required\n',
    ],
    [
      'create with a namespace that is not a DNS label',
      ['create', '--namespace', 'Team_A', '--secret-name', 's', '--service', 'hook'],
      "certs-gen: create: --namespace must be a DNS label (lowercase, at most 63 characters), got 'Team_A'\n",
    ],
    [
      'create with a Secret name that is not a DNS subdomain',
      ['create', '--namespace', 'ns', '--secret-name', 'tls/key', '--service', 'hook'],
      "certs-gen: create: --secret-name must be a DNS subdomain (lowercase, at most 253 characters), got 'tls/key'\n",
    ],
    [
      'create with an invalid extra IP address',
      ['create', '--namespace', 'ns', '--secret-name', 's', '--service', 'hook', '--ip', '10.0.0.300'],
      'certs-gen: create: invalid IP address: "10.0.0.300"\n',
    ],
    [
      'create with a validity of zero days',
      ['create', '--namespace', 'ns', '--secret-name', 's', '--service', 'hook', '--validity', '0'],
      "certs-gen: --validity must be a whole number of days from 1 to 36500, got '0'\n",
    ],
    [
      'create with an option of patch only',
      ['create', '--namespace', 'ns', '--secret-name', 's', '--service', 'hook', '--out', 'x'],
      "certs-gen: Unknown option '--out'\n",
    ],
    [
      'patch without --webhook-config',
      ['patch', '--namespace', 'ns', '--secret-name', 's'],
      'certs-gen: patch: --webhook-config is required\n',
    ],
    [
      'patch without --secret-name',
      ['patch', '--webhook-config', 'hook', '--namespace', 'ns'],
      'certs-gen: patch: --secret-name is required\n',
    ],
    [
      'patch with an option of create only',
      ['patch', '--webhook-config', 'hook', '--namespace', 'ns', '--secret-name', 's', '--service', 'hook'],
      "certs-gen: Unknown option '--service'\n",
    ],
    ['local without --out', ['local'], 'certs-gen: local: --out DIR is required\n'],
    ['--out without a value', ['local', '--out'], "certs-gen: Option '--out <value>' argument missing\n"],
    ['an unknown option', ['local', '--out', 'x', '--force'], "certs-gen: Unknown option '--force'\n"],
    [
      'a stray argument',
      ['local', '--out', 'x', 'y'],
      "certs-gen: Unexpected argument 'y'. This command does not take positional arguments\n",
    ],
    [
      'a validity of zero days',
      ['local', '--out', 'x', '--validity', '0'],
      "certs-gen: --validity must be a whole number of days from 1 to 36500, got '0'\n",
    ],
    [
      'a validity that is not a number',
      ['local', '--out', 'x', '--validity', '1y'],
      "certs-gen: --validity must be a whole number of days from 1 to 36500, got '1y'\n",
    ],
    [
      'an invalid IP address',
      ['local', '--out', 'x', '--ip', '10.0.0.300'],
      'certs-gen: local: invalid IP address: "10.0.0.300"\n',
    ],
    [
      'an invalid DNS name',
      ['local', '--out', 'x', '--dns', 'under_score.example'],
      'certs-gen: local: invalid DNS name: "under_score.example"\n',
    ],
  ])('rejects %s as a usage error: exit 2, one line on stderr, nothing written', async (_case, args, message) => {
    expect(await certsGen(...args)).toEqual({ code: 2, stdout: '', stderr: message });
    expect(await readdir(scratch)).not.toContain('x');
  });

  it('prints help, including the exit codes, on --help and exits 0', async () => {
    const { code, stdout, stderr } = await certsGen('--help');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^Usage: certs-gen <verb> \[options\]\n/);
    expect(stdout).toContain(
      'Exit codes:\n  0  success, including "nothing to change" and "waiting for patch"\n  1  failure',
    );
    expect((await certsGen('local', '--help')).stdout).toBe(stdout);
  });

  it('writes ca.crt, tls.crt and a 0600 tls.key for local and exits 0', async () => {
    const out = join(scratch, 'certs');
    const { code, stdout, stderr } = await certsGen(
      'local',
      '--out',
      out,
      '--dns',
      'dev.example',
      '--ip',
      '::1',
      '--validity',
      '7',
    );
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(stdout).toMatch(/^wrote .*ca\.crt, .*tls\.crt, .*tls\.key\ntls\.crt: dev\.example, ::1; valid until \d{4}-/);
    expect((await readdir(out)).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
    expect((await stat(join(out, 'tls.key'))).mode & 0o777).toBe(0o600);
  });

  it.each([
    ['create', ['create', '--namespace', 'ns', '--secret-name', 's', '--service', 'hook']],
    ['patch', ['patch', '--webhook-config', 'hook', '--namespace', 'ns', '--secret-name', 's']],
  ])(
    'reports an unreachable API for %s as a failure: exit 1, one line naming the server and the call',
    async (_verb, args) => {
      // Port 39 of loopback: nothing listens there (and fetch does not bar it), so the connection is refused at once.
      const kubeconfig = join(scratch, 'unreachable.kubeconfig');
      await writeFile(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters: [{name: c, cluster: {server: "https://127.0.0.1:39"}}]',
          'users: [{name: u, user: {token: t}}]',
          'contexts: [{name: x, context: {cluster: c, user: u}}]',
          'current-context: x',
          '',
        ].join('\n'),
      );
      const { code, stdout, stderr } = await certsGen(...args, '--kubeconfig', kubeconfig);
      expect({ code, stdout }).toEqual({ code: 1, stdout: '' });
      expect(stderr).toMatch(
        new RegExp(
          '^certs-gen: cannot reach the Kubernetes API at https://127\\.0\\.0\\.1:39 ' +
            '\\(get (secrets "s" in namespace "ns"|mutatingwebhookconfigurations "hook")\\): ' +
            'connect ECONNREFUSED 127\\.0\\.0\\.1:39\\n$',
        ),
      );
    },
  );

  it('reports a kubeconfig it cannot read as a failure: exit 1, one line naming the file, and exits', async () => {
    const missing = join(scratch, 'missing.kubeconfig');
    const { code, stdout, stderr } = await certsGen(
      'patch',
      '--webhook-config',
      'hook',
      '--namespace',
      'ns',
      '--secret-name',
      's',
      '--kubeconfig',
      missing,
    );
    expect({ code, stdout }).toEqual({ code: 1, stdout: '' });
    expect(stderr).toMatch(new RegExp(`^certs-gen: cannot load kubeconfig ${missing}: ENOENT[^\\n]*\\n$`));
  });

  it('loads the Kubernetes API client only for create and patch: local and --help never do', async () => {
    const recorder = fileURLToPath(new URL('../support/record-modules.mjs', import.meta.url));
    const loaded = async (...args: string[]): Promise<string[]> => {
      const modulesFile = join(scratch, `modules-${args[0]}.txt`);
      const env = { PATH: process.env['PATH'] ?? '', RECORD_MODULES_FILE: modulesFile };
      const { code } = await run(['--import', recorder, cli, ...args], env);
      expect(code).not.toBe(-1);
      return (await readFile(modulesFile, 'utf8')).split('\n').filter((url) => url.includes('/@kubernetes/'));
    };
    expect(await loaded('--help')).toEqual([]);
    expect(await loaded('local', '--out', join(scratch, 'modules-local'))).toEqual([]);
    // The recorder sees the client when a verb needs it.
    const missing = join(scratch, 'missing.kubeconfig');
    const patch = ['patch', '--webhook-config', 'w', '--namespace', 'n', '--secret-name', 's', '--kubeconfig', missing];
    expect(await loaded(...patch)).not.toEqual([]);
  }, 30_000);

  it('reports a directory it cannot create as a failure: exit 1, one line on stderr', async () => {
    const { code, stdout, stderr } = await certsGen('local', '--out', join(scratch, 'missing', 'parent'));
    expect({ code, stdout }).toEqual({ code: 1, stdout: '' });
    expect(stderr).toMatch(/^certs-gen: local: ENOENT: no such file or directory, mkdir '.*parent'\n$/);
  });
});
