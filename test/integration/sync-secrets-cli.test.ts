// sync-secrets as a user meets it without a cluster: flags, exit codes, one-line errors naming the
// entry and file, and --dry-run --namespace printing kubectl's Secret without reading any kubeconfig.
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseSyncSecretsArgs } from '../../src/cli/sync-secrets.ts';
import { tempDir } from '../support/temp-dir.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const dir = tempDir('sync-cli');
const file = (name: string, content: string): string => {
  writeFileSync(join(dir, name), content);
  return join(dir, name);
};
const USERNAME = '5f0c8a2e-1b3d-4e6f-8a9b-0c1d2e3f4a5b';
const PASSWORD = 'Qw7~zX9:pÄss€-VeRy.SeCrEt_0123456789';
const USER_FILE = file('username', `${USERNAME}\n`);
const PASS_FILE = file('password', PASSWORD);
const CONFIG = file(
  'config.yaml',
  'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
    `    credentials: {usernameFile: ${USER_FILE}, passwordFile: ${PASS_FILE}}\n`,
);

/** A loopback port that was free a moment ago: connecting to it is refused. */
function closedPort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => ok(port));
    });
    server.on('error', fail);
  });
}

function run(args: string[], env: Record<string, string> = {}, timeout = 20_000) {
  const result = spawnSync(process.execPath, [MAIN, 'sync-secrets', ...args], {
    encoding: 'utf8',
    // No kubeconfig anywhere: a HOME without ~/.kube and a KUBECONFIG that does not exist.
    env: { PATH: process.env['PATH'] ?? '', HOME: dir, KUBECONFIG: join(dir, 'no-such-kubeconfig'), ...env },
    timeout,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('sync-secrets flags', () => {
  test.each([
    { why: 'no mode', args: ['--config', 'c'], message: 'exactly one of --once, --watch or --dry-run is required' },
    {
      why: 'two modes',
      args: ['--config', 'c', '--once', '--watch'],
      message: 'exactly one of --once, --watch or --dry-run is required',
    },
    {
      why: '--dry-run with --watch',
      args: ['--config', 'c', '--dry-run', '--watch'],
      message: 'exactly one of --once, --watch or --dry-run is required',
    },
    {
      why: '--namespace without --dry-run',
      args: ['--config', 'c', '--once', '--namespace', 'a'],
      message: '--namespace only goes with --dry-run',
    },
    {
      why: 'an unknown output format',
      args: ['--config', 'c', '--dry-run', '-o', 'xml'],
      message: '--output: "xml" is not one of json, yaml',
    },
    {
      why: 'a bad health port',
      args: ['--config', 'c', '--watch', '--health-port', '99999'],
      message: '--health-port: 99999 is not between 0 and 65535',
    },
    { why: 'no config', args: ['--once'], message: '--config (or ACR_PULL_WEBHOOK_CONFIG) is required' },
    ...['0', '1', '1.5', '-0.5', 'half', '5e-1', '.'].map((fraction) => ({
      why: `a token refresh fraction of ${fraction}`,
      args: ['--config', 'c', '--watch', `--token-refresh-fraction=${fraction}`],
      message: `--token-refresh-fraction: "${fraction}" is not above 0 and below 1`,
    })),
  ])('refuse $why', ({ args, message }) => {
    expect(() => parseSyncSecretsArgs(args, {})).toThrow(message);
  });

  test('take defaults, environment, then flags', () => {
    expect(parseSyncSecretsArgs(['--watch'], { ACR_PULL_WEBHOOK_CONFIG: '/c.yaml' })).toMatchObject({
      config: '/c.yaml',
      mode: 'watch',
      healthPort: 8081,
      resyncSeconds: 300,
      watchStallSeconds: 60,
      leaseNamespace: undefined,
    });
    expect(
      parseSyncSecretsArgs(['--config', 'f', '--watch', '--health-port', '9000'], {
        ACR_PULL_WEBHOOK_SYNC_HEALTH_PORT: '1',
        ACR_PULL_WEBHOOK_LEASE_NAMESPACE: 'ops',
      }),
    ).toMatchObject({ healthPort: 9000, leaseNamespace: 'ops' });
    expect(parseSyncSecretsArgs(['--config', 'f', '--dry-run', '--once'], {}).mode).toBe('dry-run');
  });

  test('take the API rate limit from the defaults (2000/s, burst 4000), the environment, then the flags', () => {
    expect(parseSyncSecretsArgs(['--config', 'f', '--once'], {}).kubeApi).toEqual({ qps: 2000, burst: 4000 });
    const env = { ACR_PULL_WEBHOOK_KUBE_API_QPS: '50', ACR_PULL_WEBHOOK_KUBE_API_BURST: '60' };
    expect(parseSyncSecretsArgs(['--config', 'f', '--watch'], env).kubeApi).toEqual({ qps: 50, burst: 60 });
    const flags = ['--config', 'f', '--watch', '--kube-api-qps', '0', '--kube-api-burst=1'];
    expect(parseSyncSecretsArgs(flags, env).kubeApi).toEqual({ qps: 0, burst: 1 });
    expect(() => parseSyncSecretsArgs(['--config', 'f', '--once', '--kube-api-burst', '0'], {})).toThrow(
      '--kube-api-burst',
    );
    expect(() => parseSyncSecretsArgs(['--config', 'f', '--once', '--kube-api-qps', '-1'], {})).toThrow(
      '--kube-api-qps',
    );
  });

  test.each([
    { source: 'the default', argv: [], env: {}, concurrency: 32 },
    { source: 'the environment', argv: [], env: { ACR_PULL_WEBHOOK_SYNC_CONCURRENCY: '8' }, concurrency: 8 },
    {
      source: 'the flag over the environment',
      argv: ['--concurrency=64'],
      env: { ACR_PULL_WEBHOOK_SYNC_CONCURRENCY: '8' },
      concurrency: 64,
    },
  ])('take the concurrency from $source', ({ argv, env, concurrency }) => {
    expect(parseSyncSecretsArgs(['--config', 'f', '--once', ...argv], env).concurrency).toBe(concurrency);
  });

  test.each([
    { value: '0', error: '--concurrency: 0 is not between 1 and 1000' },
    { value: '1001', error: '--concurrency: 1001 is not between 1 and 1000' },
    { value: 'many', error: '--concurrency: "many" is not a whole number' },
  ])('refuse a concurrency of $value with one clear line', ({ value, error }) => {
    expect(() => parseSyncSecretsArgs(['--config', 'f', '--watch', '--concurrency', value], {})).toThrow(error);
  });

  test('take the token refresh fraction from the default, the environment, then the flag', () => {
    const env = { ACR_PULL_WEBHOOK_TOKEN_REFRESH_FRACTION: '0.75' };
    expect(parseSyncSecretsArgs(['--config', 'f', '--watch'], {}).tokenRefreshFraction).toBe(0.5);
    expect(parseSyncSecretsArgs(['--config', 'f', '--watch'], env).tokenRefreshFraction).toBe(0.75);
    const flag = ['--config', 'f', '--watch', '--token-refresh-fraction=.25'];
    expect(parseSyncSecretsArgs(flag, env).tokenRefreshFraction).toBe(0.25);
    expect(() =>
      parseSyncSecretsArgs(['--config', 'f', '--watch'], { ACR_PULL_WEBHOOK_TOKEN_REFRESH_FRACTION: '2' }),
    ).toThrow('--token-refresh-fraction: "2" is not above 0 and below 1');
  });
});

describe('acr-pull-webhook sync-secrets', () => {
  test('--help describes the modes and exits 0', () => {
    const result = run(['--help']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('--once');
    expect(result.stdout).toContain('--watch');
    expect(result.stdout).toContain(
      '  --health-port N         --watch: /healthz, /readyz and /metrics (default 8081)  ' +
        'ACR_PULL_WEBHOOK_SYNC_HEALTH_PORT\n',
    );
    expect(result.stdout).toContain(
      'An entry with credentials.azure (tenantId, clientId, federatedTokenFile or clientSecretFile)',
    );
    expect(result.stdout).toContain(
      '  --token-refresh-fraction F  --watch: renew an ACR token once this share of its lifetime has passed\n' +
        '                          (0 < F < 1, default 0.5)   ACR_PULL_WEBHOOK_TOKEN_REFRESH_FRACTION\n',
    );
  });

  test('a usage error exits 2 with one line', () => {
    const result = run(['--config', CONFIG]);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(
      'acr-pull-webhook sync-secrets: exactly one of --once, --watch or --dry-run is required',
    );
  });

  test('--dry-run --namespace prints the Secret kubectl would make, with no cluster at all', () => {
    const result = run(['--config', CONFIG, '--dry-run', '--namespace', 'team-a', '-o', 'json']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const ours = JSON.parse(result.stdout) as {
      metadata: Record<string, unknown>;
      data: Record<string, string>;
      type: string;
    };
    const kubectl = JSON.parse(
      execFileSync(
        'kubectl',
        [
          'create',
          'secret',
          'docker-registry',
          'acr-myregistry',
          '-n',
          'team-a',
          '--docker-server=myregistry.azurecr.io',
          `--docker-username=${USERNAME}`,
          `--docker-password=${PASSWORD}`,
          '--dry-run=client',
          '-o',
          'json',
        ],
        { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '', HOME: dir } },
      ),
    ) as typeof ours;
    expect(ours.data).toEqual(kubectl.data);
    expect(ours.type).toBe(kubectl.type);
    expect(ours.metadata).toMatchObject({
      name: 'acr-myregistry',
      namespace: 'team-a',
      labels: { 'app.kubernetes.io/managed-by': 'acr-pull-webhook' },
    });
  });

  test('--dry-run without --namespace needs a cluster and says so', () => {
    const result = run(['--config', CONFIG, '--dry-run'], { KUBECONFIG: '' });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(
      'acr-pull-webhook sync-secrets: no cluster credentials: not running in a cluster, ' +
        'and neither --kubeconfig, KUBECONFIG nor ~/.kube/config',
    );
  });

  test.each([
    {
      why: 'an entry has no credentials',
      config: () =>
        file('no-credentials.yaml', 'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n'),
      line: (path: string) =>
        `acr-pull-webhook sync-secrets: config ${path}: registries[0] (myregistry.azurecr.io -> acr-myregistry): ` +
        'credentials: is required by sync-secrets (usernameFile and passwordFile, or azure)',
    },
    {
      why: 'a password file is empty',
      config: () =>
        file(
          'empty-password.yaml',
          'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
            `    credentials: {usernameFile: ${USER_FILE}, passwordFile: ${file('empty', '')}}\n`,
        ),
      line: (path: string) =>
        `acr-pull-webhook sync-secrets: config ${path}: registries[0] (myregistry.azurecr.io -> acr-myregistry): ` +
        `credentials.passwordFile ${join(dir, 'empty')}: is empty`,
    },
    {
      why: "an azure entry's federated token file is missing",
      config: () =>
        file(
          'azure-no-token.yaml',
          'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
            '    credentials:\n      azure:\n        tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n' +
            '        clientId: 6731de76-14a6-49ae-97bc-6eba6914391e\n' +
            `        federatedTokenFile: ${join(dir, 'no-token')}\n`,
        ),
      line: (path: string) =>
        `acr-pull-webhook sync-secrets: config ${path}: registries[0] (myregistry.azurecr.io -> acr-myregistry): ` +
        `cannot read federatedTokenFile ${join(dir, 'no-token')} (ENOENT)`,
    },
  ])('fails at start, before any cluster call, when $why', ({ config, line }) => {
    const path = config();
    for (const mode of [['--once'], ['--watch'], ['--dry-run', '-n', 'x']]) {
      const result = run(['--config', path, ...mode]);
      expect(result.status).toBe(1);
      expect(result.stderr.trim()).toBe(line(path));
    }
  });

  test('an unreachable Entra ID is tried 5 times, 1 to 8 s apart, then start-up ends with one line', async () => {
    const port = await closedPort();
    const path = file(
      'azure-unreachable.yaml',
      'registries:\n  - server: myregistry.azurecr.io\n    secretName: acr-myregistry\n' +
        '    credentials:\n      azure:\n        tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47\n' +
        '        clientId: 6731de76-14a6-49ae-97bc-6eba6914391e\n' +
        `        clientSecretFile: ${PASS_FILE}\n` +
        // Nothing listens there, so every attempt is refused at once (a retriable failure).
        `        authorityHost: https://127.0.0.1:${port}/\n`,
    );
    const started = Date.now();
    const result = run(['--config', path, '--dry-run', '-n', 'team-a'], {}, 35_000);
    const elapsed = Date.now() - started;
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trimEnd().split('\n');
    const retries = lines.slice(0, -1).map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(retries.map((r) => [r['msg'], r['attempt'], r['stage']])).toEqual(
      [1, 2, 3, 4].map((attempt) => ['token request failed; retrying', attempt, 'entra']),
    );
    const entry = 'registries[0] (myregistry.azurecr.io -> acr-myregistry)';
    expect(lines.at(-1)?.startsWith(`acr-pull-webhook sync-secrets: config ${path}: ${entry}: `)).toBe(true);
    expect(lines.at(-1)).toContain(`Entra ID token request to 127.0.0.1:${port} failed (ECONNREFUSED)`);
    expect(elapsed).toBeGreaterThanOrEqual(15_000);
    expect(result.stderr).not.toContain(PASSWORD);
  }, 40_000);

  test('never prints a credential outside the manifests, even on failure', () => {
    const outputs = [
      run(['--config', CONFIG, '--dry-run', '-n', 'a', '--log-level', 'debug']).stderr,
      run(['--config', CONFIG, '--once', '--log-level', 'debug'], { KUBECONFIG: '' }).stderr,
    ].join('\n');
    for (const value of [USERNAME, PASSWORD, Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')])
      expect(outputs).not.toContain(value);
  });
});
