import { describe, expect, test } from 'vitest';
import { judgeWorkload, pickPod, selectorString } from './workload.ts';

const waitingIn = (reason: string) => ({
  containerStatuses: [{ name: 'app', image: 'a.azurecr.io/x', state: { waiting: { reason, message: '' } } }],
});
const pod = (name: string, created: string, extra: { status?: unknown; deleting?: boolean } = {}) => ({
  metadata: {
    name,
    creationTimestamp: new Date(created),
    ...(extra.deleting === true ? { deletionTimestamp: new Date(created) } : {}),
  },
  status: extra.status,
});

describe('selectorString: a label selector as the labelSelector query parameter', () => {
  test.each([
    { when: 'matchLabels only', selector: { matchLabels: { app: 'web', tier: 'fe' } }, expected: 'app=web,tier=fe' },
    {
      when: 'every expression operator',
      selector: {
        matchExpressions: [
          { key: 'env', operator: 'In', values: ['a', 'b'] },
          { key: 'zone', operator: 'NotIn', values: ['c'] },
          { key: 'canary', operator: 'Exists' },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      },
      expected: 'env in (a,b),zone notin (c),canary,!legacy',
    },
    { when: 'empty', selector: {}, expected: '' },
  ])('$when gives "$expected"', ({ selector, expected }) => {
    expect(selectorString(selector)).toBe(expected);
  });
});

describe('pickPod: the pod most likely broken', () => {
  test('a pod waiting on a failed pull wins over a newer healthy one', () => {
    const picked = pickPod([
      pod('old', '2026-06-01T10:00:00Z', { status: waitingIn('ErrImagePull') }),
      pod('new', '2026-06-01T11:00:00Z'),
    ]);
    expect(picked).toEqual({
      pod: expect.objectContaining({ metadata: expect.objectContaining({ name: 'old' }) }),
      why: 'a container waits in ErrImagePull',
    });
  });

  test('else the newest pod not being deleted', () => {
    const picked = pickPod([
      pod('old', '2026-06-01T10:00:00Z'),
      pod('mid', '2026-06-01T11:00:00Z'),
      pod('leaving', '2026-06-01T12:00:00Z', { deleting: true }),
    ]);
    expect(picked?.pod.metadata?.name).toBe('mid');
    expect(picked?.why).toBe('the newest');
  });

  test('no pods: none', () => {
    expect(pickPod([])).toBeUndefined();
  });
});

describe('judgeWorkload: the row that says what the rows below are about', () => {
  const web = { kind: 'deployment', namespace: 'team-a', name: 'web' } as const;
  test('a checked pod is named with why it was chosen', () => {
    expect(judgeWorkload(web, 3, { name: 'web-1', why: 'the newest' })).toEqual({
      status: 'ok',
      subject: 'deployment team-a/web',
      detail: '3 pods; checked pod web-1 (the newest)',
    });
  });

  test('a deployment without a pod is a warning; a cronjob between runs is not', () => {
    expect(judgeWorkload(web, 0, undefined).status).toBe('warn');
    expect(judgeWorkload({ ...web, kind: 'cronjob' }, 0, undefined)).toEqual({
      status: 'ok',
      subject: 'cronjob team-a/web',
      detail: 'no pod exists yet: checked its pod template',
    });
  });
});
