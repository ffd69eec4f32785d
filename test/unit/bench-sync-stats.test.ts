// The sync bench's arithmetic: the apiserver's request counter read before and after a phase, the
// knee of the minimal client's concurrency curve, and per-namespace growth across scales.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  byVerb,
  growth,
  parseRequestCounts,
  requestDelta,
  secretWrites,
  targetsTable,
  throttled,
  throughputKnee,
  totalRequests,
  withoutProbe,
} from '../../bench/lib/sync-stats.ts';

const series = (verb: string, resource: string, code: string, value: number, subresource = ''): string =>
  `apiserver_request_total{code="${code}",component="apiserver",dry_run="",group="",resource="${resource}",` +
  `scope="namespace",subresource="${subresource}",verb="${verb}",version="v1"} ${value}`;

describe('parseRequestCounts', () => {
  test('reads verb, resource and code, and sums series that differ only in labels the bench ignores', () => {
    const text = [
      '# HELP apiserver_request_total Counter of apiserver requests',
      '# TYPE apiserver_request_total counter',
      series('POST', 'secrets', '201', 10),
      series('POST', 'secrets', '201', 5).replace('scope="namespace"', 'scope="cluster"'),
      series('LIST', 'secrets', '200', 2),
      series('POST', 'serviceaccounts', '201', 1, 'token'),
      'apiserver_request_total_other{verb="GET"} 99',
    ].join('\n');
    expect(parseRequestCounts(text)).toEqual([
      { verb: 'POST', resource: 'secrets', code: '201', count: 15 },
      { verb: 'LIST', resource: 'secrets', code: '200', count: 2 },
      { verb: 'POST', resource: 'serviceaccounts/token', code: '201', count: 1 },
    ]);
  });

  test('reads any counter value back, exponent notation included', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), (value) => {
        const text = series('GET', 'namespaces', '200', value).replace(` ${value}`, ` ${value.toExponential()}`);
        expect(parseRequestCounts(text)[0]?.count).toBe(value);
      }),
    );
  });

  test('a text without the counter reads as no requests', () => {
    expect(parseRequestCounts('# nothing here\nup 1\n')).toEqual([]);
  });
});

describe('requestDelta', () => {
  const before = parseRequestCounts(
    [series('POST', 'secrets', '201', 10), series('GET', 'secrets', '200', 4)].join('\n'),
  );
  test.each([
    {
      why: 'a series that grew counts its growth',
      after: [series('POST', 'secrets', '201', 25), series('GET', 'secrets', '200', 4)],
      expected: [{ verb: 'POST', resource: 'secrets', code: '201', count: 15 }],
    },
    {
      why: 'a series new since the first reading counts whole',
      after: [
        series('POST', 'secrets', '201', 10),
        series('GET', 'secrets', '200', 4),
        series('PUT', 'secrets', '200', 3),
      ],
      expected: [{ verb: 'PUT', resource: 'secrets', code: '200', count: 3 }],
    },
    {
      why: 'a counter that went down was reset (an apiserver restart) and counts from zero',
      after: [series('POST', 'secrets', '201', 2), series('GET', 'secrets', '200', 4)],
      expected: [{ verb: 'POST', resource: 'secrets', code: '201', count: 2 }],
    },
  ])('$why', ({ after, expected }) => {
    expect(requestDelta(before, parseRequestCounts(after.join('\n')))).toEqual(expected);
  });
});

describe('summaries of a phase', () => {
  const rows = parseRequestCounts(
    [
      series('POST', 'secrets', '201', 20),
      series('POST', 'secrets', '409', 1),
      series('PUT', 'secrets', '200', 3),
      series('DELETE', 'secrets', '200', 1),
      series('LIST', 'secrets', '200', 2),
      series('GET', 'namespaces', '200', 7),
      series('PUT', 'leases', '200', 5),
      series('POST', 'configmaps', '201', 100),
    ].join('\n'),
  );
  test('byVerb counts the resources sync-secrets touches, most first, whatever the answer', () => {
    expect(byVerb(rows)).toEqual({
      'POST secrets': 21,
      'GET namespaces': 7,
      'PUT leases': 5,
      'PUT secrets': 3,
      'LIST secrets': 2,
      'DELETE secrets': 1,
    });
  });
  test('secretWrites counts creates, updates and deletes of Secrets and nothing else', () => {
    expect(secretWrites(rows)).toBe(25);
  });
  test('throttled counts the 429 answers only', () => {
    expect(throttled(rows)).toBe(0);
    expect(throttled([...rows, { verb: 'POST', resource: 'secrets', code: '429', count: 4 }])).toBe(4);
  });
  test('totalRequests leaves out resources sync-secrets never touches', () => {
    expect(totalRequests(rows)).toBe(39);
  });
});

describe('withoutProbe', () => {
  const rows = parseRequestCounts(
    [
      series('GET', 'namespaces', '200', 40),
      series('LIST', 'namespaces', '200', 1),
      series('POST', 'secrets', '201', 9),
    ].join('\n'),
  );
  test.each([
    { why: "the probe's GETs of a namespace come off the GETs of namespaces", probe: 30, gets: 10 },
    { why: "all GETs of namespaces being the probe's leaves none", probe: 40, gets: undefined },
    {
      why: 'a probe count above the GETs (one answered after the reading) leaves none, not fewer',
      probe: 45,
      gets: undefined,
    },
  ])('$why', ({ probe, gets }) => {
    const left = withoutProbe(rows, probe);
    expect(left.find((row) => row.verb === 'GET')?.count).toBe(gets);
    expect(totalRequests(left)).toBe(10 + (gets ?? 0));
  });
});

describe('throughputKnee', () => {
  test.each([
    {
      why: 'throughput that flattens after 32 stops growing at 32',
      points: [8, 16, 32, 64, 128].map((concurrency, index) => ({
        concurrency,
        perSecond: [500, 900, 1500, 1600, 1580][index] ?? 0,
      })),
      expected: 32,
    },
    {
      why: 'throughput that keeps growing by 10 % or more stops at the last concurrency measured',
      points: [8, 16, 32].map((concurrency) => ({ concurrency, perSecond: concurrency * 10 })),
      expected: 32,
    },
    {
      why: 'points in any order are taken by ascending concurrency',
      points: [
        { concurrency: 64, perSecond: 1000 },
        { concurrency: 8, perSecond: 400 },
        { concurrency: 16, perSecond: 990 },
      ],
      expected: 16,
    },
    { why: 'no points, no knee', points: [], expected: undefined },
  ])('$why', ({ points, expected }) => {
    expect(throughputKnee(points)).toBe(expected);
  });
});

describe('growth', () => {
  test('a cost proportional to the namespaces is linear: ratio 1 at every scale', () => {
    const rows = growth([
      { scale: 5000, value: 50_000 },
      { scale: 1000, value: 10_000 },
      { scale: 10_000, value: 100_000 },
    ]);
    expect(rows).toEqual([
      { scale: 1000, perNamespace: 10, ratio: 1 },
      { scale: 5000, perNamespace: 10, ratio: 1 },
      { scale: 10_000, perNamespace: 10, ratio: 1 },
    ]);
  });
  test('a cost that doubles per namespace from 1,000 to 10,000 reads as ratio 2', () => {
    expect(
      growth([
        { scale: 1000, value: 1000 },
        { scale: 10_000, value: 20_000 },
      ]).at(-1)?.ratio,
    ).toBe(2);
  });
});

test('targetsTable marks each target met or not met beside its floor', () => {
  const lines = targetsTable([
    { what: 'cold', measured: '3 s (1.2×)', floor: '2.5 s', target: '≤ 1.5×', met: true },
    { what: 'warm writes', measured: '4', floor: '0', target: '= 0', met: false },
  ]);
  expect(lines.slice(2)).toEqual([
    '| cold | 3 s (1.2×) | 2.5 s | ≤ 1.5× | met |',
    '| warm writes | 4 | 0 | = 0 | **not met** |',
  ]);
});
