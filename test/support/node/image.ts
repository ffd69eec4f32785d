// The project's own image on the one-node cluster: built by tools/image/build.sh (buildah on local stand-in
// bases, cached; docs/image.md) and pushed with crane to one of the cluster's private registries.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeCluster, Registry } from './cluster.ts';

const REPO = join(import.meta.dirname, '../../..');
/** The OCI archive tools/image/build.sh writes (a tar of an OCI image layout). */
export const IMAGE_ARCHIVE = join(REPO, '.tools/image/acr-pull-webhook.oci.tar');
const CRANE = join(REPO, '.tools/bin/crane');

function run(cmd: string, args: string[], timeout: number): Promise<string> {
  return new Promise((ok, fail) =>
    execFile(cmd, args, { timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      err ? fail(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : ok(stdout),
    ),
  );
}

/** Builds the image unless its inputs are unchanged (about a second then; 2-6 min cold). */
export async function buildImage(): Promise<string> {
  await run('bash', [join(REPO, 'tools/image/build.sh')], 900_000);
  return IMAGE_ARCHIVE;
}

/** crane inside the cluster's namespaces (the registries' names resolve only there), logged in to `registry`. */
export async function craneFor(
  cluster: NodeCluster,
  registry: Registry,
): Promise<{ crane: (...args: string[]) => Promise<string>; remove: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'crane-'));
  const dockerConfig = join(dir, 'docker-config');
  mkdirSync(dockerConfig);
  const crane = (...args: string[]): Promise<string> =>
    cluster.runInside([CRANE, ...args], { SSL_CERT_FILE: cluster.caPath, DOCKER_CONFIG: dockerConfig });
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    await crane('auth', 'login', registry.host, '-u', registry.username, '-p', registry.password);
  } catch (error) {
    remove();
    throw error;
  }
  return { crane, remove };
}

/** Pushes an OCI archive as `<registry>/<repository>` and returns that reference. */
export async function pushImage(
  cluster: NodeCluster,
  registry: Registry,
  repository = 'acr-pull-webhook:dev',
  archive = IMAGE_ARCHIVE,
): Promise<string> {
  const ref = `${registry.host}/${repository}`;
  const { crane, remove } = await craneFor(cluster, registry);
  const layout = mkdtempSync(join(tmpdir(), 'oci-layout-'));
  try {
    // crane reads an OCI layout directory, not its tar.
    await run('tar', ['-C', layout, '-xf', archive], 60_000);
    await crane('push', layout, ref);
  } finally {
    remove();
    rmSync(layout, { recursive: true, force: true });
  }
  return ref;
}
