// The health port of `sync-secrets --watch`, served by the shared health server (src/server/health.ts):
// /healthz (liveness) fails when the namespace or secret watch has stopped making progress, so the kubelet
// restarts a process that would otherwise sit silent; /readyz says the first list is done and the
// process is not shutting down; /metrics lets operators alert when secrets stop being kept (a stall
// liveness cannot see, such as writes that keep failing).
export {
  type HealthChecks as HealthDeps,
  type HealthServer,
  healthListener,
  startHealthServer,
} from '../server/health.ts';

/** One watch the liveness rule looks at: its name (for the reason) and when it last made progress (epoch ms). */
export interface WatchProgress {
  readonly name: string;
  readonly lastProgressAt: number;
}

/**
 * The liveness rule: every watch has had a list, watch event, bookmark or normal watch end within `stallMs`
 * (counted from the start until its first). The reason names the watch quiet the longest.
 */
export function watchStallReason(
  watches: readonly WatchProgress[],
  startedAt: number,
  stallMs: number,
  now: number = Date.now(),
): string | undefined {
  let stalest: WatchProgress | undefined;
  for (const watch of watches) {
    if (stalest === undefined || watch.lastProgressAt < stalest.lastProgressAt) stalest = watch;
  }
  if (stalest === undefined) return undefined;
  const since = Math.max(stalest.lastProgressAt, startedAt);
  const quietMs = now - since;
  if (quietMs <= stallMs) return undefined;
  const limit = `limit ${Math.round(stallMs / 1000)} s`;
  return `${stalest.name} has made no progress for ${Math.round(quietMs / 1000)} s (${limit})`;
}
