import { describe, expect, test } from 'vitest';
import { parseImageReference } from './image-reference.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('an image reference is resolved to the registry host and repository the kubelet pulls from', () => {
  test.each([
    { image: 'nginx', domain: 'docker.io', path: 'library/nginx', tag: undefined, digest: undefined },
    { image: 'nginx:1.27', domain: 'docker.io', path: 'library/nginx', tag: '1.27', digest: undefined },
    { image: 'library/nginx', domain: 'docker.io', path: 'library/nginx', tag: undefined, digest: undefined },
    { image: 'bitnami/redis:7', domain: 'docker.io', path: 'bitnami/redis', tag: '7', digest: undefined },
    { image: 'docker.io/nginx', domain: 'docker.io', path: 'library/nginx', tag: undefined, digest: undefined },
    {
      image: 'index.docker.io/bitnami/redis',
      domain: 'docker.io',
      path: 'bitnami/redis',
      tag: undefined,
      digest: undefined,
    },
    { image: 'localhost/app', domain: 'localhost', path: 'app', tag: undefined, digest: undefined },
    { image: 'localhost:5000/team/app:v1', domain: 'localhost:5000', path: 'team/app', tag: 'v1', digest: undefined },
    {
      image: 'myregistry.azurecr.io/team/app:v1',
      domain: 'myregistry.azurecr.io',
      path: 'team/app',
      tag: 'v1',
      digest: undefined,
    },
    {
      image: `myregistry.azurecr.io/app@${DIGEST}`,
      domain: 'myregistry.azurecr.io',
      path: 'app',
      tag: undefined,
      digest: DIGEST,
    },
    {
      image: `myregistry.azurecr.io/app:v1@${DIGEST}`,
      domain: 'myregistry.azurecr.io',
      path: 'app',
      tag: 'v1',
      digest: DIGEST,
    },
    {
      image: 'myregistry.westeurope.geo.azurecr.io/app',
      domain: 'myregistry.westeurope.geo.azurecr.io',
      path: 'app',
      tag: undefined,
      digest: undefined,
    },
    { image: 'registry:5000/app', domain: 'registry:5000', path: 'app', tag: undefined, digest: undefined },
    { image: '[::1]:5000/app:v2', domain: '[::1]:5000', path: 'app', tag: 'v2', digest: undefined },
    {
      image: 'Registry.Example.com/app',
      domain: 'Registry.Example.com',
      path: 'app',
      tag: undefined,
      digest: undefined,
    },
    { image: 'MyRegistry/app', domain: 'MyRegistry', path: 'app', tag: undefined, digest: undefined },
    {
      image: 'mcr.microsoft.com/dotnet/aspnet:8.0-alpine',
      domain: 'mcr.microsoft.com',
      path: 'dotnet/aspnet',
      tag: '8.0-alpine',
      digest: undefined,
    },
    { image: 'ghcr.io/org/a__b/c-d.e:x_y', domain: 'ghcr.io', path: 'org/a__b/c-d.e', tag: 'x_y', digest: undefined },
  ])('$image is $path on $domain', ({ image, domain, path, tag, digest }) => {
    expect(parseImageReference(image)).toEqual({ ok: true, ref: { domain, path, tag, digest } });
  });

  test.each([
    { image: '', error: 'empty image reference' },
    { image: 'myregistry.azurecr.io/Team/app', error: 'repository name must be lowercase' },
    { image: 'Nginx', error: 'repository name must be lowercase' },
    { image: 'my registry.azurecr.io/app', error: 'invalid reference format' },
    { image: 'myregistry.azurecr.io/app:', error: 'invalid reference format' },
    { image: ':v1', error: 'invalid reference format' },
    { image: 'myregistry.azurecr.io//app', error: 'invalid reference format' },
    { image: 'myregistry.azurecr.io/app@sha256:abc', error: 'invalid reference format' },
    { image: `myregistry.azurecr.io/app@sha256:${'a'.repeat(63)}`, error: 'invalid sha256 digest length' },
    { image: `myregistry.azurecr.io/app@md5:${'a'.repeat(32)}`, error: 'unsupported digest algorithm "md5"' },
    { image: 'a'.repeat(64), error: 'a 64-character hexadecimal image ID is not a repository name' },
    {
      image: `myregistry.azurecr.io/${'a'.repeat(250)}`,
      error: 'repository name must not be more than 255 characters',
    },
  ])('"$image" is rejected: $error', ({ image, error }) => {
    expect(parseImageReference(image)).toEqual({ ok: false, error });
  });
});
