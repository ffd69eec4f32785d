// The `.dockerconfigjson` must be byte for byte what kubectl writes: these run the real kubectl.
import { describe, expect, test } from 'vitest';
import { dockerConfigJson, goJsonString } from '../../src/sync/docker-config.ts';
import { kubectlDockerConfigJson as kubectlReference } from '../support/kubectl-docker-config.ts';

/** kubectl's `.dockerconfigjson`, after checking the Secret type it gives. */
function kubectlDockerConfigJson(server: string, username: string, password: string): string {
  const reference = kubectlReference(server, username, password);
  expect(reference.type).toBe('kubernetes.io/dockerconfigjson');
  return reference.dockerConfigJson;
}

describe('.dockerconfigjson equals kubectl create secret docker-registry for', () => {
  test.each([
    {
      what: 'a service principal (client ID and secret)',
      server: 'myregistry.azurecr.io',
      username: '2c6d5e8f-0a1b-4c3d-9e8f-7a6b5c4d3e2f',
      password: 'Xy8Q~abcDEF.ghiJKL_mnoPQR-stuVWX0123456',
    },
    {
      what: 'an ACR token',
      server: 'myregistry.azurecr.io',
      username: 'ci-pull-token',
      password: 'Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo+/=',
    },
    {
      what: 'a colon and unicode in the password',
      server: 'myregistry.azurecr.io',
      username: 'user',
      password: 'p:ä€:日本語:😀',
    },
    {
      what: 'HTML-sensitive characters Go escapes',
      server: 'myregistry.azurecr.io',
      username: 'u<s>&r',
      password: '<script>&amp;</script>',
    },
    {
      what: 'quotes, backslashes and JSON escapes',
      server: 'myregistry.azurecr.io',
      username: 'u"\\',
      password: 'tab\there\\n"quoted"\\',
    },
    {
      what: 'control characters and line separators',
      server: 'myregistry.azurecr.io',
      username: 'u\u0001\u007f',
      password: '\b\f\u2028\u2029\u001f',
    },
    { what: 'a wildcard server', server: '*.azurecr.cn', username: 'u', password: 'p' },
    {
      what: 'a server with a port and a path',
      server: 'myregistry.azurecr.io:443/team/',
      username: 'u',
      password: 'p',
    },
    { what: 'a geo-replicated login server', server: '*.*.geo.azurecr.io', username: 'u', password: 'p' },
  ])('$what', ({ server, username, password }) => {
    expect(dockerConfigJson([{ server, username, password }])).toBe(
      kubectlDockerConfigJson(server, username, password),
    );
  });

  test('several entries of one secret: one auths key per server, in Go map order, each as kubectl writes it', () => {
    const entries = [
      { server: 'myregistry.azurecr.io', username: 'sp-1', password: 'one:1' },
      { server: '*.azurecr.cn', username: 'sp-2', password: 'two<2>' },
      { server: 'myregistry.azurecr.io:5000', username: 'sp-3', password: 'three' },
      { server: 'Myregistry.azurecr.io', username: 'sp-4', password: 'four' },
    ];
    // kubectl takes one server at a time; its `auths` bodies, joined in Go's byte order of keys,
    // are what one secret with all of them must hold.
    const inner = (e: (typeof entries)[number]): string =>
      kubectlDockerConfigJson(e.server, e.username, e.password).slice('{"auths":{'.length, -'}}'.length);
    const goOrder = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a.server), Buffer.from(b.server)));
    expect(goOrder.map((e) => e.server)).toEqual([
      '*.azurecr.cn',
      'Myregistry.azurecr.io',
      'myregistry.azurecr.io',
      'myregistry.azurecr.io:5000',
    ]);
    expect(dockerConfigJson(entries)).toBe(`{"auths":{${goOrder.map(inner).join(',')}}}`);
  });
});

describe('Go JSON string escaping', () => {
  test.each([
    ['plain text is quoted', 'abc', '"abc"'],
    ['<, > and & become \\u escapes', '<a&b>', '"\\u003ca\\u0026b\\u003e"'],
    ['U+2028 and U+2029 become \\u escapes', '\u2028\u2029', '"\\u2028\\u2029"'],
    ['DEL stays raw', '\u007f', '"\u007f"'],
    ['non-ASCII stays raw UTF-8', 'ä€😀', '"ä€😀"'],
  ])('%s', (_why, input, expected) => {
    expect(goJsonString(input)).toBe(expected);
  });
});
