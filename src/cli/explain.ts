// `acr-pull-webhook explain`: offline, on a Pod or a workload manifest, says per image which entry
// matched or why none did, and which secrets the webhook would add.
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../config/config.ts';
import { explainPod, type PodExplanation } from '../mutation/explain.ts';
import { parseFlags, UsageError } from '../process/flags.ts';

export const EXPLAIN_USAGE = `Usage: acr-pull-webhook explain --config FILE [MANIFEST|-] [-o text|json]

Reads Pods or workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) from
MANIFEST (YAML or JSON, several documents allowed; '-' or nothing reads standard input) and
prints, per image, which registry entry matched or why none did, and the imagePullSecrets the
webhook would add. Works offline; namespace opt-in is not checked.
`;

interface PodTemplate {
  readonly metadata?: unknown;
  readonly spec?: unknown;
}

/** Where a kind keeps its pod: the Pod itself, a pod template, or a CronJob's job template. */
export function podTemplateOf(manifest: unknown): PodTemplate | undefined {
  if (typeof manifest !== 'object' || manifest === null) return undefined;
  const object = manifest as { kind?: unknown; metadata?: unknown; spec?: Record<string, unknown> };
  switch (object.kind) {
    case 'Pod':
      return { metadata: object.metadata, spec: object.spec };
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
      return object.spec?.['template'] as PodTemplate | undefined;
    case 'CronJob': {
      const jobTemplate = object.spec?.['jobTemplate'] as { spec?: { template?: PodTemplate } } | undefined;
      return jobTemplate?.spec?.template;
    }
    default:
      return undefined;
  }
}

function objectName(manifest: unknown): string {
  const object = manifest as {
    kind?: unknown;
    metadata?: { name?: unknown; namespace?: unknown; generateName?: unknown };
  };
  const name = object.metadata?.name ?? object.metadata?.generateName ?? '(unnamed)';
  const namespace = object.metadata?.namespace;
  return `${String(object.kind)} ${typeof namespace === 'string' ? `${namespace}/` : ''}${String(name)}`;
}

export function formatExplanation(title: string, explanation: PodExplanation): string {
  const lines = [title];
  if (explanation.optedOut) lines.push('  pod is labelled acr-pull-webhook/inject=disabled: left unchanged');
  for (const image of explanation.images) {
    lines.push(`  ${image.list}/${image.container || '(unnamed)'}: ${image.image}`);
    if ('error' in image.resolved) {
      lines.push(`    not a valid image reference (${image.resolved.error}): no entry can match`);
      continue;
    }
    lines.push(`    pulled from ${image.resolved.domain}, repository ${image.resolved.path}`);
    for (const match of image.matches) lines.push(`    matches ${match.server} -> ${match.secretName}`);
    if (image.matches.length === 0) {
      if (image.misses.length === 0) lines.push('    no entry is configured');
      for (const miss of image.misses) lines.push(`    not ${miss.server}: ${miss.reason}`);
    }
  }
  if (explanation.alreadyListed.length > 0) lines.push(`  already listed: ${explanation.alreadyListed.join(', ')}`);
  lines.push(
    explanation.secretsToAdd.length > 0
      ? `  would add imagePullSecrets: ${explanation.secretsToAdd.join(', ')}`
      : '  would add nothing',
  );
  return lines.join('\n');
}

export function runExplain(argv: readonly string[], stdin: () => string, out: (text: string) => void): number {
  const parsed = parseFlags({
    args: [...argv],
    allowPositionals: true,
    options: { config: { type: 'string' }, output: { type: 'string', short: 'o', default: 'text' } },
  });
  const { values, positionals } = parsed;
  if (values.config === undefined) throw new UsageError('--config is required');
  if (values.output !== 'text' && values.output !== 'json') throw new UsageError('-o must be text or json');
  if (positionals.length > 1) throw new UsageError('at most one MANIFEST');
  const config = loadConfig(values.config);
  const source = positionals[0] ?? '-';
  let text: string;
  try {
    text = source === '-' ? stdin() : readFileSync(source, 'utf8');
  } catch (error) {
    throw new UsageError(`${source}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const results: { object: string; explanation: PodExplanation }[] = [];
  for (const document of parseAllDocuments(text)) {
    if ('errors' in document && document.errors.length > 0) {
      throw new UsageError(`${source}: not valid YAML or JSON: ${document.errors[0]?.message.split('\n')[0]}`);
    }
    const manifest: unknown = document.toJS();
    if (manifest === null || manifest === undefined) continue;
    const template = podTemplateOf(manifest);
    if (template === undefined) throw new UsageError(`${source}: ${objectName(manifest)} has no pod template`);
    results.push({ object: objectName(manifest), explanation: explainPod(template, config.rules) });
  }
  if (values.output === 'json') out(JSON.stringify(results, null, 2));
  else out(results.map((result) => formatExplanation(result.object, result.explanation)).join('\n\n'));
  return 0;
}
