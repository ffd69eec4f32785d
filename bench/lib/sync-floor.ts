// The minimal client the issue compares sync-secrets --once with: the same Secrets (the manifests
// `sync-secrets --dry-run` prints, so the same size, labels and annotations) POSTed with the same
// ServiceAccount token, `concurrency` requests in flight over as many keep-alive connections, and
// nothing else: no list, no read, no retry, no rate limit. Node's https, as the product uses.
import { performance } from 'node:perf_hooks';
import type { RequestOptions } from 'node:https';
import { eachLimit, httpsClient } from './sync-cluster.ts';

export interface FloorResult {
  readonly concurrency: number;
  readonly created: number;
  readonly failed: number;
  readonly ms: number;
  readonly perSecond: number;
}

/** A Secret manifest as --dry-run prints it: only what the floor rewrites is typed. */
export interface SecretManifest {
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly [key: string]: unknown };
  readonly [key: string]: unknown;
}

/**
 * Creates each manifest in each namespace, renamed `${prefix}${name}` so that repeated runs into the
 * same namespaces never collide with each other nor with the Secrets sync-secrets lists by name.
 */
export async function floorCreate(options: {
  server: string;
  tls: Pick<RequestOptions, 'ca'>;
  token: string;
  namespaces: readonly string[];
  manifests: readonly SecretManifest[];
  prefix: string;
  concurrency: number;
}): Promise<FloorResult> {
  const client = httpsClient(options.server, { ca: options.tls.ca }, options.token, options.concurrency);
  const jobs = options.namespaces.flatMap((namespace) =>
    options.manifests.map((manifest) =>
      JSON.stringify({
        ...manifest,
        metadata: { ...manifest.metadata, name: `${options.prefix}${manifest.metadata.name}`, namespace },
      }),
    ),
  );
  const paths = options.namespaces.flatMap((namespace) =>
    options.manifests.map(() => `/api/v1/namespaces/${namespace}/secrets`),
  );
  let created = 0;
  let failed = 0;
  try {
    const started = performance.now();
    await eachLimit(jobs, options.concurrency, async (body, index) => {
      const result = await client.send('POST', paths[index] as string, body).catch(() => undefined);
      if (result?.status === 201) created++;
      else failed++;
    });
    const ms = performance.now() - started;
    return { concurrency: options.concurrency, created, failed, ms, perSecond: (created / ms) * 1000 };
  } finally {
    client.close();
  }
}
