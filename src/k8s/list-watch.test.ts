// Listing page by page: each page is converted before the next is asked for, so only one page of raw objects
// is ever alive (20,000 raw Secrets and Namespaces held to the end were what sized --watch's heap).
import { ApiException } from '@kubernetes/client-node';
import { expect, test } from 'vitest';
import { listAll, type ListPage } from './list-watch.ts';

interface Raw {
  readonly metadata: { readonly name: string; readonly managedFields: readonly unknown[] };
}

const raw = (name: string): Raw => ({ metadata: { name, managedFields: [{ manager: 'x' }] } });

test('each page is converted as it arrives, before the next page is requested', async () => {
  const pages: ListPage<Raw>[] = [
    { items: [raw('a'), raw('b')], metadata: { resourceVersion: '1', _continue: 'p2' } },
    { items: [raw('c')], metadata: { resourceVersion: '2' } },
  ];
  const steps: string[] = [];
  const listed = await listAll(
    'things',
    async (page) => {
      steps.push(`request ${page._continue ?? 'first'} (limit ${page.limit})`);
      return pages[page._continue === 'p2' ? 1 : 0] as ListPage<Raw>;
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
    async (page) => {
      requests += 1;
      if (requests === 2) throw new ApiException(410, 'Gone', '{"code":410,"reason":"Expired"}', {});
      return page._continue === undefined
        ? { items: [raw(`a${requests}`)], metadata: { resourceVersion: '1', _continue: 'p2' } }
        : { items: [raw('b')], metadata: { resourceVersion: '3' } };
    },
    (item) => item.metadata.name,
  );
  expect(listed).toEqual({ items: ['a3', 'b'], resourceVersion: '3' });
});
