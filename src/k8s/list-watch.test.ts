// Listing page by page: each page is converted before the next is asked for, so only one page of raw objects
// is ever alive (20,000 raw Secrets and Namespaces held to the end were what sized --watch's heap).
import { ApiException } from '@kubernetes/client-node';
import { describe, expect, test } from 'vitest';
import type { RawRequest } from './client.ts';
import { listAll, listEach, rawPager, type ListPage } from './list-watch.ts';

interface Raw {
  readonly metadata: { readonly name: string; readonly managedFields: readonly unknown[] };
}

const raw = (name: string): Raw => ({ metadata: { name, managedFields: [{ manager: 'x' }] } });

test('each page is converted as it arrives, before the next page is requested', async () => {
  const pages: ListPage<Raw>[] = [
    { items: [raw('a'), raw('b')], resourceVersion: '1', next: 'p2' },
    { items: [raw('c')], resourceVersion: '2', next: undefined },
  ];
  const steps: string[] = [];
  const listed = await listAll(
    'things',
    async (page) => {
      steps.push(`request ${page.continue ?? 'first'} (limit ${page.limit})`);
      return pages[page.continue === 'p2' ? 1 : 0] as ListPage<Raw>;
    },
    (item) => {
      steps.push(`convert ${item.metadata.name}`);
      return item.metadata.name;
    },
  );
  expect(steps).toEqual(['request first (limit 500)', 'convert a', 'convert b', 'request p2 (limit 500)', 'convert c']);
  expect(listed).toEqual({ items: ['a', 'b', 'c'], resourceVersion: '2' });
});

test('a continue token that expires (410) restarts the list, and only the restarted list is returned', async () => {
  let requests = 0;
  const listed = await listAll(
    'things',
    async (page): Promise<ListPage<Raw>> => {
      requests += 1;
      if (requests === 2) throw new ApiException(410, 'Gone', '{"code":410,"reason":"Expired"}', {});
      return page.continue === undefined
        ? { items: [raw(`a${requests}`)], resourceVersion: '1', next: 'p2' }
        : { items: [raw('b')], resourceVersion: '3', next: undefined };
    },
    (item) => item.metadata.name,
  );
  expect(listed).toEqual({ items: ['a3', 'b'], resourceVersion: '3' });
});

describe('rawPager: one page of a collection on the raw path', () => {
  const answering = (status: number, body: unknown) => {
    const paths: string[] = [];
    const raw: RawRequest = async (method, path) => {
      paths.push(`${method} ${path}`);
      return { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)) };
    };
    return { raw, paths };
  };

  test('asks with the field selector, the limit and the continue token; keeps the JSON as sent', async () => {
    const { raw, paths } = answering(200, {
      kind: 'SecretList',
      metadata: { resourceVersion: '9', continue: 'next-page' },
      items: [{ metadata: { name: 'acr-x', namespace: 'a', creationTimestamp: '2026-12-01T00:00:00Z' } }],
    });
    const page = await rawPager(raw, '/api/v1/secrets', 'metadata.name=acr-x')({ limit: 500, continue: 'this-page' });
    expect(paths).toEqual(['GET /api/v1/secrets?fieldSelector=metadata.name%3Dacr-x&limit=500&continue=this-page']);
    expect(page).toEqual({
      items: [{ metadata: { name: 'acr-x', namespace: 'a', creationTimestamp: '2026-12-01T00:00:00Z' } }],
      resourceVersion: '9',
      next: 'next-page',
    });
  });

  test('a last page without items (the apiserver sends null) is an empty page with no next', async () => {
    const { raw, paths } = answering(200, { kind: 'NamespaceList', metadata: { resourceVersion: '3' }, items: null });
    expect(await rawPager(raw, '/api/v1/namespaces')({ limit: 500 })).toEqual({
      items: [],
      resourceVersion: '3',
      next: undefined,
    });
    expect(paths).toEqual(['GET /api/v1/namespaces?limit=500']);
  });

  test('a refusal fails the list with the status and reason the apiserver gave', async () => {
    const { raw } = answering(403, { kind: 'Status', status: 'Failure', reason: 'Forbidden', code: 403 });
    const listing = listAll('secrets named acr-x', rawPager(raw, '/api/v1/secrets', 'metadata.name=acr-x'), String);
    await expect(listing).rejects.toMatchObject({
      name: 'KubeApiError',
      status: 403,
      reason: 'Forbidden',
      message: 'list secrets named acr-x: HTTP 403 Forbidden',
    });
  });
});

test('listEach hands over each item as its page arrives, and after an expired continue token lists again', async () => {
  const steps: string[] = [];
  let requests = 0;
  const list = async (page: { continue?: string }): Promise<ListPage<Raw>> => {
    requests += 1;
    steps.push(`request ${page.continue ?? 'first'}`);
    if (requests === 3) throw new ApiException(410, 'Gone', '{"code":410,"reason":"Expired"}', {});
    return page.continue === undefined
      ? { items: [raw('a'), raw('b')], resourceVersion: '1', next: 'p2' }
      : { items: [raw('c')], resourceVersion: '2', next: requests === 2 ? 'p3' : undefined };
  };
  for await (const name of listEach('things', list, (item) => item.metadata.name)) steps.push(`got ${name}`);
  expect(steps).toEqual([
    'request first',
    'got a',
    'got b',
    'request p2',
    'got c',
    'request p3',
    'request first',
    'got a',
    'got b',
    'request p2',
    'got c',
  ]);
});
