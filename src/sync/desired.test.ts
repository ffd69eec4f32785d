import { describe, expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { desiredSecrets, secretManifest } from './desired.ts';
import { formatManifests } from './manifests.ts';

const credential = (server: string, secretName: string, username = 'u', password = 'p') => ({
  server,
  secretName,
  username,
  password,
});

describe('desired secrets', () => {
  test('one secret per secretName, in the order names first appear, with every entry that names it', () => {
    const desired = desiredSecrets([
      credential('myregistry.azurecr.io', 'acr-a'),
      credential('*.azurecr.cn', 'acr-china'),
      credential('other.azurecr.io', 'acr-a', 'u2', 'p2'),
    ]);
    expect(desired.map((d) => [d.name, d.servers])).toEqual([
      ['acr-a', ['myregistry.azurecr.io', 'other.azurecr.io']],
      ['acr-china', ['*.azurecr.cn']],
    ]);
    expect(Object.keys((JSON.parse(desired[0]?.dockerConfigJson ?? '') as { auths: object }).auths)).toEqual([
      'myregistry.azurecr.io',
      'other.azurecr.io',
    ]);
  });

  test('the content hash follows the credentials and nothing else', () => {
    const [a] = desiredSecrets([credential('a.azurecr.io', 's', 'u', 'p1')]);
    const [same] = desiredSecrets([credential('a.azurecr.io', 's', 'u', 'p1')]);
    const [rotated] = desiredSecrets([credential('a.azurecr.io', 's', 'u', 'p2')]);
    expect(a?.contentHash).toBe(same?.contentHash);
    expect(a?.contentHash).not.toBe(rotated?.contentHash);
  });

  test('a manifest without a namespace has no namespace field, as kubectl without -n', () => {
    const [d] = desiredSecrets([credential('a.azurecr.io', 's')]);
    if (d === undefined) throw new Error('none');
    expect(secretManifest(d).metadata).not.toHaveProperty('namespace');
    expect(secretManifest(d, 'team-a').metadata?.namespace).toBe('team-a');
  });
});

describe('dry-run output', () => {
  const [d] = desiredSecrets([credential('a.azurecr.io', 's')]);
  if (d === undefined) throw new Error('none');
  const one = secretManifest(d, 'team-a');

  test('one secret prints as the object itself, JSON indented by four spaces in kubectl field order', () => {
    const text = formatManifests([one], 'json');
    expect(text.startsWith('{\n    "kind": "Secret",\n    "apiVersion": "v1",\n    "metadata": {')).toBe(true);
    expect(JSON.parse(text)).toEqual(one);
  });

  test('several print as a v1 List, in YAML with sorted keys', () => {
    const text = formatManifests([one, secretManifest(d, 'team-b')], 'yaml');
    expect(text.startsWith('apiVersion: v1\nitems:\n- apiVersion: v1\n  data:\n')).toBe(true);
    const list = parseYaml(text) as { kind: string; items: { metadata: { namespace: string } }[] };
    expect(list.kind).toBe('List');
    expect(list.items.map((item) => item.metadata.namespace)).toEqual(['team-a', 'team-b']);
  });

  test('no namespaces print as an empty List', () => {
    expect(JSON.parse(formatManifests([], 'json'))).toEqual({
      apiVersion: 'v1',
      items: [],
      kind: 'List',
      metadata: { resourceVersion: '' },
    });
  });
});
