// What an admin sees: one cluster-wide watch of the Secrets sync-secrets manages (by its managed-by
// label), recording when each (namespace, name) was last seen and with which content hash, so the
// bench can time "labelled → both secrets exist" and "credentials rotated → last secret updated" as
// any user of the cluster would observe them, not as sync-secrets reports them.
import { performance } from 'node:perf_hooks';
import { request, type RequestOptions } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTENT_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../../src/constants.ts';

export interface Sighting {
  /** performance.now() when the event arrived. */
  readonly at: number;
  readonly hash: string | undefined;
}

export interface SecretObserver {
  /** Last sighting of each `namespace/name` since the observer started (deletions remove it). */
  readonly seen: Map<string, Sighting>;
  /** Resolves once `check` holds (checked on each event and every 50 ms), or throws after timeoutMs. */
  until(what: string, check: () => boolean, timeoutMs: number): Promise<void>;
  stop(): void;
}

interface WatchEvent {
  type: string;
  object: {
    metadata?: { namespace?: string; name?: string; resourceVersion?: string; annotations?: Record<string, string> };
  };
}

export function observeSecrets(
  server: string,
  tls: Pick<RequestOptions, 'ca' | 'cert' | 'key'>,
  resourceVersion: string,
): SecretObserver {
  const url = new URL(server);
  const seen = new Map<string, Sighting>();
  let stopped = false;
  let current: ReturnType<typeof request> | undefined;
  let lastVersion = resourceVersion;
  const selector = encodeURIComponent(`${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`);
  const connect = (): void => {
    if (stopped) return;
    const path = `/api/v1/secrets?watch=1&labelSelector=${selector}&resourceVersion=${lastVersion}`;
    current = request({ host: url.hostname, port: url.port, path, ...tls }, (res) => {
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = performance.now();
        buffer += chunk;
        let newline = buffer.indexOf('\n');
        while (newline >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          newline = buffer.indexOf('\n');
          if (line.trim() === '') continue;
          const event = JSON.parse(line) as WatchEvent;
          const meta = event.object.metadata;
          if (meta?.resourceVersion !== undefined) lastVersion = meta.resourceVersion;
          if (meta?.namespace === undefined || meta.name === undefined) continue;
          const key = `${meta.namespace}/${meta.name}`;
          if (event.type === 'DELETED') seen.delete(key);
          else if (event.type === 'ADDED' || event.type === 'MODIFIED')
            seen.set(key, { at, hash: meta.annotations?.[CONTENT_HASH_ANNOTATION] });
        }
      });
      // The apiserver ends a watch after its request timeout: carry on from the last version seen.
      res.on('end', () => void sleep(100).then(connect));
      res.on('error', () => undefined);
    });
    current.on('error', () => void sleep(500).then(connect));
    current.end();
  };
  connect();
  return {
    seen,
    async until(what, check, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (!check()) {
        if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    stop() {
      stopped = true;
      current?.destroy();
    },
  };
}
