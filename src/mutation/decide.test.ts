import { describe, expect, test } from 'vitest';
import { rules } from '../../test/support/rules.ts';
import { decide, pullSecretOps } from './decide.ts';

const ACR = rules(['myregistry.azurecr.io', 'acr-myregistry'], ['*.azurecr.cn', 'acr-china']);

function pod(spec: Record<string, unknown>, labels?: Record<string, string>) {
  return { metadata: { name: 'p', ...(labels ? { labels } : {}) }, spec };
}

describe('the pull secrets a pod is given', () => {
  test.each([
    {
      when: 'one container pulls from a configured ACR',
      spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/app:v1' }] },
      added: ['acr-myregistry'],
    },
    {
      when: 'only an init container pulls from a configured ACR',
      spec: {
        initContainers: [{ name: 'i', image: 'contoso.azurecr.cn/init' }],
        containers: [{ name: 'a', image: 'nginx' }],
      },
      added: ['acr-china'],
    },
    {
      when: 'only an ephemeral container pulls from a configured ACR',
      spec: {
        containers: [{ name: 'a', image: 'nginx' }],
        ephemeralContainers: [{ name: 'd', image: 'myregistry.azurecr.io/debug' }],
      },
      added: ['acr-myregistry'],
    },
    {
      when: 'images come from two registries: both, in configuration order',
      spec: {
        containers: [
          { name: 'a', image: 'x.azurecr.cn/a' },
          { name: 'b', image: 'myregistry.azurecr.io/b' },
        ],
      },
      added: ['acr-myregistry', 'acr-china'],
    },
    {
      when: 'several images share a registry: the secret once',
      spec: {
        containers: [
          { name: 'a', image: 'myregistry.azurecr.io/a' },
          { name: 'b', image: 'myregistry.azurecr.io/b' },
        ],
      },
      added: ['acr-myregistry'],
    },
    { when: 'every image is on Docker Hub: none', spec: { containers: [{ name: 'a', image: 'nginx' }] }, added: [] },
    {
      when: 'an image is not a valid reference: none for it',
      spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/UPPER' }] },
      added: [],
    },
    { when: 'a container has no image: none for it', spec: { containers: [{ name: 'a' }] }, added: [] },
    { when: 'the pod has no containers: none', spec: {}, added: [] },
  ])('when $when', ({ spec, added }) => {
    const decision = decide(pod(spec), ACR);
    if (added.length === 0) expect(decision).toEqual({ kind: 'unchanged' });
    else expect(decision).toMatchObject({ kind: 'patched', secretsAdded: added });
  });

  test('two entries naming the same secret add it once', () => {
    const shared = rules(['a.azurecr.io', 'acr'], ['b.azurecr.io', 'acr']);
    const decision = decide(pod({ containers: [{ image: 'a.azurecr.io/x' }, { image: 'b.azurecr.io/y' }] }), shared);
    expect(decision).toMatchObject({ kind: 'patched', secretsAdded: ['acr'] });
  });
});

describe('the patch appends and never replaces', () => {
  const images = {
    containers: [
      { name: 'a', image: 'myregistry.azurecr.io/a' },
      { name: 'b', image: 'x.azurecr.cn/b' },
    ],
  };
  test.each([
    {
      when: 'imagePullSecrets is absent, the whole list is added',
      existing: undefined,
      ops: [{ op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'acr-myregistry' }, { name: 'acr-china' }] }],
    },
    {
      when: 'imagePullSecrets is null, the whole list is added',
      existing: null,
      ops: [{ op: 'add', path: '/spec/imagePullSecrets', value: [{ name: 'acr-myregistry' }, { name: 'acr-china' }] }],
    },
    {
      when: 'imagePullSecrets is an empty list, each name is appended',
      existing: [],
      ops: [
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-myregistry' } },
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-china' } },
      ],
    },
    {
      when: 'other secrets are listed, ours are appended after them',
      existing: [{ name: 'from-serviceaccount' }],
      ops: [
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-myregistry' } },
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-china' } },
      ],
    },
    {
      when: 'one of ours is already there, only the other is appended',
      existing: [{ name: 'acr-china' }],
      ops: [{ op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-myregistry' } }],
    },
    {
      when: 'all of ours are already there, nothing is added',
      existing: [{ name: 'acr-china' }, { name: 'acr-myregistry' }],
      ops: [],
    },
    {
      when: 'an entry without a name is listed, it is kept and ours are appended',
      existing: [{}],
      ops: [
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-myregistry' } },
        { op: 'add', path: '/spec/imagePullSecrets/-', value: { name: 'acr-china' } },
      ],
    },
    { when: 'imagePullSecrets is not a list, the pod is left alone', existing: 'acr-china', ops: [] },
  ])('when $when', ({ existing, ops }) => {
    const spec = existing === undefined ? images : { ...images, imagePullSecrets: existing };
    const decision = decide(pod(spec), ACR);
    if (ops.length === 0) expect(decision).toEqual({ kind: 'unchanged' });
    else expect(decision).toMatchObject({ kind: 'patched', ops });
  });

  test('pullSecretOps adds nothing for no names, whether or not the list exists', () => {
    expect(pullSecretOps(false, [])).toEqual([]);
    expect(pullSecretOps(true, [])).toEqual([]);
  });
});

describe('pods that are left alone', () => {
  const spec = { containers: [{ name: 'a', image: 'myregistry.azurecr.io/a' }] };
  test.each([
    {
      when: 'labelled acr-pull-webhook/inject=disabled',
      input: pod(spec, { 'acr-pull-webhook/inject': 'disabled' }),
      kind: 'opted-out',
    },
    {
      when: 'labelled acr-pull-webhook/inject with another value',
      input: pod(spec, { 'acr-pull-webhook/inject': 'enabled' }),
      kind: 'patched',
    },
    { when: 'the object is null', input: null, kind: 'unchanged' },
    { when: 'the object is a list', input: [spec], kind: 'unchanged' },
    { when: 'the spec is a string', input: { spec: 'x' }, kind: 'unchanged' },
    {
      when: 'containers is an object',
      input: { spec: { containers: { image: 'myregistry.azurecr.io/a' } } },
      kind: 'unchanged',
    },
    { when: 'an image is a number', input: { spec: { containers: [{ image: 42 }] } }, kind: 'unchanged' },
  ])('$when: $kind', ({ input, kind }) => {
    expect(decide(input, ACR).kind).toBe(kind);
  });
});
