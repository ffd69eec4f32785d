import { describe, expect, test } from 'vitest';
import { parseImageReference } from './image-reference.ts';
import { compileServerPattern, describeMismatch, matchImage } from './server-pattern.ts';

function kubeletWouldUse(server: string, image: string): boolean {
  const pattern = compileServerPattern(server);
  const parsed = parseImageReference(image);
  if (pattern === undefined || !parsed.ok) throw new Error(`bad test input ${server} ${image}`);
  return matchImage(pattern, parsed.ref).matched;
}

describe('a credential stored under `server` is used for an image exactly when the kubelet would', () => {
  test.each([
    // Kubernetes docs, Images -> "Interpretation of config.json"
    { server: '*.kubernetes.io', image: 'kubernetes.io/app', used: false },
    { server: '*.kubernetes.io', image: 'abc.kubernetes.io/app', used: true },
    { server: '*.*.kubernetes.io', image: 'abc.def.kubernetes.io/app', used: true },
    { server: 'prefix.*.io', image: 'prefix.kubernetes.io/app', used: true },
    { server: '*-good.kubernetes.io', image: 'prefix-good.kubernetes.io/app', used: true },
    { server: '*-good.kubernetes.io', image: 'prefix-bad.kubernetes.io/app', used: false },
    { server: 'my-registry.io/images', image: 'my-registry.io/images', used: true },
    { server: 'my-registry.io/images', image: 'my-registry.io/images/my-image', used: true },
    { server: 'my-registry.io/images', image: 'my-registry.io/other/my-image', used: false },
    { server: 'my-registry.io/images', image: 'sub.my-registry.io/images/my-image', used: false },
    // ACR hosts
    { server: 'myregistry.azurecr.io', image: 'myregistry.azurecr.io/team/app:v1', used: true },
    { server: 'myregistry.azurecr.io', image: 'otherregistry.azurecr.io/team/app:v1', used: false },
    { server: '*.azurecr.io', image: 'a.azurecr.io/app', used: true },
    { server: '*.azurecr.io', image: 'azurecr.io/app', used: false },
    { server: '*.azurecr.io', image: 'a.eastus.geo.azurecr.io/app', used: false },
    { server: '*.*.geo.azurecr.io', image: 'a.eastus.geo.azurecr.io/app', used: true },
    { server: '*.azurecr.cn', image: 'contoso.azurecr.cn/app', used: true },
    { server: '*.azurecr.cn', image: 'contoso.azurecr.io/app', used: false },
    // look-alike hosts never match
    { server: '*.azurecr.io', image: 'a.azurecr.io.evil.com/app', used: false },
    { server: '*.azurecr.io', image: 'evil.com/a.azurecr.io/app', used: false },
    { server: '*.azurecr.io', image: 'a-azurecr.io/app', used: false },
    { server: 'myregistry.azurecr.io', image: 'myregistry.azurecr.io.evil.com/app', used: false },
    { server: 'myregistry.azurecr.io', image: 'myregistryazurecr.io/app', used: false },
    { server: '*.azurecr.io', image: 'nginx', used: false },
    { server: '*.azurecr.io', image: 'azurecr/app', used: false },
    // ports must be equal
    { server: 'myregistry.azurecr.io', image: 'myregistry.azurecr.io:443/app', used: false },
    { server: 'myregistry.azurecr.io:443', image: 'myregistry.azurecr.io:443/app', used: true },
    { server: 'myregistry.azurecr.io:443', image: 'myregistry.azurecr.io/app', used: false },
    { server: 'localhost:5000', image: 'localhost:5000/app', used: true },
    { server: 'localhost:5000', image: 'localhost:5001/app', used: false },
    // a path prefix is compared as the kubelet does: a plain string prefix of "/<repository>"
    { server: 'myregistry.azurecr.io/team', image: 'myregistry.azurecr.io/team/app', used: true },
    { server: 'myregistry.azurecr.io/team', image: 'myregistry.azurecr.io/teamwork/app', used: true },
    { server: 'myregistry.azurecr.io/team/', image: 'myregistry.azurecr.io/teamwork/app', used: false },
    { server: 'myregistry.azurecr.io/team/', image: 'myregistry.azurecr.io/team/app', used: true },
    { server: 'myregistry.azurecr.io/v2/', image: 'myregistry.azurecr.io/app', used: true },
    { server: 'myregistry.azurecr.io/', image: 'myregistry.azurecr.io/app', used: true },
    // tags and digests do not matter
    { server: 'myregistry.azurecr.io', image: `myregistry.azurecr.io/app@sha256:${'0'.repeat(64)}`, used: true },
    { server: 'myregistry.azurecr.io', image: `myregistry.azurecr.io/app:v1@sha256:${'0'.repeat(64)}`, used: true },
    // hosts compare case-sensitively, as in the kubelet
    { server: 'myregistry.azurecr.io', image: 'MyRegistry.azurecr.io/app', used: false },
    // Docker Hub: docker.io directly, and the legacy index.docker.io default-registry key
    { server: 'docker.io', image: 'nginx', used: true },
    { server: 'index.docker.io', image: 'nginx', used: true },
    { server: 'index.docker.io', image: 'myregistry.azurecr.io/app', used: false },
    { server: 'docker.io/bitnami', image: 'bitnami/redis', used: true },
    { server: 'docker.io/bitnami', image: 'nginx', used: false },
  ])('$server is used for $image: $used', ({ server, image, used }) => {
    expect(kubeletWouldUse(server, image)).toBe(used);
  });
});

describe('a `server` that is not host[:port][/path] is refused', () => {
  test.each([
    'https://myregistry.azurecr.io',
    'MyRegistry.azurecr.io',
    'myregistry..azurecr.io',
    '.azurecr.io',
    'myregistry.azurecr.io:port',
    'myregistry.azurecr.io:123456',
    'my registry.azurecr.io',
    '-a.azurecr.io',
    'a?.azurecr.io',
    '[a].azurecr.io',
    'myregistry.azurecr.io/Team',
    '',
  ])('"%s"', (server) => {
    expect(compileServerPattern(server)).toBeUndefined();
  });
});

describe('a mismatch is explained in one sentence', () => {
  test.each([
    { server: '*.azurecr.io', image: 'a.azurecr.io:443/app', reason: 'image names port 443; the entry has no port' },
    { server: 'a.azurecr.io:5000', image: 'a.azurecr.io/app', reason: 'port (none) is not 5000' },
    { server: '*.azurecr.io', image: 'nginx', reason: 'host has 2 labels; the entry has 3' },
    { server: '*.azurecr.io', image: 'a.azurecr.cn/app', reason: 'host label 3 "cn" does not match "io"' },
    {
      server: 'a.azurecr.io/team/',
      image: 'a.azurecr.io/other/app',
      reason: 'path /other/app does not start with /team/',
    },
  ])('$server vs $image: $reason', ({ server, image, reason }) => {
    const parsed = parseImageReference(image);
    const pattern = compileServerPattern(server);
    const result = parsed.ok && pattern !== undefined ? matchImage(pattern, parsed.ref) : undefined;
    expect(result?.matched).toBe(false);
    if (result && !result.matched) expect(describeMismatch(result.mismatch)).toBe(reason);
  });
});
