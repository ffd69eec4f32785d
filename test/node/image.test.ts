// The image as the chart runs it: built from the unchanged Dockerfile by tools/image/build.sh (buildah, on
// the local stand-in bases; cached), pushed to the node's private registry, and run by the kubelet with the
// chart's own command and security contexts: uid 65532, read-only root filesystem, no shell.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  type V1Container,
  type V1Pod,
  type V1PodSecurityContext,
  type V1SecurityContext,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNodeCluster, type NodeCluster } from '../support/node/cluster.ts';
import { buildImage, craneFor, pushImage } from '../support/node/image.ts';
import { findObject, renderChart } from '../support/helm.ts';

/** Bound on a pod pulling the image (about 60 MiB, from a local registry) and exiting. */
const POD_MS = 120_000;

let cluster: NodeCluster;
let core: CoreV1Api;
let crane: (...args: string[]) => Promise<string>;
let removeCrane = (): void => {};
let image = '';
const namespace = `image-${randomBytes(3).toString('hex')}`;

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
async function runPod(name: string, command: string[], args: string[], securityContext?: V1SecurityContext) {
  const { container: chart, podSecurity } = chartWebhook();
  await core.createNamespacedPod({
    namespace,
    body: {
      metadata: { name },
      spec: {
        restartPolicy: 'Never',
        imagePullSecrets: [{ name: 'registry' }],
        securityContext: podSecurity,
        containers: [
          { name: 'main', image, command, args, securityContext: securityContext ?? chart.securityContext ?? {} },
        ],
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
  await buildImage();
  cluster = await startNodeCluster({ log: (line) => process.stderr.write(`[image e2e] ${line}\n`) });
  core = cluster.kubeConfig.makeApiClient(CoreV1Api);
  const registry = cluster.registries[0];
  image = await pushImage(cluster, registry);
  ({ crane, remove: removeCrane } = await craneFor(cluster, registry));

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
  removeCrane();
  await cluster?.stop();
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
    const result = await runPod('explain-help', container.command ?? [], ['explain', '--help'], {
      ...container.securityContext,
      runAsUser: 65532,
      runAsGroup: 65532,
      runAsNonRoot: true,
    });
    expect(result.phase, JSON.stringify(result)).toBe('Succeeded');
    expect(result.log).toContain('Usage: acr-pull-webhook explain');
  });

  test('runs certs-gen from the same image', async () => {
    const result = await runPod('certs-gen-help', ['/nodejs/bin/node', '/app/dist/certs-gen/cli.js'], ['--help']);
    expect(result.phase, JSON.stringify(result)).toBe('Succeeded');
    expect(result.log).toMatch(/^ {2}create\s/m);
  });

  test('has no shell: a container started with /bin/sh never runs', async () => {
    const result = await runPod('no-shell', ['/bin/sh', '-c', 'echo shell'], []);
    expect(result.log).not.toContain('shell');
    expect(result.phase === 'Failed' || /Error/.test(result.waiting), JSON.stringify(result)).toBe(true);
  });
});
