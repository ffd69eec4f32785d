// The image as the chart runs it: built from the unchanged Dockerfile by tools/image/build.sh (buildah, on
// the local stand-in bases; cached), pushed to the node's private registry, and run by the kubelet with the
// chart's own command and security contexts: uid 65532, read-only root filesystem, no shell.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type V1Container, type V1Pod, type V1PodSecurityContext } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNodeCluster, type NodeCluster } from '../support/node/cluster.ts';
import { findObject, renderChart } from '../support/helm.ts';

const REPO = join(import.meta.dirname, '../..');
const ARCHIVE = join(REPO, '.tools/image/acr-pull-webhook.oci.tar');
const CRANE = join(REPO, '.tools/bin/crane');
/** Bound on a pod pulling the image (about 60 MiB, from a local registry) and exiting. */
const POD_MS = 120_000;

let cluster: NodeCluster;
let core: CoreV1Api;
let crane: (...args: string[]) => Promise<string>;
let image = '';
const scratch = mkdtempSync(join(tmpdir(), 'image-node-'));
const namespace = `image-${randomBytes(3).toString('hex')}`;

function run(cmd: string, args: string[], timeout: number): Promise<string> {
  return new Promise((ok, fail) =>
    execFile(cmd, args, { timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? fail(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : ok(stdout),
    ),
  );
}

/** The webhook Deployment's container and pod security context, as the chart renders them. */
function chartWebhook(): { container: V1Container; podSecurity: V1PodSecurityContext } {
  const deployment = findObject<{
    spec: { template: { spec: { containers: V1Container[]; securityContext: V1PodSecurityContext } } };
  }>(renderChart(), 'Deployment', (object) => object.metadata.name.endsWith('-webhook'));
  const spec = deployment.spec.template.spec;
  return { container: spec.containers[0] as V1Container, podSecurity: spec.securityContext };
}

/** The container's output as the kubelet wrote it (CRI log lines: time, stream, tag, text). */
function podLog(name: string): string {
  const root = join(cluster.dir, 'pod-logs');
  const dirs = existsSync(root) ? readdirSync(root).filter((dir) => dir.startsWith(`${namespace}_${name}_`)) : [];
  return dirs
    .map((dir) => join(root, dir, 'main', '0.log'))
    .filter((file) => existsSync(file))
    .flatMap((file) => readFileSync(file, 'utf8').split('\n'))
    .map((line) => line.split(' ').slice(3).join(' '))
    .join('\n');
}

/** Runs one pod of the image to completion; returns its phase, the container's termination and log. */
async function runPod(name: string, container: Partial<V1Container>) {
  const { container: chart, podSecurity } = chartWebhook();
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name },
      spec: {
        restartPolicy: 'Never',
        imagePullSecrets: [{ name: 'registry' }],
        securityContext: podSecurity,
        containers: [{ name: 'main', image, securityContext: chart.securityContext, ...container }],
      },
    },
  });
  const deadline = Date.now() + POD_MS;
  for (;;) {
    const pod: V1Pod = await core.readNamespacedPod({ name, namespace });
    const status = pod.status?.containerStatuses?.[0];
    const waiting = status?.state?.waiting?.reason ?? '';
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed' || /Error|BackOff/.test(waiting)) {
      return { phase: pod.status?.phase, waiting, terminated: status?.state?.terminated, log: podLog(name) };
    }
    if (Date.now() > deadline) throw new Error(`pod ${name} did not finish: ${JSON.stringify(pod.status)}`);
    await new Promise((done) => setTimeout(done, 500));
  }
}

beforeAll(async () => {
  // Cached: about a second when no input of the image changed (5-6 min cold, docs/image.md).
  await run('bash', [join(REPO, 'tools/image/build.sh')], 900_000);
  cluster = await startNodeCluster({ log: (line) => process.stderr.write(`[image e2e] ${line}\n`) });
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  const registry = cluster.registries[0];
  image = `${registry.host}/acr-pull-webhook:dev`;
  const dockerConfig = join(scratch, 'docker-config');
  mkdirSync(dockerConfig);
  // The registries' names resolve only inside the cluster's namespaces.
  crane = (...args) =>
    cluster.runInside([CRANE, ...args], { SSL_CERT_FILE: cluster.caPath, DOCKER_CONFIG: dockerConfig });
  await crane('auth', 'login', registry.host, '-u', registry.username, '-p', registry.password);
  const layout = join(scratch, 'layout');
  mkdirSync(layout);
  await run('tar', ['-C', layout, '-xf', ARCHIVE], 60_000);
  await crane('push', layout, image);

  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const auth = Buffer.from(`${registry.username}:${registry.password}`).toString('base64');
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: 'registry' },
      type: 'kubernetes.io/dockerconfigjson',
      stringData: { '.dockerconfigjson': JSON.stringify({ auths: { [registry.host]: { auth } } }) },
    },
  });
}, 900_000);

afterAll(async () => {
  await core?.deleteNamespace({ name: namespace }).catch(() => {});
  await cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the image built from the Dockerfile, in the node registry', () => {
  test('runs as 65532:65532 with the NODE_OPTIONS cap and the exec-form entrypoint', async () => {
    const config = JSON.parse(await crane('config', image)) as {
      architecture: string;
      os: string;
      config: { User: string; Env: string[]; Entrypoint: string[]; Cmd: string[]; Labels: Record<string, string> };
    };
    expect([config.os, config.architecture]).toEqual(['linux', 'amd64']);
    expect(config.config.User).toBe('65532:65532');
    expect(config.config.Env).toContain('NODE_OPTIONS=--max-semi-space-size=8');
    expect(config.config.Env).toContain('NODE_ENV=production');
    expect(config.config.Entrypoint).toEqual(['/nodejs/bin/node', '/app/dist/src/cli/main.js']);
    expect(config.config.Cmd).toEqual(['--help']);
    expect(config.config.Labels['org.opencontainers.image.version']).toBe('0.1.0');
  });

  test("runs the chart's command as uid 65532 on a read-only root filesystem: explain --help exits 0", async () => {
    const { container, podSecurity } = chartWebhook();
    expect(container.command).toEqual(['/nodejs/bin/node', '/app/dist/src/cli/main.js']);
    expect(podSecurity.runAsNonRoot).toBe(true);
    expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
    const result = await runPod('explain-help', {
      command: container.command,
      args: ['explain', '--help'],
      securityContext: { ...container.securityContext, runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true },
    });
    expect(result.phase, JSON.stringify(result)).toBe('Succeeded');
    expect(result.log).toContain('Usage: acr-pull-webhook explain');
  });

  test('runs certs-gen from the same image', async () => {
    const result = await runPod('certs-gen-help', {
      command: ['/nodejs/bin/node', '/app/dist/certs-gen/cli.js'],
      args: ['--help'],
    });
    expect(result.phase, JSON.stringify(result)).toBe('Succeeded');
    expect(result.log).toMatch(/^ {2}create\s/m);
  });

  test('has no shell: a container started with /bin/sh never runs', async () => {
    const result = await runPod('no-shell', { command: ['/bin/sh', '-c', 'echo shell'] });
    expect(result.log).not.toContain('shell');
    expect(result.phase === 'Failed' || /Error/.test(result.waiting), JSON.stringify(result)).toBe(true);
  });
});
