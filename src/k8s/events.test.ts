import { ApiException, type EventsV1Event } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { type EventInput, EventRecorder, type EventSink, microTime, SHUTDOWN_NORMAL_GRACE_MS } from './events.ts';

type Write =
  | { readonly verb: 'create'; readonly namespace: string; readonly event: EventsV1Event }
  | {
      readonly verb: 'patch';
      readonly namespace: string;
      readonly name: string;
      readonly series: { count: number; lastObservedTime: string };
    };

/** A sink that records every write; `fail` makes the next writes throw what it returns. */
function fakeSink(): EventSink & { writes: Write[]; fail: (() => unknown) | undefined } {
  const sink = {
    writes: [] as Write[],
    fail: undefined as (() => unknown) | undefined,
    async create(namespace: string, event: EventsV1Event) {
      if (sink.fail) throw sink.fail();
      sink.writes.push({ verb: 'create', namespace, event });
    },
    async patchSeries(namespace: string, name: string, series: { count: number; lastObservedTime: string }) {
      if (sink.fail) throw sink.fail();
      sink.writes.push({ verb: 'patch', namespace, name, series });
    },
  };
  return sink;
}

function fakeLogger() {
  return { debug: vi.fn(), info: vi.fn(), warn: vi.fn() };
}

const team = { apiVersion: 'v1', kind: 'Namespace', name: 'team-a', uid: 'uid-a' };
const skipped: EventInput = {
  type: 'Warning',
  reason: 'SecretNotManaged',
  action: 'SkipSecret',
  note: 'Left Secret acr-x unchanged',
  regarding: team,
  related: { apiVersion: 'v1', kind: 'Secret', namespace: 'team-a', name: 'acr-x' },
};

const MINUTE = 60_000;
const START = Date.parse('2026-12-01T04:00:00.000Z');

function recorder(
  sink: EventSink,
  options: {
    burst?: number;
    qps?: number;
    queueLimit?: number;
    inFlight?: number;
    sendsPerSecond?: number;
    sendBurst?: number;
    holdNormal?: boolean;
    onDropped?: (type: string) => void;
  } = {},
) {
  const logger = fakeLogger();
  const recording = new EventRecorder({
    sink,
    reportingController: 'acr-pull-webhook/sync-secrets',
    reportingInstance: 'acr-pull-webhook/sync-secrets-pod-1',
    logger,
    ...options,
  });
  return { recording, logger };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(START);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('an Event about a Namespace', () => {
  test('is created in default (the one namespace the apiserver takes for cluster-scoped objects)', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    await recording.flush();
    expect(sink.writes).toHaveLength(1);
    const write = sink.writes[0] as Extract<Write, { verb: 'create' }>;
    expect(write.namespace).toBe('default');
    expect(write.event).toMatchObject({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { namespace: 'default' },
      eventTime: '2026-12-01T04:00:00.000000Z',
      reportingController: 'acr-pull-webhook/sync-secrets',
      reportingInstance: 'acr-pull-webhook/sync-secrets-pod-1',
      type: 'Warning',
      reason: 'SecretNotManaged',
      action: 'SkipSecret',
      note: 'Left Secret acr-x unchanged',
      regarding: team,
      related: { kind: 'Secret', namespace: 'team-a', name: 'acr-x' },
    });
    expect(write.event.metadata?.name).toMatch(/^team-a\.[0-9a-f]+$/);
  });

  test('gets a name of its own each time, even within one millisecond', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    recording.record({ ...skipped, reason: 'SyncFailed' });
    await recording.flush();
    const names = sink.writes.map((write) => (write.verb === 'create' ? write.event.metadata?.name : ''));
    expect(new Set(names).size).toBe(2);
  });

  test('has its note cut to the 1024 characters the apiserver accepts', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record({ ...skipped, note: 'x'.repeat(1500) });
    await recording.flush();
    const write = sink.writes[0] as Extract<Write, { verb: 'create' }>;
    expect(write.event.note).toHaveLength(1024);
  });

  test('MicroTime has exactly six fractional digits', () => {
    expect(microTime(Date.parse('2026-12-01T04:05:06.789Z'))).toBe('2026-12-01T04:05:06.789000Z');
  });
});

describe('a repeat of the same event (client-go EventSeries)', () => {
  test('within 6 minutes of the last one patches series.count and lastObservedTime of the first Event', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    await recording.flush();
    vi.advanceTimersByTime(5 * MINUTE);
    recording.record(skipped);
    await recording.flush();
    vi.advanceTimersByTime(5 * MINUTE);
    recording.record(skipped);
    await recording.flush();
    const [created, ...patches] = sink.writes;
    const name = created?.verb === 'create' ? created.event.metadata?.name : undefined;
    expect(patches).toEqual([
      {
        verb: 'patch',
        namespace: 'default',
        name,
        series: { count: 2, lastObservedTime: '2026-12-01T04:05:00.000000Z' },
      },
      {
        verb: 'patch',
        namespace: 'default',
        name,
        series: { count: 3, lastObservedTime: '2026-12-01T04:10:00.000000Z' },
      },
    ]);
  });

  test('while a PATCH waits its turn, only raise the count it sends (one PATCH, the latest count)', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(1_000);
      recording.record(skipped);
    }
    await recording.flush();
    expect(sink.writes.map((write) => (write.verb === 'patch' ? write.series : write.verb))).toEqual([
      'create',
      { count: 6, lastObservedTime: '2026-12-01T04:00:05.000000Z' },
    ]);
  });

  test('more than 6 minutes after the last one starts a new Event', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    vi.advanceTimersByTime(6 * MINUTE + 1);
    recording.record(skipped);
    await recording.flush();
    expect(sink.writes.map((write) => write.verb)).toEqual(['create', 'create']);
  });

  test.each([
    { differs: 'the note', other: { ...skipped, note: 'Left Secret acr-x unchanged: another reason' } },
    { differs: 'the reason', other: { ...skipped, reason: 'SyncFailed' } },
    { differs: 'the related Secret', other: { ...skipped, related: { ...team, kind: 'Secret', name: 'acr-y' } } },
    { differs: 'the namespace', other: { ...skipped, regarding: { ...team, name: 'team-b', uid: 'uid-b' } } },
  ])('is a new Event when $differs differs', async ({ other }) => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    recording.record(other);
    await recording.flush();
    expect(sink.writes.map((write) => write.verb)).toEqual(['create', 'create']);
  });

  test('whose Event is gone (its TTL passed) creates it again', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    recording.record(skipped);
    await recording.flush();
    sink.fail = () => new ApiException(404, 'Not Found', '{"kind":"Status","reason":"NotFound"}', {});
    const patchSeries = sink.patchSeries.bind(sink);
    sink.patchSeries = async (...args) => {
      try {
        await patchSeries(...args);
      } finally {
        sink.fail = undefined;
      }
    };
    recording.record(skipped);
    await recording.flush();
    expect(sink.writes.map((write) => write.verb)).toEqual(['create', 'create']);
  });

  test('whose first write failed is created, not patched', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    sink.fail = () => new Error('fetch failed');
    recording.record(skipped);
    await recording.flush();
    sink.fail = undefined;
    recording.record(skipped);
    await recording.flush();
    expect(sink.writes.map((write) => write.verb)).toEqual(['create']);
  });
});

describe('the spam filter (client-go EventSourceObjectSpamFilter: 25 at once, then one per 5 minutes)', () => {
  const distinct = (i: number): EventInput => ({ ...skipped, note: `note ${i}` });

  test('lets 25 events about one Namespace through and drops the 26th', async () => {
    const sink = fakeSink();
    const { recording, logger } = recorder(sink);
    for (let i = 0; i < 26; i++) recording.record(distinct(i));
    await recording.flush();
    expect(sink.writes).toHaveLength(25);
    expect(logger.debug).toHaveBeenCalledWith(
      expect.objectContaining({ regarding: 'team-a' }),
      'event dropped: spam filter',
    );
  });

  test('counts series repeats too, so a flapping object cannot patch without bound', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    for (let i = 0; i < 40; i++) {
      recording.record(skipped);
      await recording.flush();
    }
    expect(sink.writes).toHaveLength(25);
  });

  test('refills one token every 5 minutes, not sooner', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    for (let i = 0; i < 25; i++) recording.record(distinct(i));
    vi.advanceTimersByTime(5 * MINUTE - 1_000);
    recording.record(distinct(100));
    vi.advanceTimersByTime(1_000);
    recording.record(distinct(101));
    recording.record(distinct(102));
    await recording.flush();
    const notes = sink.writes.map((write) => (write.verb === 'create' ? write.event.note : ''));
    expect(notes).toHaveLength(26);
    expect(notes.at(-1)).toBe('note 101');
  });

  test('keeps a bucket per Namespace: a noisy one does not silence another', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink);
    for (let i = 0; i < 30; i++) recording.record(distinct(i));
    recording.record({ ...skipped, regarding: { ...team, name: 'team-b', uid: 'uid-b' } });
    await recording.flush();
    expect(sink.writes).toHaveLength(26);
    const last = sink.writes.at(-1);
    expect(last?.verb === 'create' && last.event.regarding?.name).toBe('team-b');
  });
});

describe('a failed write', () => {
  test('that hangs does not hold up a bounded flush (shutdown)', async () => {
    const sink = fakeSink();
    sink.create = () => new Promise(() => {});
    const { recording } = recorder(sink);
    recording.record(skipped);
    const flushed = recording.flush(2_000);
    vi.advanceTimersByTime(2_000);
    await expect(flushed).resolves.toBeUndefined();
  });

  test('never reaches the caller: record returns at once and flush resolves', async () => {
    const sink = fakeSink();
    sink.fail = () => new ApiException(403, 'Forbidden', '{"kind":"Status","reason":"Forbidden"}', {});
    const { recording } = recorder(sink);
    expect(() => recording.record(skipped)).not.toThrow();
    await expect(recording.flush()).resolves.toBeUndefined();
  });

  test('is logged at warn the first time for each status, then at debug', async () => {
    const sink = fakeSink();
    sink.fail = () => new ApiException(403, 'Forbidden', '{"kind":"Status","reason":"Forbidden"}', {});
    const { recording, logger } = recorder(sink);
    for (let i = 0; i < 3; i++) recording.record({ ...skipped, note: `note ${i}` });
    await recording.flush();
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(logger.warn).toHaveBeenCalledWith(
      expect.objectContaining({ status: 403, reason: 'SecretNotManaged' }),
      'event not recorded (further failures like this one are logged at debug)',
    );
    expect(logger.debug).toHaveBeenCalledTimes(2);
  });
});

describe('the queue (client-go broadcaster: 1000 waiting, the rest dropped)', () => {
  /** A sink whose creates wait until released (then answer at once), recording the notes in the order sent. */
  function heldSink() {
    const sent: string[] = [];
    const waiting: (() => void)[] = [];
    let held = true;
    const sink: EventSink = {
      create: (_namespace, event) =>
        new Promise<void>((done) => {
          sent.push(event.note ?? '');
          if (held) waiting.push(done);
          else done();
        }),
      patchSeries: async () => {},
    };
    const releaseAll = async () => {
      held = false;
      for (const done of waiting.splice(0)) done();
    };
    return { sink, sent, releaseAll };
  }
  const about = (i: number, type: 'Normal' | 'Warning'): EventInput => ({
    ...skipped,
    type,
    note: `${type} ${i}`,
    regarding: { ...team, name: `team-${i}`, uid: `uid-${i}` },
  });

  test('sends at most `inFlight` writes at once and holds the rest', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const { recording } = recorder(sink, { inFlight: 2 });
    for (let i = 0; i < 5; i++) recording.record(about(i, 'Normal'));
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toEqual(['Normal 0', 'Normal 1']);
    await releaseAll();
    await recording.flush();
    expect(sent).toHaveLength(5);
  });

  test('drops the Normal events beyond its bound, counts them and says so in one line once drained', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const dropped: string[] = [];
    const { recording, logger } = recorder(sink, {
      inFlight: 1,
      queueLimit: 3,
      onDropped: (type) => dropped.push(type),
    });
    // One on the wire, three waiting, two more than the queue holds.
    for (let i = 0; i < 6; i++) recording.record(about(i, 'Normal'));
    expect(dropped).toEqual(['Normal', 'Normal']);
    await releaseAll();
    await recording.flush();
    expect(sent).toEqual(['Normal 0', 'Normal 1', 'Normal 2', 'Normal 3']);
    expect(logger.info).toHaveBeenCalledTimes(1);
    expect(logger.info).toHaveBeenCalledWith(
      { dropped: { Normal: 2, Warning: 0 } },
      'events dropped: more than the queue holds, or not sent before exit (Normal ones first)',
    );
  });

  test('makes room for a Warning by dropping the newest Normal event, and sends Warnings first', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const { recording, logger } = recorder(sink, { inFlight: 1, queueLimit: 3 });
    for (let i = 0; i < 4; i++) recording.record(about(i, 'Normal'));
    recording.record(about(4, 'Warning'));
    await releaseAll();
    await recording.flush();
    expect(sent).toEqual(['Normal 0', 'Warning 4', 'Normal 1', 'Normal 2']);
    expect(logger.info).toHaveBeenCalledWith({ dropped: { Normal: 1, Warning: 0 } }, expect.any(String));
  });

  test('drops a Warning only when the queue holds nothing but Warnings, and then warns', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const { recording, logger } = recorder(sink, { inFlight: 1, queueLimit: 2 });
    for (let i = 0; i < 4; i++) recording.record(about(i, 'Warning'));
    await releaseAll();
    await recording.flush();
    expect(sent).toEqual(['Warning 0', 'Warning 1', 'Warning 2']);
    expect(logger.warn).toHaveBeenCalledWith({ dropped: { Normal: 0, Warning: 1 } }, expect.any(String));
  });

  test('a bounded flush drops what is still waiting, counted, so the caller exits on time', async () => {
    const { sink, sent } = heldSink();
    const dropped: string[] = [];
    const { recording, logger } = recorder(sink, { inFlight: 1, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 10; i++) recording.record(about(i, 'Normal'));
    const flushed = recording.flush(2_000);
    await vi.advanceTimersByTimeAsync(2_000);
    await expect(flushed).resolves.toBeUndefined();
    expect(sent).toEqual(['Normal 0']);
    expect(dropped).toHaveLength(9);
    expect(logger.info).toHaveBeenCalledWith({ dropped: { Normal: 9, Warning: 0 } }, expect.any(String));
  });

  test('at shutdown Normal events still queued after the grace are dropped; queued Warnings still go out', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const dropped: string[] = [];
    const { recording, logger } = recorder(sink, { inFlight: 1, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 5; i++) recording.record(about(i, 'Normal'));
    recording.record(about(5, 'Warning'));
    const done = recording.shutdown(2_000);
    await vi.advanceTimersByTimeAsync(SHUTDOWN_NORMAL_GRACE_MS);
    expect(dropped).toEqual(['Normal', 'Normal', 'Normal', 'Normal']);
    await releaseAll();
    await expect(done).resolves.toBeUndefined();
    expect(sent).toEqual(['Normal 0', 'Warning 5']);
    expect(logger.info).toHaveBeenCalledWith({ dropped: { Normal: 4, Warning: 0 } }, expect.any(String));
  });

  test('at shutdown the few Normal events of a small run go out within the grace', async () => {
    const sink = fakeSink();
    const dropped: string[] = [];
    const { recording } = recorder(sink, { inFlight: 1, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 5; i++) recording.record(about(i, 'Normal'));
    await recording.shutdown(2_000);
    expect(sink.writes).toHaveLength(5);
    expect(dropped).toEqual([]);
  });

  test('at shutdown more Normal events than the budget sends within the grace are dropped at once', async () => {
    const { sink, sent, releaseAll } = heldSink();
    const dropped: string[] = [];
    // 4 a second for 250 ms, plus the one on the wire: 2 could go out; 5 wait.
    const { recording } = recorder(sink, { inFlight: 1, sendsPerSecond: 4, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 6; i++) recording.record(about(i, 'Normal'));
    const done = recording.shutdown(2_000);
    await vi.advanceTimersByTimeAsync(0);
    expect(dropped).toHaveLength(5);
    await releaseAll();
    await expect(done).resolves.toBeUndefined();
    expect(sent).toEqual(['Normal 0']);
  });

  test('at shutdown Normal events the budget can send within the grace still get it', async () => {
    const sink = fakeSink();
    const dropped: string[] = [];
    const { recording } = recorder(sink, { inFlight: 1, sendsPerSecond: 50, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 5; i++) recording.record(about(i, 'Normal'));
    await recording.shutdown(2_000);
    expect(sink.writes).toHaveLength(5);
    expect(dropped).toEqual([]);
  });

  const notes = (writes: readonly Write[]) => writes.map((write) => (write.verb === 'create' ? write.event.note : ''));

  test('held Normal events wait for the shutdown while Warnings go out at once', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink, { holdNormal: true, sendsPerSecond: 50 });
    for (let i = 0; i < 3; i++) recording.record(about(i, 'Normal'));
    recording.record(about(3, 'Warning'));
    await vi.advanceTimersByTimeAsync(5_000);
    expect(notes(sink.writes)).toEqual(['Warning 3']);
    await recording.shutdown(2_000);
    expect(notes(sink.writes)).toEqual(['Warning 3', 'Normal 0', 'Normal 1', 'Normal 2']);
  });

  test('held Normal events the budget sends at once (its burst) go out at shutdown', async () => {
    const sink = fakeSink();
    const dropped: string[] = [];
    // 1 on the wire + a burst of 8 + 4 a second for 250 ms: 10 fit.
    const options = { holdNormal: true, inFlight: 1, sendsPerSecond: 4, sendBurst: 8 };
    const { recording } = recorder(sink, { ...options, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 10; i++) recording.record(about(i, 'Normal'));
    await recording.shutdown(2_000);
    expect(sink.writes).toHaveLength(10);
    expect(dropped).toEqual([]);
    const over = recorder(fakeSink(), { ...options, onDropped: (type) => dropped.push(type) });
    for (let i = 0; i < 11; i++) over.recording.record(about(i, 'Normal'));
    await over.recording.shutdown(2_000);
    expect(dropped).toHaveLength(11);
  });

  test('held Normal events beyond what the budget sends within the grace are all dropped, none sent', async () => {
    const sink = fakeSink();
    const dropped: string[] = [];
    const { recording, logger } = recorder(sink, {
      holdNormal: true,
      inFlight: 1,
      sendsPerSecond: 4,
      onDropped: (type) => dropped.push(type),
    });
    for (let i = 0; i < 6; i++) recording.record(about(i, 'Normal'));
    await recording.shutdown(2_000);
    expect(sink.writes).toEqual([]);
    expect(dropped).toHaveLength(6);
    expect(logger.info).toHaveBeenCalledWith({ dropped: { Normal: 6, Warning: 0 } }, expect.any(String));
  });

  test('held Normal events go out on releaseNormal() and on a flush', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink, { holdNormal: true });
    recording.record(about(0, 'Normal'));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(sink.writes).toHaveLength(0);
    recording.releaseNormal();
    await recording.flush();
    expect(notes(sink.writes)).toEqual(['Normal 0']);
    const flushed = recorder(fakeSink(), { holdNormal: true });
    flushed.recording.record(about(1, 'Normal'));
    await flushed.recording.flush();
    expect(flushed.recording.droppedSinceSummary()).toEqual({ Normal: 0, Warning: 0 });
  });

  test('a dropped repeat does not stop later repeats from being written', async () => {
    const sink = fakeSink();
    const { recording } = recorder(sink, { queueLimit: 0 });
    recording.record(skipped);
    await recording.flush();
    expect(sink.writes).toHaveLength(0);
    const open = recorder(sink, { queueLimit: 1 });
    open.recording.record(skipped);
    await open.recording.flush();
    open.recording.record(skipped);
    await open.recording.flush();
    expect(sink.writes.map((write) => write.verb)).toEqual(['create', 'patch']);
  });
});
