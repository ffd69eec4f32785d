import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { CLOUDS, cloudOfServer, normaliseAuthorityHost } from './clouds.ts';

describe('each cloud names its Entra authority and the ACR audience scope', () => {
  test.each([
    {
      cloud: 'AzurePublicCloud',
      authority: 'https://login.microsoftonline.com/',
      scope: 'https://containerregistry.azure.net/.default',
    },
    {
      cloud: 'AzureChinaCloud',
      authority: 'https://login.chinacloudapi.cn/',
      scope: 'https://containerregistry.azure.cn/.default',
    },
    {
      cloud: 'AzureUSGovernment',
      authority: 'https://login.microsoftonline.us/',
      scope: 'https://containerregistry.azure.us/.default',
    },
  ] as const)('$cloud authenticates at $authority for $scope', ({ cloud, authority, scope }) => {
    expect(CLOUDS[cloud].authorityHost).toBe(authority);
    expect(CLOUDS[cloud].acrScope).toBe(scope);
  });
});

describe("a registry's cloud follows from its name's suffix", () => {
  test.each([
    { server: 'myregistry.azurecr.io', cloud: 'AzurePublicCloud' },
    { server: 'myregistry.azurecr.io/team', cloud: 'AzurePublicCloud' },
    { server: 'myregistry.azurecr.io:443', cloud: 'AzurePublicCloud' },
    { server: 'myregistry.eastus.geo.azurecr.io', cloud: 'AzurePublicCloud' },
    { server: 'MyRegistry.AzureCR.io', cloud: 'AzurePublicCloud' },
    { server: 'contoso.azurecr.cn', cloud: 'AzureChinaCloud' },
    { server: 'contoso.azurecr.us', cloud: 'AzureUSGovernment' },
    { server: 'azurecr.io', cloud: undefined },
    { server: 'myregistryazurecr.io', cloud: undefined },
    { server: 'myregistry.azurecr.io.evil.com', cloud: undefined },
    { server: 'evil.com/myregistry.azurecr.io', cloud: undefined },
    { server: 'localhost:5000', cloud: undefined },
    { server: 'registry.example.com', cloud: undefined },
  ])('$server is in $cloud', ({ server, cloud }) => {
    expect(cloudOfServer(server)).toBe(cloud);
  });
});

describe('an authorityHost override becomes an HTTPS base URL ending in a slash', () => {
  test.each([
    { input: 'https://login.microsoftonline.com', value: 'https://login.microsoftonline.com/' },
    { input: 'https://login.microsoftonline.com/', value: 'https://login.microsoftonline.com/' },
    { input: 'https://LOGIN.example.com:8443/entra', value: 'https://login.example.com:8443/entra/' },
    { input: 'https://127.0.0.1:9443/tenants/', value: 'https://127.0.0.1:9443/tenants/' },
  ])('$input is used as $value', ({ input, value }) => {
    expect(normaliseAuthorityHost(input)).toEqual({ ok: true, value });
  });

  test.each([
    { input: 'http://login.microsoftonline.com/', problem: 'authorityHost must be an https:// URL' },
    { input: 'login.microsoftonline.com', problem: 'authorityHost is not an absolute URL' },
    { input: '', problem: 'authorityHost is not an absolute URL' },
    {
      input: 'https://user:hunter2@login.example.com/',
      problem: 'authorityHost must not contain a user name or password',
    },
    { input: 'https://login.example.com/?x=1', problem: 'authorityHost must not have a query or fragment' },
    { input: 'https://login.example.com/#x', problem: 'authorityHost must not have a query or fragment' },
    { input: 'https://login.example.com/?', problem: 'authorityHost must not have a query or fragment' },
  ])('$input is refused: $problem', ({ input, problem }) => {
    expect(normaliseAuthorityHost(input)).toEqual({ ok: false, problem });
  });

  test('whatever the input, the result is an https:// URL ending in a slash, or a problem', () => {
    fc.assert(
      fc.property(fc.oneof(fc.webUrl({ withQueryParameters: true, withFragments: true }), fc.string()), (input) => {
        const result = normaliseAuthorityHost(input);
        if (result.ok) {
          expect(result.value).toMatch(/^https:\/\/[^/?#@]+\/([^?#]*\/)?$/);
          expect(normaliseAuthorityHost(result.value)).toEqual(result);
        } else expect(result.problem).toMatch(/^authorityHost /);
      }),
    );
  });
});
