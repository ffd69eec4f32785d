// The CLI as a user meets it: exit codes, one-line errors naming the file and field, explain output.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../support/temp-dir.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const dir = tempDir('cli');
const file = (name: string, content: string): string => {
  writeFileSync(join(dir, name), content);
  return join(dir, name);
};
const GOOD_CONFIG = file(
  'good.yaml',
  [
    'registries:',
    '  - server: myregistry.azurecr.io',
    '    secretName: acr-myregistry',
    '  - server: "*.azurecr.cn"',
    '    secretName: acr-china',
    '',
  ].join('\n'),
);
const BAD_CONFIG = file('bad.yaml', 'registries:\n  - server: myregistry.azurecr.io\n    secretName: ACR_MyRegistry\n');

function run(args: string[], options: { env?: Record<string, string>; input?: string } = {}) {
  const result = spawnSync(process.execPath, [MAIN, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env['PATH'] ?? '', ...options.env },
    input: options.input ?? '',
    timeout: 20_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('acr-pull-webhook', () => {
  test('with no command prints usage and exits 2; --help exits 0', () => {
    expect(run([]).status).toBe(2);
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('serve     serve the mutating admission webhook');
  });

  test('an unknown command exits 2', () => {
    const result = run(['serv']);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe('acr-pull-webhook: unknown command "serv"');
  });

  test('serve without a config exits 2 naming the flag and its variable', () => {
    const result = run(['serve', '--tls-cert', 'x', '--tls-key', 'y']);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(
      'acr-pull-webhook serve: --config (or ACR_PULL_WEBHOOK_CONFIG) is required',
    );
  });

  test('serve with a bad port exits 2', () => {
    const result = run(['serve', '--config', GOOD_CONFIG, '--tls-cert', 'x', '--tls-key', 'y', '--port', '70000']);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe('acr-pull-webhook serve: --port: 70000 is not between 0 and 65535');
  });

  test('serve with a bad config, given by environment variable, exits 1 with one line naming file and field', () => {
    const result = run(['serve'], {
      env: { ACR_PULL_WEBHOOK_CONFIG: BAD_CONFIG, ACR_PULL_WEBHOOK_TLS_CERT: 'x', ACR_PULL_WEBHOOK_TLS_KEY: 'y' },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `acr-pull-webhook serve: config ${BAD_CONFIG}: registries[0].secretName: "ACR_MyRegistry" must be a valid ` +
        'Secret name (lowercase RFC 1123 subdomain, at most 253 characters)\n',
    );
  });

  test('serve with an unreadable certificate exits 1 with one line naming it', () => {
    const missing = join(dir, 'missing.crt');
    const result = run(['serve', '--config', GOOD_CONFIG, '--tls-cert', missing, '--tls-key', missing]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`acr-pull-webhook serve: tls-cert ${missing}: cannot be read (ENOENT)\n`);
  });

  test('serve with a certificate that is not PEM exits 1 naming it', () => {
    const notPem = file('not.pem', 'hello');
    const cert = file('cert.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const result = run(['serve', '--config', GOOD_CONFIG, '--tls-cert', cert, '--tls-key', notPem]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`acr-pull-webhook serve: tls-cert ${cert}: is not a PEM certificate\n`);
  });
});

describe('acr-pull-webhook explain', () => {
  const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
spec:
  template:
    spec:
      imagePullSecrets: [{name: acr-china}]
      initContainers: [{name: migrate, image: contoso.azurecr.cn/migrate:1}]
      containers:
        - {name: app, image: "myregistry.azurecr.io/team/app:v1"}
        - {name: proxy, image: "nginx:1.27"}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        metadata: {labels: {acr-pull-webhook/inject: disabled}}
        spec:
          containers: [{name: job, image: myregistry.azurecr.io/job}]
`;

  test('explains each image of each workload and what would be added', () => {
    const result = run(['explain', '--config', GOOD_CONFIG, file('deploy.yaml', deployment)]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(`Deployment team-a/web
  initContainers/migrate: contoso.azurecr.cn/migrate:1
    pulled from contoso.azurecr.cn, repository migrate
    matches *.azurecr.cn -> acr-china
  containers/app: myregistry.azurecr.io/team/app:v1
    pulled from myregistry.azurecr.io, repository team/app
    matches myregistry.azurecr.io -> acr-myregistry
  containers/proxy: nginx:1.27
    pulled from docker.io, repository library/nginx
    not myregistry.azurecr.io: host has 2 labels; the entry has 3
    not *.azurecr.cn: host has 2 labels; the entry has 3
  already listed: acr-china
  would add imagePullSecrets: acr-myregistry

CronJob nightly
  pod is labelled acr-pull-webhook/inject=disabled: left unchanged
  containers/job: myregistry.azurecr.io/job
    pulled from myregistry.azurecr.io, repository job
    matches myregistry.azurecr.io -> acr-myregistry
  would add nothing
`);
  });

  test('reads standard input and prints JSON with -o json', () => {
    const pod = JSON.stringify({
      kind: 'Pod',
      metadata: { name: 'p' },
      spec: { containers: [{ name: 'a', image: 'x.azurecr.cn/a' }] },
    });
    const result = run(['explain', '--config', GOOD_CONFIG, '-o', 'json', '-'], { input: pod });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)[0].explanation.secretsToAdd).toEqual(['acr-china']);
  });

  test('a manifest without a pod template is a usage error', () => {
    const result = run(['explain', '--config', GOOD_CONFIG, '-'], { input: 'kind: ConfigMap\nmetadata: {name: c}\n' });
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe('acr-pull-webhook explain: -: ConfigMap c has no pod template');
  });
});
