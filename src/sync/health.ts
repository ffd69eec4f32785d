// The health port of `sync-secrets --watch`, served by the shared health server (src/server/health.ts):
// /healthz (liveness) fails when the namespace watch has stopped making progress, so the kubelet
// restarts a process that would otherwise sit silent; /readyz says the first list is done and the
// process is not shutting down; /metrics lets operators alert when secrets stop being kept (a stall
// liveness cannot see, such as writes that keep failing).
export {
  type HealthChecks as HealthDeps,
  type HealthServer,
  healthListener,
  startHealthServer,
} from '../server/health.ts';

/**
 * The liveness rule: a list, watch event, bookmark or normal watch end within `stallMs` (counted from
 * the start until the first).
 */
export function watchStallReason(
  lastProgressAt: number,
  startedAt: number,
  stallMs: number,
  now: number = Date.now(),
): string | undefined {
  const since = Math.max(lastProgressAt, startedAt);
  const quietMs = now - since;
  if (quietMs <= stallMs) return undefined;
  const limit = `limit ${Math.round(stallMs / 1000)} s`;
  return `namespace watch has made no progress for ${Math.round(quietMs / 1000)} s (${limit})`;
}
