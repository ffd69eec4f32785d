// The benchmark's apiserver-observed latency: pod creates read back from the kube-apiserver audit log.
// (Epoch milliseconds as doubles keep about a quarter of a microsecond: hence 3 digits of closeness.)
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { auditedCreateLatencies, microTimeMs } from '../../bench/lib/control-plane-phase.ts';

function event(overrides: Record<string, unknown> = {}) {
  return {
    kind: 'Event',
    level: 'Metadata',
    stage: 'ResponseComplete',
    verb: 'create',
    requestURI: '/api/v1/namespaces/bench/pods?fieldManager=kube-controller-manager',
    objectRef: { resource: 'pods', namespace: 'bench', apiVersion: 'v1' },
    responseStatus: { metadata: {}, code: 201 },
    requestReceivedTimestamp: '2026-11-28T22:10:19.123456Z',
    stageTimestamp: '2026-11-28T22:10:19.130789Z',
    ...overrides,
  };
}
const lines = (...events: object[]): string => events.map((e) => `${JSON.stringify(e)}\n`).join('');
const WINDOW = [Date.parse('2026-11-28T22:10:19Z'), Date.parse('2026-11-28T22:10:20Z')] as const;

describe('microTimeMs', () => {
  test('keeps the microseconds that Date.parse drops', () => {
    expect(microTimeMs('2026-11-28T22:10:19.123456Z') - Date.parse('2026-11-28T22:10:19Z')).toBeCloseTo(123.456, 3);
    expect(microTimeMs('2026-11-28T22:10:19Z')).toBe(Date.parse('2026-11-28T22:10:19Z'));
    expect(microTimeMs('not a time')).toBeNaN();
  });

  test('reads back any microsecond time written with six digits', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4_102_444_800_000_000 }), (micros) => {
        const seconds = Math.floor(micros / 1e6);
        const text = `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${String(micros % 1e6).padStart(6, '0')}Z`;
        expect(microTimeMs(text)).toBeCloseTo(micros / 1000, 3);
      }),
    );
  });
});

describe('auditedCreateLatencies', () => {
  test('measures a pod create in the namespace, received within the window, from received to response complete', () => {
    expect(auditedCreateLatencies(lines(event()), ...WINDOW)).toEqual([expect.closeTo(7.333, 3)]);
  });

  test.each([
    ['another namespace', { objectRef: { resource: 'pods', namespace: 'other' } }],
    ['another resource', { objectRef: { resource: 'configmaps', namespace: 'bench' } }],
    ['another verb', { verb: 'delete' }],
    ['a dry run (the registration probe)', { requestURI: '/api/v1/namespaces/bench/pods?dryRun=All' }],
    ['a refused create', { responseStatus: { code: 500 } }],
    ['an earlier stage', { stage: 'RequestReceived' }],
    ['a create received before the window', { requestReceivedTimestamp: '2026-11-28T22:10:18.999999Z' }],
    ['a create received after the window', { requestReceivedTimestamp: '2026-11-28T22:10:20.000001Z' }],
  ])('leaves out %s', (_what, overrides) => {
    expect(auditedCreateLatencies(lines(event(overrides)), ...WINDOW)).toEqual([]);
  });

  test('skips a last line the apiserver has not finished writing', () => {
    const text = lines(event()) + JSON.stringify(event()).slice(0, 80);
    expect(auditedCreateLatencies(text, ...WINDOW)).toHaveLength(1);
  });
});
