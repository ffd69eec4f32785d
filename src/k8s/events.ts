// An events.k8s.io/v1 recorder, client-go's two safeguards in one small class, so a resync never floods the
// apiserver:
// - series (client-go tools/events/event_broadcaster.go, recordToSink and finishSeries): a repeat of an event
//   (same regarding, related, type, reason, action and note) within 6 minutes of its last occurrence PATCHes
//   series.count and series.lastObservedTime of the Event already written instead of creating a new one (repeats
//   that come while that PATCH waits are folded into it);
// - a spam filter (client-go tools/record/events_cache.go, EventSourceObjectSpamFilter): a token bucket per
//   reporting controller and regarding object, 25 events at once refilled at one every 5 minutes; what it
//   refuses is dropped.
// Recording is fire and forget: `record` returns at once, a failed write is logged (warn the first time for each
// status, then debug) and never retried, so an apiserver refusing events never slows or fails the caller.
// Writes wait in a bounded queue and go out a few at a time (client-go's broadcaster: a queue of 1000 that drops
// what does not fit, sent by one goroutine), through a client with a budget of its own, so a burst of events (a
// cold start's SecretCreated for every Secret) never doubles the write load nor delays a Secret. A full queue drops
// Normal events first: a Warning takes the place of the newest queued Normal one. Drops are counted (onDropped) and
// summed up in one log line once the queue has drained, or at a bounded flush.
import type { EventsV1Api, EventsV1Event } from '@kubernetes/client-node';
import { toKubeApiError } from './errors.ts';

/** What an Event is about (regarding) or mentions (related). */
export interface ObjectRef {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** Absent for cluster-scoped objects such as a Namespace. */
  readonly namespace?: string;
  readonly uid?: string;
}

export interface EventInput {
  readonly type: 'Normal' | 'Warning';
  /** UpperCamelCase, why the action was taken. */
  readonly reason: string;
  /** UpperCamelCase, what was done (or failed). */
  readonly action: string;
  /** Human-readable; built from fixed text and names only (never a credential). */
  readonly note: string;
  readonly regarding: ObjectRef;
  readonly related?: ObjectRef;
}

/** The two writes the recorder makes; the API one is {@link eventSink}, tests use their own. */
export interface EventSink {
  /** Creates the Event; resolves to its name. */
  create(namespace: string, event: EventsV1Event): Promise<void>;
  /** Sets series.count and series.lastObservedTime of an existing Event. */
  patchSeries(namespace: string, name: string, series: { count: number; lastObservedTime: string }): Promise<void>;
}

export function eventSink(api: EventsV1Api): EventSink {
  return {
    async create(namespace, body) {
      await api.createNamespacedEvent({ namespace, body });
    },
    async patchSeries(namespace, name, series) {
      // client-node sends a JSON patch (its first patch media type); `add` replaces a series already there.
      await api.patchNamespacedEvent({ namespace, name, body: [{ op: 'add', path: '/series', value: series }] });
    },
  };
}

/** client-go tools/events finishTime: a repeat later than this after the last occurrence starts a new Event. */
export const SERIES_WINDOW_MS = 6 * 60_000;
/** client-go tools/record defaultSpamBurst and defaultSpamQPS (one event per 5 minutes per object). */
export const SPAM_BURST = 25;
export const SPAM_QPS = 1 / 300;
/** client-go tools/record maxLruCacheEntries: the most series and buckets remembered (oldest forgotten first). */
export const CACHE_ENTRIES = 4096;
/** client-go tools/record maxQueuedEvents: the most writes waiting; more are dropped (Normal ones first). */
export const QUEUE_LIMIT = 1000;
/** Writes on the wire at once (client-go sends one at a time; a few hide a slow answer's latency). */
export const IN_FLIGHT = 4;
/** The most characters of a note the apiserver accepts (1 kB). */
export const NOTE_LIMIT = 1024;
/** How long a shutdown lets queued Normal events go out before it drops them ({@link EventRecorder.shutdown}). */
export const SHUTDOWN_NORMAL_GRACE_MS = 250;
/** Where Events about cluster-scoped objects go: the apiserver accepts them only in default or kube-system. */
export const CLUSTER_SCOPED_EVENT_NAMESPACE = 'default';

export interface RecorderLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export type EventType = EventInput['type'];

export interface EventRecorderOptions {
  readonly sink: EventSink;
  readonly reportingController: string;
  /** This replica (client-go: controller name and host name). */
  readonly reportingInstance: string;
  readonly logger: RecorderLogger;
  readonly now?: () => number;
  readonly burst?: number;
  readonly qps?: number;
  /** Writes waiting at most (default {@link QUEUE_LIMIT}). */
  readonly queueLimit?: number;
  /** Writes on the wire at once (default {@link IN_FLIGHT}). */
  readonly inFlight?: number;
  /** An event was dropped: the queue was full, or a bounded flush ended before it was sent. */
  readonly onDropped?: (type: EventType) => void;
  /**
   * Writes a second the sink is allowed (the events client's QPS; none: unbounded): at shutdown, queued Normal
   * events get the grace only when that budget could send them all within it.
   */
  readonly sendsPerSecond?: number;
  /** Writes that budget allows at once after a quiet spell (its burst): held events find it unspent at shutdown. */
  readonly sendBurst?: number;
  /**
   * Normal events wait in the queue, unsent, until {@link EventRecorder.releaseNormal}, a flush or the shutdown;
   * Warnings go out as ever. For a run whose own writes come first: in a cold --once at 1,000 namespaces the Normal
   * events the budget let through (280 creates) made the run 0.8 s slower, a fifth of it.
   */
  readonly holdNormal?: boolean;
}

interface Series {
  namespace: string;
  /** Undefined until the create has been answered. */
  name: string | undefined;
  count: number;
  lastObservedAt: number;
  /** Writes for one series happen in order, so a repeat patches the Event its first occurrence created. */
  chain: Promise<void>;
  /** A repeat's PATCH is waiting its turn: later repeats only raise the count it will send. */
  queued: boolean;
}

/** One write waiting in the queue. */
interface Task {
  readonly series: Series;
  readonly run: () => Promise<void>;
  /** Undoes what recording it promised (a repeat no longer waits its turn). */
  readonly dropped: () => void;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** The key of an object: kind, namespace, name, uid and apiVersion (client-go getSpamKey). */
function refKey(ref: ObjectRef | undefined): string {
  if (ref === undefined) return '';
  return [ref.kind, ref.namespace ?? '', ref.name, ref.uid ?? '', ref.apiVersion].join('\u0000');
}

/** MicroTime on the wire: RFC 3339 with exactly six fractional digits (the apiserver parses no other form). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** A Map used as an LRU: reading moves an entry to the end, and the first ones go past `limit`. */
function touch<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > limit) map.delete(map.keys().next().value as string);
}

export class EventRecorder {
  private readonly options: EventRecorderOptions;
  private readonly now: () => number;
  private readonly series = new Map<string, Series>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly warned = new Set<string>();
  /** Writes waiting, Warnings (sent first, dropped last) apart from Normal ones. */
  private readonly queue: Record<EventType, Task[]> = { Warning: [], Normal: [] };
  private running = 0;
  /** Resolved when nothing is queued or running. */
  private drainedWaiters: (() => void)[] = [];
  /** Dropped since the last summary line. */
  private readonly dropped: Record<EventType, number> = { Warning: 0, Normal: 0 };
  private sequence = 0;
  /** A bounded flush gave up on writes still on the wire: their failure (the pool closing) is no news. */
  private abandoned = false;
  private holding: boolean;

  constructor(options: EventRecorderOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.holding = options.holdNormal ?? false;
  }

  /** Normal events held back ({@link EventRecorderOptions.holdNormal}) start going out. */
  releaseNormal(): void {
    this.holding = false;
    this.pump();
  }

  /** Records (or counts) the event in the background; never throws. */
  record(input: EventInput): void {
    const now = this.now();
    if (!this.allow(input.regarding, now)) {
      this.options.logger.debug(
        { reason: input.reason, regarding: input.regarding.name },
        'event dropped: spam filter',
      );
      return;
    }
    const key = [
      refKey(input.regarding),
      refKey(input.related),
      input.type,
      input.reason,
      input.action,
      input.note,
    ].join('\u0001');
    const known = this.series.get(key);
    if (known !== undefined && now - known.lastObservedAt <= SERIES_WINDOW_MS) {
      known.count += 1;
      known.lastObservedAt = now;
      touch(this.series, key, known, CACHE_ENTRIES);
      if (known.queued) return;
      known.queued = true;
      this.track(
        known,
        input.type,
        () => {
          known.queued = false;
          return this.writeRepeat(known, input);
        },
        () => {
          known.queued = false;
        },
      );
      return;
    }
    const namespace = input.regarding.namespace ?? CLUSTER_SCOPED_EVENT_NAMESPACE;
    const fresh: Series = {
      namespace,
      name: undefined,
      count: 1,
      lastObservedAt: now,
      chain: Promise.resolve(),
      queued: false,
    };
    touch(this.series, key, fresh, CACHE_ENTRIES);
    // Never written, a repeat creates it afresh (writeRepeat), which is all a dropped create needs.
    this.track(
      fresh,
      input.type,
      () => this.create(fresh, input, now),
      () => undefined,
    );
  }

  /**
   * Waits for every write queued so far (shutdown and tests), or until `withinMs` has passed: then what is still
   * queued is dropped, counted and summed up, and writes on the wire are left to their request timeout.
   */
  async flush(withinMs?: number): Promise<void> {
    this.releaseNormal();
    if (withinMs === undefined) return this.idleOrAfter(undefined);
    await this.idleOrAfter(withinMs);
    this.dropRemaining();
  }

  /**
   * The end of a process: everything queued gets `normalGraceMs`, then queued Normal events are dropped (counted),
   * and Warnings and writes already on the wire get the rest of `withinMs`. A cold --once at 10,000 namespaces ends
   * with a thousand SecretCreated events waiting; sending them would make every such run seconds slower, for news
   * nobody waits on. A small run's events go out within the grace: as many as the budget sends in it (its burst, its
   * rate over the grace, and those on the wire). When more wait, waiting would send some and leave the rest unsent
   * anyway, so there is no grace (it cost such a run 250 ms), and all the queued Normal events are dropped at once.
   */
  async shutdown(withinMs: number, normalGraceMs = SHUTDOWN_NORMAL_GRACE_MS): Promise<void> {
    const inFlight = this.options.inFlight ?? IN_FLIGHT;
    const sendable =
      this.options.sendsPerSecond === undefined
        ? Number.POSITIVE_INFINITY
        : inFlight + (this.options.sendBurst ?? 0) + (this.options.sendsPerSecond * normalGraceMs) / 1000;
    const grace = this.queue.Normal.length > sendable ? 0 : Math.min(normalGraceMs, withinMs);
    if (grace === 0) for (const task of this.queue.Normal.splice(0)) this.drop(task, 'Normal');
    this.releaseNormal();
    await this.idleOrAfter(grace);
    for (const task of this.queue.Normal.splice(0)) this.drop(task, 'Normal');
    await this.idleOrAfter(withinMs - grace);
    this.dropRemaining();
  }

  /** Resolves once nothing is queued or running, or after `ms` (undefined: no bound). */
  private async idleOrAfter(ms: number | undefined): Promise<void> {
    const drained = this.idle() ? Promise.resolve() : new Promise<void>((done) => this.drainedWaiters.push(done));
    if (ms === undefined) return drained;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((done) => {
      timer = setTimeout(done, ms);
    });
    await Promise.race([drained, late]);
    clearTimeout(timer);
  }

  /** After a bounded wait: what is still queued is dropped, counted and summed up; writes on the wire run out. */
  private dropRemaining(): void {
    if (!this.idle()) this.abandoned = true;
    for (const type of ['Normal', 'Warning'] as const) {
      for (const task of this.queue[type].splice(0)) this.drop(task, type);
    }
    this.summarise();
  }

  /** Events dropped since the last summary line, by type. */
  droppedSinceSummary(): Readonly<Record<EventType, number>> {
    return { ...this.dropped };
  }

  /** The token bucket of the regarding object: refilled at qps up to burst, one token per event. */
  private allow(regarding: ObjectRef, now: number): boolean {
    const burst = this.options.burst ?? SPAM_BURST;
    const qps = this.options.qps ?? SPAM_QPS;
    const key = `${this.options.reportingController}\u0000${refKey(regarding)}`;
    const bucket = this.buckets.get(key) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * qps);
    bucket.at = now;
    const allowed = bucket.tokens >= 1;
    if (allowed) bucket.tokens -= 1;
    touch(this.buckets, key, bucket, CACHE_ENTRIES);
    return allowed;
  }

  /** Queues a write; a full queue drops a Normal one (the newest queued, for a Warning) or this one. */
  private track(series: Series, type: EventType, run: () => Promise<void>, dropped: () => void): void {
    const task: Task = { series, run, dropped };
    const limit = Math.max(0, this.options.queueLimit ?? QUEUE_LIMIT);
    if (this.queue.Warning.length + this.queue.Normal.length >= limit) {
      const evicted = type === 'Warning' ? this.queue.Normal.pop() : undefined;
      if (evicted === undefined) {
        this.drop(task, type);
        return;
      }
      this.drop(evicted, 'Normal');
    }
    this.queue[type].push(task);
    this.pump();
  }

  private drop(task: Task, type: EventType): void {
    task.dropped();
    this.dropped[type] += 1;
    this.options.onDropped?.(type);
  }

  private idle(): boolean {
    return this.running === 0 && this.queue.Warning.length === 0 && this.queue.Normal.length === 0;
  }

  /** Starts queued writes up to the in-flight bound; writes of one series stay in order (its chain). */
  private pump(): void {
    const limit = Math.max(1, this.options.inFlight ?? IN_FLIGHT);
    while (this.running < limit) {
      const task = this.queue.Warning.shift() ?? (this.holding ? undefined : this.queue.Normal.shift());
      if (task === undefined) break;
      this.running += 1;
      const next = task.series.chain.then(task.run).catch(() => undefined);
      task.series.chain = next;
      void next.then(() => {
        this.running -= 1;
        this.pump();
      });
    }
    if (this.idle()) {
      this.summarise();
      for (const done of this.drainedWaiters.splice(0)) done();
    }
  }

  /** One line for the events dropped since the last one: warn when a Warning was among them. */
  private summarise(): void {
    const { Normal, Warning } = this.dropped;
    if (Normal + Warning === 0) return;
    this.dropped.Normal = 0;
    this.dropped.Warning = 0;
    const fields = { dropped: { Normal, Warning } };
    const message = 'events dropped: more than the queue holds, or not sent before exit (Normal ones first)';
    if (Warning > 0) this.options.logger.warn(fields, message);
    else this.options.logger.info(fields, message);
  }

  private async create(series: Series, input: EventInput, at: number): Promise<void> {
    const { reportingController, reportingInstance } = this.options;
    // client-go names an Event `<regarding name>.<time in hex>`; the sequence keeps two in one millisecond apart.
    const stamp = BigInt(at) * 1_000_000n + BigInt(this.sequence++ % 1_000_000);
    const name = `${input.regarding.name}.${stamp.toString(16)}`;
    const event: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace: series.namespace },
      // A string on purpose: client-node would write a Date with three fractional digits.
      eventTime: microTime(at) as unknown as Date,
      reportingController,
      reportingInstance,
      type: input.type,
      reason: input.reason,
      action: input.action,
      // The apiserver refuses a longer note (events.k8s.io validation, NoteLengthLimit).
      note: input.note.slice(0, NOTE_LIMIT),
      regarding: { ...input.regarding },
      ...(input.related === undefined ? {} : { related: { ...input.related } }),
    };
    try {
      await this.options.sink.create(series.namespace, event);
      series.name = name;
    } catch (error) {
      this.failed(error, input, 'create');
    }
  }

  /** Sends the count and time of the latest repeat: repeats that came while it waited are in it. */
  private async writeRepeat(series: Series, input: EventInput): Promise<void> {
    const { count, lastObservedAt } = series;
    if (series.name === undefined) {
      // The first occurrence was never written: this one starts the Event afresh.
      series.count = 1;
      return this.create(series, input, lastObservedAt);
    }
    try {
      await this.options.sink.patchSeries(series.namespace, series.name, {
        count,
        lastObservedTime: microTime(lastObservedAt),
      });
    } catch (error) {
      // Gone (its TTL passed, or deleted): like client-go, create it again.
      if (toKubeApiError(error, 'patch event').status === 404) {
        series.name = undefined;
        series.count = 1;
        return this.create(series, input, lastObservedAt);
      }
      this.failed(error, input, 'patch');
    }
  }

  private failed(error: unknown, input: EventInput, verb: string): void {
    const failure = toKubeApiError(error, `${verb} event`);
    const fields = {
      reason: input.reason,
      regarding: input.regarding.name,
      status: failure.status,
      error: failure.message,
    };
    const first = `${verb}:${failure.status ?? 'none'}:${failure.reason ?? ''}`;
    if (this.warned.has(first) || this.abandoned) {
      this.options.logger.debug(fields, 'event not recorded');
      return;
    }
    this.warned.add(first);
    this.options.logger.warn(fields, 'event not recorded (further failures like this one are logged at debug)');
  }
}
