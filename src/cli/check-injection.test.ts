import { describe, expect, test } from 'vitest';
import { parseConfig } from '../config/config.ts';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';
import { matchingSecrets } from '../mutation/decide.ts';
import { UsageError } from '../process/flags.ts';
import {
  chooseNamespace,
  describeCreateFailure,
  type InjectionAnswer,
  judgeInjection,
  parseCheckInjectionArgs,
  type Probe,
  probeImage,
  probePod,
  probesOf,
} from './check-injection.ts';

const DEFAULT_OPT_IN = { label: 'acr-pull-webhook/inject', value: 'enabled' };

describe('the probe image of a registries[] entry', () => {
  test.each([
    { why: 'a plain server is probed on that host', server: 'myregistry.azurecr.io', image: 'myregistry.azurecr.io' },
    { why: "a '*' label becomes a concrete label", server: '*.azurecr.cn', image: 'check.azurecr.cn' },
    { why: "a '*' inside a label keeps the rest of it", server: '*-team.io', image: 'check-team.io' },
    { why: "a lone '*' host can only match localhost", server: '*', image: 'localhost' },
    { why: 'a port is kept', server: 'localhost:5000/', image: 'localhost:5000' },
    {
      why: 'a path prefix is kept',
      server: 'registry.internal.example:5000/team/',
      image: 'registry.internal.example:5000/team',
    },
    {
      why: 'a /v2/ prefix is dropped, as the kubelet drops it',
      server: 'myregistry.azurecr.io/v2/team',
      image: 'myregistry.azurecr.io/team',
    },
    { why: 'Docker Hub is probed on index.docker.io', server: 'index.docker.io', image: 'index.docker.io' },
  ])('$why: $server -> $image/acr-pull-webhook-check:dry-run', ({ server, image }) => {
    expect(probeImage(server)).toBe(`${image}/acr-pull-webhook-check:dry-run`);
  });

  test('a prefix that ends inside a path component is continued, not split by a slash', () => {
    expect(probeImage('myregistry.azurecr.io/team.')).toBe('myregistry.azurecr.io/team.acr-pull-webhook-check:dry-run');
  });

  test('a one-label host without a port has no image: no image reference can name that registry', () => {
    expect(probeImage('registry')).toBeUndefined();
  });

  test("every entry's probe image gets that entry's secret from the webhook's own matcher", () => {
    const servers = ['myregistry.azurecr.io', '*.azurecr.cn', 'docker.*', 'prefix.*.io', 'ghcr.io/team', '*.io'];
    const { rules } = parseConfig(
      JSON.stringify({ registries: servers.map((server, index) => ({ server, secretName: `s${index}` })) }),
      'test',
    );
    for (const [index, server] of servers.entries())
      expect(matchingSecrets([probeImage(server) ?? ''], rules), server).toContain(`s${index}`);
  });
});

describe('the dry-run Pod', () => {
  const probes = probesOf(
    parseConfig(
      'registries: [{server: myregistry.azurecr.io, secretName: acr-a}, {server: registry, secretName: acr-b}, ' +
        '{server: "*.azurecr.cn", secretName: acr-c}]',
      'test',
    ).registries,
  );

  test('has one container per entry that has an image, named after the entry', () => {
    expect(probePod(probes).spec?.containers.map((container) => [container.name, container.image])).toEqual([
      ['registry-0', 'myregistry.azurecr.io/acr-pull-webhook-check:dry-run'],
      ['registry-2', 'check.azurecr.cn/acr-pull-webhook-check:dry-run'],
    ]);
  });

  test('is named by generateName and meets Pod Security "restricted", so an enforcing namespace admits it', () => {
    const pod = probePod(probes);
    expect(pod.metadata).toEqual({ generateName: 'acr-pull-webhook-check-' });
    expect(pod.spec?.imagePullSecrets).toBeUndefined();
    expect(pod.spec?.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    for (const container of pod.spec?.containers ?? []) {
      expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
      expect(container.securityContext?.capabilities?.drop).toEqual(['ALL']);
    }
  });
});

describe('the namespace checked', () => {
  const ns = (name: string, labels: Record<string, string> = {}, terminating = false): NamespaceInfo => ({
    name,
    labels,
    terminating,
  });
  const on = { 'acr-pull-webhook/inject': 'enabled' };
  const cluster = [
    ns('team-c', on),
    ns('kube-system', on),
    ns('team-b'),
    ns('gone', on, true),
    ns('acr-system', on),
    ns('team-a', { 'acr-pull-webhook/inject': 'disabled' }),
  ];
  test.each([
    {
      why: 'asked for an opted-in namespace, it is that one',
      options: { namespace: 'team-c' },
      result: { ok: true, namespace: 'team-c', why: 'as asked' },
    },
    {
      why: 'asked for a namespace without the label, it says how to label it',
      options: { namespace: 'team-b' },
      result: {
        ok: false,
        problem: 'namespace team-b is not opted in: kubectl label namespace team-b acr-pull-webhook/inject=enabled',
      },
    },
    {
      why: 'asked for a namespace labelled with another value, it is not opted in',
      options: { namespace: 'team-a' },
      result: {
        ok: false,
        problem: 'namespace team-a is not opted in: kubectl label namespace team-a acr-pull-webhook/inject=enabled',
      },
    },
    {
      why: 'asked for a namespace that does not exist, it says so',
      options: { namespace: 'nope' },
      result: { ok: false, problem: 'namespace nope does not exist' },
    },
    {
      why: 'asked for a namespace being deleted, it says so',
      options: { namespace: 'gone' },
      result: { ok: false, problem: 'namespace gone is being deleted' },
    },
    {
      why: 'asked for a namespace the webhook never serves, it says so',
      options: { namespace: 'kube-system', exclude: ['kube-system'] },
      result: { ok: false, problem: 'namespace kube-system is one the webhook never serves: check another one' },
    },
    {
      why: 'not asked, it is the first opted-in namespace by name',
      options: {},
      result: { ok: true, namespace: 'acr-system', why: 'the first labelled acr-pull-webhook/inject=enabled' },
    },
    {
      why: 'not asked, excluded and terminating namespaces are passed over',
      options: { exclude: ['kube-system', 'acr-system'] },
      result: { ok: true, namespace: 'team-c', why: 'the first labelled acr-pull-webhook/inject=enabled' },
    },
    {
      why: 'not asked and none is left, it says to label one',
      options: { exclude: ['kube-system', 'acr-system', 'team-c'] },
      result: {
        ok: false,
        problem: 'no namespace is opted in: label one with kubectl label namespace NS acr-pull-webhook/inject=enabled',
      },
    },
  ])('$why', ({ options, result }) => {
    expect(chooseNamespace(cluster, DEFAULT_OPT_IN, options)).toEqual(result);
  });

  test("with the configuration's own opt-in label, only that label opts in", () => {
    const custom = { label: 'example.com/acr-pull', value: 'yes' };
    expect(chooseNamespace([...cluster, ns('z-team', { 'example.com/acr-pull': 'yes' })], custom, {})).toEqual({
      ok: true,
      namespace: 'z-team',
      why: 'the first labelled example.com/acr-pull=yes',
    });
  });
});

describe('the verdict', () => {
  const probe = (index: number, server: string, secretName: string, synced = true): Probe => ({
    index,
    server,
    secretName,
    image: probeImage(server),
    synced,
  });
  const probes = [probe(0, 'myregistry.azurecr.io', 'acr-a'), probe(1, '*.azurecr.cn', 'acr-c')];
  const both = { 'acr-a': 'present', 'acr-c': 'present' } as const;

  test('when every secret is injected and present, it passes with a line per entry', () => {
    expect(judgeInjection({ namespace: 'team-a', probes, injected: ['acr-a', 'acr-c'], secrets: both })).toEqual({
      ok: true,
      lines: [
        'ok   registries[0] myregistry.azurecr.io -> acr-a: injected for ' +
          'myregistry.azurecr.io/acr-pull-webhook-check:dry-run; Secret acr-a is there',
        'ok   registries[1] *.azurecr.cn -> acr-c: injected for ' +
          'check.azurecr.cn/acr-pull-webhook-check:dry-run; Secret acr-c is there',
        "PASS team-a: every registry's pull secret is injected and present",
      ],
    });
  });

  test.each<{ why: string; answer: Pick<InjectionAnswer, 'injected' | 'secrets'>; line: string }>([
    {
      why: 'a Secret sync-secrets should have written is missing: it names the Secret and sync-secrets',
      answer: { injected: ['acr-a', 'acr-c'], secrets: { 'acr-a': 'present', 'acr-c': 'missing' } },
      line:
        'FAIL registries[1] *.azurecr.cn -> acr-c: Secret acr-c is missing from team-a: sync-secrets writes it, ' +
        'see its logs; injected for check.azurecr.cn/acr-pull-webhook-check:dry-run',
    },
    {
      why: 'the webhook injected nothing: it points at the caBundle and the endpoints',
      answer: { injected: [], secrets: both },
      line:
        'FAIL team-a: 2 of 2 registries have a problem; the webhook injected nothing: check that the ' +
        'MutatingWebhookConfiguration has a caBundle and that the webhook Service has ready endpoints',
    },
    {
      why: 'the webhook injected some but not all: it runs another configuration',
      answer: { injected: ['acr-a'], secrets: both },
      line:
        'FAIL registries[1] *.azurecr.cn -> acr-c: not injected for check.azurecr.cn/acr-pull-webhook-check:dry-run: ' +
        'the webhook runs another configuration; Secret acr-c is there',
    },
    {
      why: 'a Secret of another type is there: the kubelet cannot use it',
      answer: { injected: ['acr-a', 'acr-c'], secrets: { 'acr-a': { type: 'Opaque' }, 'acr-c': 'present' } },
      line:
        'FAIL registries[0] myregistry.azurecr.io -> acr-a: Secret acr-a has type Opaque, not ' +
        'kubernetes.io/dockerconfigjson; injected for myregistry.azurecr.io/acr-pull-webhook-check:dry-run',
    },
  ])('when $why', ({ answer, line }) => {
    const verdict = judgeInjection({ namespace: 'team-a', probes, ...answer });
    expect(verdict.ok).toBe(false);
    expect(verdict.lines).toContain(line);
    expect(verdict.lines.at(-1)).toMatch(/^FAIL team-a: \d of 2 registries have a problem/);
  });

  test('a missing Secret without credentials (sync-secrets off) says to create it', () => {
    const verdict = judgeInjection({
      namespace: 'team-a',
      probes: [probe(0, 'myregistry.azurecr.io', 'acr-a', false)],
      injected: ['acr-a'],
      secrets: { 'acr-a': 'missing' },
    });
    expect(verdict.lines[0]).toContain(
      'Secret acr-a is missing from team-a: create it (kubectl -n team-a create secret docker-registry acr-a',
    );
  });

  test('an entry no image can match fails, saying why', () => {
    const verdict = judgeInjection({
      namespace: 'team-a',
      probes: [probe(0, 'registry', 'acr-r')],
      injected: [],
      secrets: { 'acr-r': 'present' },
    });
    expect(verdict.ok).toBe(false);
    expect(verdict.lines[0]).toContain('no image can match this server (a one-label host needs a port)');
  });

  test('a dry run refused because the webhook could not be called points at the caBundle and the endpoints', () => {
    expect(
      describeCreateFailure('team-a', 'Internal error occurred: failed calling webhook "x": connection refused'),
    ).toBe(
      'FAIL team-a: the dry-run Pod was refused: the apiserver could not call the webhook: check that the ' +
        'MutatingWebhookConfiguration has a caBundle and that the webhook Service has ready endpoints ' +
        '(Internal error occurred: failed calling webhook "x": connection refused)',
    );
    expect(describeCreateFailure('team-a', 'exceeded quota')).toBe(
      'FAIL team-a: the dry-run Pod was refused (exceeded quota)',
    );
  });
});

describe('the command line', () => {
  test('--config comes from the flag, else from ACR_PULL_WEBHOOK_CONFIG; --exclude-namespace repeats', () => {
    expect(
      parseCheckInjectionArgs(['--exclude-namespace', 'a', '--exclude-namespace=b'], {
        ACR_PULL_WEBHOOK_CONFIG: '/etc/c.yaml',
      }),
    ).toEqual({ config: '/etc/c.yaml', namespace: undefined, exclude: ['a', 'b'], kubeconfig: undefined });
    expect(parseCheckInjectionArgs(['--config', 'x.yaml', '-n', 'team-a'], {}).namespace).toBe('team-a');
  });

  test.each([
    { why: 'no --config', argv: [], message: '--config (or ACR_PULL_WEBHOOK_CONFIG) is required' },
    { why: 'an unknown flag', argv: ['--config', 'c', '--once'], message: "Unknown option '--once'" },
    { why: 'an empty --namespace', argv: ['--config', 'c', '--namespace='], message: '--namespace: must not be empty' },
  ])('$why is a usage error', ({ argv, message }) => {
    expect(() => parseCheckInjectionArgs(argv, {})).toThrow(UsageError);
    expect(() => parseCheckInjectionArgs(argv, {})).toThrow(message);
  });
});
