// Pod creates at a steady rate, for faults under load: each a real, persisted create that the apiserver sends
// through the webhook (an ACR image in an opted-in namespace), held by a scheduling gate so it never schedules or
// runs (cheap on a small machine). Deleting the namespace afterwards removes them.
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { IMAGES, SECRET_NAMES } from './story.ts';

/** Keeps the load's pods out of the scheduler's hands: created and admitted, never placed on the node. */
export const HOLD_GATE = 'acr-pull-webhook.test/hold';
/** Error messages (with when they happened) kept per run; the count covers the rest. */
const KEPT_ERRORS = 5;

export interface LoadOptions {
  /** An opted-in namespace whose pull secrets exist (the webhook adds only secrets that exist). */
  readonly namespace: string;
  /** Creates per second, started on schedule whether or not earlier ones have answered. */
  readonly ratePerSecond?: number;
  readonly image?: string;
  /** The imagePullSecrets every created pod must carry. */
  readonly expectSecrets?: readonly string[];
}

export interface LoadFailure {
  /** ISO time the create was started. */
  readonly at: string;
  readonly message: string;
}

export interface LoadCounts {
  readonly attempted: number;
  /** Created, with every expected secret injected. */
  readonly succeeded: number;
  /** Refused by the apiserver (with failurePolicy Fail, a webhook call that did not answer). */
  readonly failed: number;
  /** Created without an expected secret. */
  readonly unpatched: number;
  readonly firstFailures: readonly LoadFailure[];
  readonly durationMs: number;
  /** Slowest create, start to answer. */
  readonly maxLatencyMs: number;
}

export interface Load {
  /** The counts so far (creates still in flight are attempted but neither succeeded nor failed yet). */
  counts(): LoadCounts;
  /** Stops starting creates, waits for those in flight and returns the final counts. */
  stop(): Promise<LoadCounts>;
}

/** One line for a test log: `attempted N, failed M, unpatched U, ... first failures: ...`. */
export function describeCounts(counts: LoadCounts): string {
  const rate = counts.durationMs > 0 ? (counts.attempted / counts.durationMs) * 1000 : 0;
  const failures = counts.firstFailures.map((failure) => `${failure.at} ${failure.message}`).join(' | ');
  return (
    `attempted ${counts.attempted}, failed ${counts.failed}, unpatched ${counts.unpatched} ` +
    `over ${(counts.durationMs / 1000).toFixed(1)} s (${rate.toFixed(1)}/s, slowest ${counts.maxLatencyMs} ms)` +
    (failures === '' ? '' : `; first failures: ${failures}`)
  );
}

/** The apiserver's own message (a Status in the body) when there is one, else the client's. */
function errorMessage(err: unknown): string {
  const { code, body } = err as { code?: number; body?: unknown };
  try {
    const status = JSON.parse(String(body)) as { message?: string };
    if (typeof status.message === 'string') return `${code ?? ''} ${status.message}`.trim().slice(0, 400);
  } catch {
    // not a Status: a connection error or a client-side failure
  }
  return ((err as Error).message ?? String(err)).slice(0, 400);
}

export function startLoad(kubeConfig: KubeConfig, options: LoadOptions): Load {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const rate = options.ratePerSecond ?? 10;
  const image = options.image ?? (IMAGES[0] as string);
  const expected = options.expectSecrets ?? [SECRET_NAMES[0]];
  const started = Date.now();
  let attempted = 0;
  let succeeded = 0;
  let failed = 0;
  let unpatched = 0;
  let maxLatencyMs = 0;
  let endedAt: number | undefined;
  const firstFailures: LoadFailure[] = [];
  const inFlight = new Set<Promise<void>>();
  let running = true;

  const fail = (at: number, message: string): void => {
    if (firstFailures.length < KEPT_ERRORS) firstFailures.push({ at: new Date(at).toISOString(), message });
  };

  const createOne = async (): Promise<void> => {
    const at = Date.now();
    attempted++;
    try {
      // The answer is the object as persisted, after every mutating webhook ran.
      const pod = await core.createNamespacedPod({
        namespace: options.namespace,
        body: {
          metadata: { generateName: 'load-' },
          spec: {
            schedulingGates: [{ name: HOLD_GATE }],
            containers: [{ name: 'main', image }],
          },
        },
      });
      const names = new Set((pod.spec?.imagePullSecrets ?? []).map((secret) => secret.name));
      const missing = expected.filter((name) => !names.has(name));
      if (missing.length === 0) succeeded++;
      else {
        unpatched++;
        fail(at, `pod ${pod.metadata?.name} created without ${missing.join(', ')}`);
      }
    } catch (err) {
      failed++;
      fail(at, errorMessage(err));
    } finally {
      maxLatencyMs = Math.max(maxLatencyMs, Date.now() - at);
    }
  };

  // Creates start on a fixed schedule (start + i / rate), so a slow answer delays nothing after it.
  const ticker = (async () => {
    for (let i = 0; running; i++) {
      const due = started + (i * 1000) / rate;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      if (!running) break;
      const create = createOne();
      inFlight.add(create);
      void create.finally(() => inFlight.delete(create));
    }
  })();

  const counts = (): LoadCounts => ({
    attempted,
    succeeded,
    failed,
    unpatched,
    firstFailures: [...firstFailures],
    durationMs: (endedAt ?? Date.now()) - started,
    maxLatencyMs,
  });

  return {
    counts,
    async stop() {
      running = false;
      await ticker;
      endedAt ??= Date.now();
      await Promise.all([...inFlight]);
      return counts();
    },
  };
}
