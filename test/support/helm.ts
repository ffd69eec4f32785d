// Runs the helm binary built by tools/build.sh against the chart in charts/acr-pull-webhook, with a
// throw-away HELM_*_HOME so tests never read or write a developer's helm configuration, and parses
// what it renders. There is no "skip if helm is missing": toolPath() throws, naming tools/build.sh.
// Each run gets its own directory (home, values file), removed when helm exits: nothing outlives a call,
// and this module needs no test hooks (the benchmarks import it too).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { toolPath } from './control-plane.ts';

export const CHART_DIR = resolve(import.meta.dirname, '../../charts/acr-pull-webhook');

/** A Kubernetes object as rendered: only the fields every object has are typed. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Record<string, string>;
    readonly annotations?: Record<string, string>;
  };
  readonly [field: string]: unknown;
}

export interface HelmResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface HelmOptions {
  readonly kubeconfig?: string;
  /** Values as an object, written to a file of the run's own and passed last as `-f` (after `args`). */
  readonly values?: Record<string, unknown>;
}

/** One helm run's directory, its environment and arguments; remove() deletes the directory. */
function prepareRun(args: readonly string[], options: HelmOptions) {
  const dir = mkdtempSync(join(tmpdir(), 'helm-run-'));
  const home = join(dir, 'home');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '',
    // helm and the Go runtime write their temporary files here; the run's dir is removed after helm exits.
    TMPDIR: dir,
    HOME: home,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    ...(options.kubeconfig === undefined ? {} : { KUBECONFIG: options.kubeconfig }),
  };
  const allArgs = [...args];
  if (options.values !== undefined) allArgs.push('-f', writeValues(dir, options.values));
  return { env, args: allArgs, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs helm to completion, synchronously (lint, template: no cluster). */
export function helm(args: readonly string[], options: HelmOptions = {}): HelmResult {
  const run = prepareRun(args, options);
  try {
    const result = spawnSync(toolPath('helm'), run.args, { encoding: 'utf8', env: run.env, timeout: 120_000 });
    if (result.error) throw result.error;
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  } finally {
    run.remove();
  }
}

/** Runs helm without blocking the event loop (install, upgrade, uninstall against a cluster). */
export async function helmAsync(args: readonly string[], options: HelmOptions = {}): Promise<HelmResult> {
  const run = prepareRun(args, options);
  try {
    return await new Promise((done, fail) => {
      const child = spawn(toolPath('helm'), run.args, { env: run.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.once('error', fail);
      child.once('close', (status) => done({ status, stdout, stderr }));
    });
  } finally {
    run.remove();
  }
}

/** Like helmAsync, but a non-zero exit is an error carrying helm's output. */
export async function helmOk(args: readonly string[], options: HelmOptions = {}): Promise<string> {
  const result = await helmAsync(args, options);
  if (result.status !== 0)
    throw new Error(`helm ${args.join(' ')} exited ${result.status}:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** Parses a multi-document YAML stream (helm's output) into objects, dropping empty documents. */
export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((document) => {
      if (document.errors.length > 0)
        throw new Error(`rendered YAML does not parse: ${document.errors[0]?.message ?? ''}`);
      return document.toJS() as Manifest | null;
    })
    .filter((object): object is Manifest => object !== null);
}

/** Writes values into `dir`, for `-f`. As JSON (which is YAML): helm reads values as YAML 1.1, where an
 *  unquoted `n` or `on` that YAML 1.2 writers leave bare would turn into a boolean. */
function writeValues(dir: string, values: Record<string, unknown>): string {
  const file = join(dir, 'values.json');
  writeFileSync(file, JSON.stringify(values, null, 2));
  return file;
}

export interface RenderOptions {
  readonly release?: string;
  readonly namespace?: string;
  /** Values files, applied in order (as `-f`). */
  readonly files?: readonly string[];
  /** Values as an object (written to a file, applied after `files`). */
  readonly values?: Record<string, unknown>;
}

function renderArgs(options: RenderOptions): string[] {
  const args = ['template', options.release ?? 'acr', CHART_DIR, '--namespace', options.namespace ?? 'acr-system'];
  for (const file of options.files ?? []) args.push('-f', file);
  return args;
}

/** `helm template` of the chart (hooks included); throws with helm's message if it fails. */
export function renderChart(options: RenderOptions = {}): Manifest[] {
  const result = helm(renderArgs(options), options.values === undefined ? {} : { values: options.values });
  if (result.status !== 0) throw new Error(`helm template failed: ${result.stderr.trim()}`);
  return parseManifests(result.stdout);
}

/** `helm template` expected to fail: returns helm's error output. */
export function renderChartError(options: RenderOptions): string {
  const result = helm(renderArgs(options), options.values === undefined ? {} : { values: options.values });
  if (result.status === 0) throw new Error('helm template succeeded, but was expected to fail');
  return result.stderr;
}

export function findObject<T = Manifest>(
  objects: readonly Manifest[],
  kind: string,
  predicate: (object: Manifest) => boolean = () => true,
): T {
  const found = objects.filter((object) => object.kind === kind && predicate(object));
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}, found ${found.length}`);
  return found[0] as T;
}

export function isHook(object: Manifest): boolean {
  return object.metadata.annotations?.['helm.sh/hook'] !== undefined;
}
