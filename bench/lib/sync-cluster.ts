// The cluster side of `npm run bench:sync`: a fresh etcd + kube-apiserver, the chart's sync-secrets
// RBAC applied and a TokenRequest token for its ServiceAccount (so API Priority and Fairness treats
// sync-secrets as the workload it is in production; the admin is system:masters and exempt), and a
// small keep-alive HTTPS client for the bench's own bulk work (namespaces, resets, probes), which
// the generated client would make slower than what it measures.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CoreV1Api } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { tokenKubeconfig } from '../../test/support/certs-gen-cli.ts';
import { startControlPlane, type ControlPlane } from '../../test/support/control-plane.ts';
import { renderChart } from '../../test/support/helm.ts';

/** Namespace of the chart's release: the ServiceAccount, the Lease and its Role live here. */
export const RELEASE_NAMESPACE = 'acr-system';
const RELEASE = 'acr';

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** Requests over one keep-alive agent with fixed credentials (the admin's client certificate, or a token). */
export interface Client {
  send(method: string, path: string, body?: unknown, contentType?: string): Promise<HttpAnswer>;
  readonly agent: Agent;
  close(): void;
}

export function httpsClient(
  server: string,
  base: Pick<RequestOptions, 'ca' | 'cert' | 'key'>,
  token?: string,
  maxSockets = 64,
): Client {
  const url = new URL(server);
  const agent = new Agent({ keepAlive: true, maxSockets, ...base });
  return {
    agent,
    close: () => agent.destroy(),
    send(method, path, body, contentType = 'application/json') {
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          {
            host: url.hostname,
            port: url.port,
            path,
            method,
            agent,
            headers: {
              accept: 'application/json',
              ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
              ...(payload === undefined
                ? {}
                : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }),
            },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
            res.on('error', reject);
          },
        );
        req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.on('error', reject);
        req.end(payload);
      });
    },
  };
}

/** Runs `work` over `items` with at most `concurrency` at a time; resolves when all are done. */
export async function eachLimit<T>(
  items: readonly T[],
  concurrency: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export interface SyncCluster {
  readonly controlPlane: ControlPlane;
  /** Admin (system:masters) client certificate. */
  readonly admin: Client;
  readonly adminTls: Pick<RequestOptions, 'ca' | 'cert' | 'key'>;
  /** The sync-secrets ServiceAccount's token and a kubeconfig using it. */
  readonly token: string;
  readonly tokenKubeconfig: string;
  readonly dir: string;
  stop(): Promise<void>;
}

/**
 * A control plane with the chart's sync-secrets RBAC (helm template of the chart for `secretNames`,
 * kubectl apply). Periodic etcd compaction is off, as in the pod-create bench: one landing in a
 * timed phase stalls writes for up to a second.
 */
export async function startSyncCluster(
  secretNames: readonly string[],
  log: (line: string) => void,
): Promise<SyncCluster> {
  const controlPlane = await startControlPlane({ apiserverArgs: ['--etcd-compaction-interval=0'] });
  const dir = mkdtempSync(join(tmpdir(), 'acr-pull-webhook-sync-bench-'));
  let admin: Client | undefined;
  try {
    // Only the certificates: client-node also puts an agent of its own into the options.
    const applied: RequestOptions = {};
    await controlPlane.kubeConfig.applyToHTTPSOptions(applied);
    const adminTls: Pick<RequestOptions, 'ca' | 'cert' | 'key'> = {
      ca: applied.ca,
      cert: applied.cert,
      key: applied.key,
    };
    admin = httpsClient(controlPlane.server, adminTls);
    const created = await admin.send('POST', '/api/v1/namespaces', { metadata: { name: RELEASE_NAMESPACE } });
    if (created.status !== 201) throw new Error(`namespace ${RELEASE_NAMESPACE}: ${created.status} ${created.body}`);
    const kinds = new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'Lease']);
    const rbac = renderChart({
      release: RELEASE,
      namespace: RELEASE_NAMESPACE,
      values: {
        registries: secretNames.map((secretName, index) => ({
          server: `bench${index}.azurecr.io`,
          secretName,
          credentials: { token: { name: 'n', password: 'p' } },
        })),
      },
    }).filter(
      (object) => kinds.has(object.kind) && object.metadata.labels?.['app.kubernetes.io/component'] === 'sync-secrets',
    );
    execFileSync('kubectl', ['--kubeconfig', controlPlane.kubeconfigPath, 'apply', '-f', '-'], {
      input: rbac.map((object) => toYaml(object)).join('---\n'),
      encoding: 'utf8',
      timeout: 60_000,
    });
    const serviceAccount = rbac.find((object) => object.kind === 'ServiceAccount')?.metadata.name;
    if (serviceAccount === undefined) throw new Error('the chart rendered no sync-secrets ServiceAccount');
    const core = controlPlane.kubeConfig.makeApiClient(CoreV1Api);
    const answer = await core.createNamespacedServiceAccountToken({
      namespace: RELEASE_NAMESPACE,
      name: serviceAccount,
      body: { spec: { audiences: [], expirationSeconds: 4 * 3600 } },
    });
    const token = answer.status?.token ?? '';
    if (token === '') throw new Error('the TokenRequest answered without a token');
    log(`control plane at ${controlPlane.server}, ${rbac.length} RBAC objects of the chart applied`);
    const adminClient = admin;
    return {
      controlPlane,
      admin: adminClient,
      adminTls,
      token,
      tokenKubeconfig: tokenKubeconfig(dir, controlPlane.server, controlPlane.caPem, token),
      dir,
      async stop() {
        adminClient.close();
        await controlPlane.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    admin?.close();
    await controlPlane.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Creates namespaces 32 at a time as admin; returns the milliseconds it took. */
export async function createNamespaces(
  admin: Client,
  names: readonly string[],
  labels: Record<string, string> | undefined,
): Promise<number> {
  const started = performance.now();
  await eachLimit(names, 32, async (name) => {
    const answer = await admin.send('POST', '/api/v1/namespaces', {
      metadata: labels === undefined ? { name } : { name, labels },
    });
    if (answer.status !== 201 && answer.status !== 409)
      throw new Error(`namespace ${name}: ${answer.status} ${answer.body.slice(0, 300)}`);
  });
  return performance.now() - started;
}

/** Deletes the Secrets matching a label selector from each namespace (a deletecollection each), 32 at a time. */
export async function deleteSecrets(
  admin: Client,
  namespaces: readonly string[],
  labelSelector: string,
): Promise<number> {
  const started = performance.now();
  await eachLimit(namespaces, 32, async (namespace) => {
    const answer = await admin.send(
      'DELETE',
      `/api/v1/namespaces/${namespace}/secrets?labelSelector=${encodeURIComponent(labelSelector)}`,
    );
    if (answer.status !== 200) throw new Error(`deleting secrets in ${namespace}: ${answer.status}`);
  });
  return performance.now() - started;
}

/** How many Secrets named `name` exist in namespaces whose names start with `prefix`. */
export async function countSecrets(admin: Client, name: string, prefix: string): Promise<number> {
  const answer = await admin.send(
    'GET',
    `/api/v1/secrets?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`,
  );
  if (answer.status !== 200) throw new Error(`listing secrets ${name}: ${answer.status}`);
  const list = JSON.parse(answer.body) as { items: { metadata: { namespace: string } }[] };
  return list.items.filter((item) => item.metadata.namespace.startsWith(prefix)).length;
}

/** The current resourceVersion of the Secrets collection, to watch from. */
export async function secretsResourceVersion(admin: Client): Promise<string> {
  const answer = await admin.send('GET', '/api/v1/secrets?limit=1');
  return (JSON.parse(answer.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
}

export function writeFile600(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
}
