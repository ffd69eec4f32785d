// The one kubeconfig precedence (--kubeconfig, $KUBECONFIG merged as kubectl merges it, in-cluster,
// ~/.kube/config), against files in a temporary directory and an environment passed in.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { tempDir } from '../../test/support/temp-dir.ts';
import { inClusterNamespace, loadKubeConfig } from './kube-config.ts';

const dir = tempDir('kube-config');
const path = (name: string): string => join(dir, name);
const write = (name: string, lines: string[]): string => {
  writeFileSync(path(name), lines.join('\n'));
  return path(name);
};
/** A kubeconfig whose only cluster `name` points at `server`, with current-context `current` when given. */
const single = (file: string, name: string, server: string, current?: string): string =>
  write(file, [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{name: ${name}, cluster: {server: "${server}"}}]`,
    `users: [{name: ${name}, user: {token: ${name}-token}}]`,
    `contexts: [{name: ${name}, context: {cluster: ${name}, user: ${name}}}]`,
    ...(current === undefined ? [] : [`current-context: ${current}`]),
  ]);

const flagFile = single('flag', 'flag', 'https://flag:6443', 'flag');
const first = single('first', 'first', 'https://first:6443', 'first');
const second = single('second', 'second', 'https://second:6443', 'second');
const noCurrent = single('no-current', 'quiet', 'https://quiet:6443');
// Defines "first" again with another server, and a context of the same name pointing at it.
const redefines = single('redefines', 'first', 'https://impostor:6443', 'first');
const homeWithConfig = path('home');
mkdirSync(join(homeWithConfig, '.kube'), { recursive: true });
single(join('home', '.kube', 'config'), 'home', 'https://home:6443', 'home');
const emptyHome = path('empty-home');
mkdirSync(emptyHome);
const serviceAccount = path('serviceaccount');
mkdirSync(serviceAccount);
writeFileSync(join(serviceAccount, 'token'), 'sa-token');
writeFileSync(join(serviceAccount, 'namespace'), 'acr-system\n');
const inPod = { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' };

const load = (flag: string | undefined, env: NodeJS.ProcessEnv) =>
  loadKubeConfig({ flag, env, serviceAccountDir: serviceAccount });

describe('which credentials are used', () => {
  test.each([
    {
      why: '--kubeconfig wins over everything else',
      flag: flagFile,
      env: { KUBECONFIG: first, HOME: homeWithConfig, ...inPod },
      server: 'https://flag:6443',
      source: `kubeconfig ${flagFile}`,
    },
    {
      why: '$KUBECONFIG comes next, even inside a pod',
      flag: undefined,
      env: { KUBECONFIG: first, HOME: homeWithConfig, ...inPod },
      server: 'https://first:6443',
      source: `kubeconfig ${first} (KUBECONFIG)`,
    },
    {
      why: 'the in-cluster ServiceAccount comes before ~/.kube/config',
      flag: undefined,
      env: { HOME: homeWithConfig, ...inPod },
      server: 'https://10.0.0.1:443',
      source: 'the in-cluster ServiceAccount',
    },
    {
      why: 'an empty $KUBECONFIG counts as unset',
      flag: undefined,
      env: { KUBECONFIG: '', HOME: homeWithConfig, ...inPod },
      server: 'https://10.0.0.1:443',
      source: 'the in-cluster ServiceAccount',
    },
    {
      why: 'in a pod, an IPv6 service host is bracketed',
      flag: undefined,
      env: { HOME: emptyHome, KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      server: 'https://[fd00::1]:443',
      source: 'the in-cluster ServiceAccount',
    },
    {
      why: '~/.kube/config is the last resort',
      flag: undefined,
      env: { HOME: homeWithConfig },
      server: 'https://home:6443',
      source: `kubeconfig ${join(homeWithConfig, '.kube', 'config')}`,
    },
  ])('$why', ({ flag, env, server, source }) => {
    const loaded = load(flag, env);
    expect(loaded.kubeConfig.getCurrentCluster()?.server).toBe(server);
    expect(loaded.source).toBe(source);
  });

  test('in a pod, the ServiceAccount token file and CA authenticate', () => {
    const { kubeConfig } = load(undefined, { HOME: emptyHome, ...inPod });
    expect(kubeConfig.getCurrentCluster()?.caFile).toBe(join(serviceAccount, 'ca.crt'));
    expect(kubeConfig.getCurrentUser()?.authProvider).toEqual({
      name: 'tokenFile',
      config: { tokenFile: join(serviceAccount, 'token') },
    });
    expect(inClusterNamespace(serviceAccount)).toBe('acr-system');
  });
});

describe('a $KUBECONFIG list is merged as kubectl merges it', () => {
  test.each([
    {
      why: 'current-context comes from the first file that sets it',
      list: [noCurrent, second, first],
      server: 'https://second:6443',
    },
    {
      why: 'a name two files define keeps the first definition',
      list: [first, redefines],
      server: 'https://first:6443',
    },
    {
      why: 'files that do not exist are skipped',
      list: [path('missing'), first],
      server: 'https://first:6443',
    },
  ])('$why', ({ list, server }) => {
    const { kubeConfig } = load(undefined, { KUBECONFIG: list.join(':'), HOME: emptyHome });
    expect(kubeConfig.getCurrentCluster()?.server).toBe(server);
  });

  test('every file contributes its clusters, users and contexts', () => {
    const { kubeConfig } = load(undefined, { KUBECONFIG: `${first}:${second}:${noCurrent}`, HOME: emptyHome });
    expect(kubeConfig.getContexts().map((context) => context.name)).toEqual(['first', 'second', 'quiet']);
    expect(kubeConfig.getClusters().map((cluster) => cluster.name)).toEqual(['first', 'second', 'quiet']);
    expect(kubeConfig.getUsers().map((user) => user.name)).toEqual(['first', 'second', 'quiet']);
    kubeConfig.setCurrentContext('quiet');
    expect(kubeConfig.getCurrentUser()?.token).toBe('quiet-token');
  });
});

describe('failing in one line', () => {
  const garbage = write('garbage', ['clusters: [', '  {name']);
  test.each([
    {
      why: 'a --kubeconfig that does not exist',
      flag: path('absent'),
      env: {},
      message: /^cannot load kubeconfig .*absent: ENOENT: no such file or directory/,
    },
    {
      why: 'a file that is not YAML',
      flag: garbage,
      env: {},
      message: /^cannot load kubeconfig .*garbage: [^\n]+$/,
    },
    {
      why: 'a $KUBECONFIG naming no file that exists',
      flag: undefined,
      env: { KUBECONFIG: `${path('a')}:${path('b')}`, HOME: homeWithConfig },
      message: /^cannot load kubeconfig: no file in KUBECONFIG exists \(.*a:.*b\)$/,
    },
    {
      why: 'files with no current context',
      flag: undefined,
      env: { KUBECONFIG: noCurrent, HOME: emptyHome },
      message: /^kubeconfig .*no-current \(KUBECONFIG\) has no current context with a cluster$/,
    },
    {
      why: 'no flag, no KUBECONFIG, not in a pod and no ~/.kube/config',
      flag: undefined,
      env: { HOME: emptyHome },
      message:
        /^no cluster credentials: not running in a cluster, and neither --kubeconfig, KUBECONFIG nor ~\/.kube\/config$/,
    },
    {
      why: 'a service host without a ServiceAccount token (not in a pod after all)',
      flag: undefined,
      env: { HOME: emptyHome, ...inPod },
      message: /^no cluster credentials/,
      serviceAccountDir: path('no-serviceaccount'),
    },
  ])('$why', ({ flag, env, message, serviceAccountDir }) => {
    expect(() => loadKubeConfig({ flag, env, serviceAccountDir: serviceAccountDir ?? serviceAccount })).toThrow(
      message,
    );
  });
});
