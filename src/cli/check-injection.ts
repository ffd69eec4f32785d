// `acr-pull-webhook check-injection`: on a running cluster, a server-side dry-run Pod with one image per
// registries[] entry shows whether the webhook injects each pull secret, and a read of each Secret whether
// it is there. The chart's `helm test` runs it. The pure part builds the Pod and judges the answer; the
// shell below lists namespaces, sends the Pod with dryRun=All (admitted, never stored, never pulled) and
// reads the Secrets.
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import { type Config, loadConfig, type RegistryEntry } from '../config/config.ts';
import { CHECK_INJECTION, DOCKERCONFIGJSON_TYPE, ENV } from '../constants.ts';
import { makeClients } from '../k8s/client.ts';
import { toKubeApiError } from '../k8s/errors.ts';
import { loadKubeConfig } from '../k8s/kube-config.ts';
import { listNamespaces, type NamespaceInfo } from '../k8s/namespace-watch.ts';
import { matchingSecrets } from '../mutation/decide.ts';
import { parseFlags, UsageError } from '../process/flags.ts';
import { compileServerPattern } from '../registry/server-pattern.ts';

export const CHECK_INJECTION_USAGE = `\
Usage: acr-pull-webhook check-injection --config FILE [--namespace NS] [options]

Checks a running install: creates a server-side dry-run Pod (dryRun=All: admitted by the webhook, never
stored, never pulled) with one image per registries[] entry in an opted-in namespace, then checks that the
returned Pod lists every entry's secretName in imagePullSecrets and that each of those Secrets exists in
that namespace. Prints one line per entry and a verdict. 'helm test' runs it.
Exit codes: 0 all good, 1 a problem (the line says what to fix), 2 usage error.

Options:
  --config FILE             registries and opt-in label (YAML or JSON)        ${ENV.config}
  --namespace NS            check NS (default: the first namespace, by name, with the opt-in label)
  --exclude-namespace NS    never pick NS by default; repeatable (the namespaces the webhook skips)
  --kubeconfig FILE         cluster credentials (default: $KUBECONFIG, in-cluster, ~/.kube/config)
`;

// ---------------------------------------------------------------------------------------------
// The pure part

/** One registries[] entry as the check probes it. */
export interface Probe {
  readonly index: number;
  readonly server: string;
  readonly secretName: string;
  /** An image the entry matches, or undefined when no image can (a single-label host without a port). */
  readonly image: string | undefined;
  /** The entry has credentials, so sync-secrets writes its Secret; otherwise the user creates it. */
  readonly synced: boolean;
}

/** Host labels with each '*' made concrete: "check" first, then "localhost" (the only dot-less registry host). */
function hostCandidates(labels: readonly string[]): string[] {
  return ['check', 'localhost'].map((word) => labels.map((label) => label.replaceAll('*', word)).join('.'));
}

/**
 * An image that `entry.server` matches as the webhook (and the kubelet) match: '*' replaced by a concrete
 * label, the port and the path prefix kept. Each candidate is checked with the webhook's own matcher.
 */
export function probeImage(server: string): string | undefined {
  const pattern = compileServerPattern(server);
  if (pattern === undefined) return undefined;
  const port = pattern.port === '' ? '' : `:${pattern.port}`;
  const prefix = pattern.pathPrefix.replace(/^\//, '');
  const paths =
    prefix === ''
      ? [CHECK_INJECTION.repository]
      : [`${prefix.replace(/\/$/, '')}/${CHECK_INJECTION.repository}`, `${prefix}${CHECK_INJECTION.repository}`];
  const rules = [{ pattern, secretName: 'probe' }];
  for (const host of hostCandidates(pattern.hostLabels))
    for (const path of paths) {
      const image = `${host}${port}/${path}:${CHECK_INJECTION.tag}`;
      if (matchingSecrets([image], rules).length === 1) return image;
    }
  return undefined;
}

export function probesOf(registries: readonly RegistryEntry[]): Probe[] {
  return registries.map((entry, index) => ({
    index,
    server: entry.server,
    secretName: entry.secretName,
    image: probeImage(entry.server),
    synced: entry.credentials !== undefined,
  }));
}

/**
 * The dry-run Pod: one container per probe that has an image, and the Pod Security "restricted" settings, so a
 * namespace that enforces them admits it.
 */
export function probePod(probes: readonly Probe[]): V1Pod {
  const containers = probes.flatMap((probe) =>
    probe.image === undefined
      ? []
      : [
          {
            name: `registry-${probe.index}`,
            image: probe.image,
            securityContext: {
              allowPrivilegeEscalation: false,
              capabilities: { drop: ['ALL'] },
              readOnlyRootFilesystem: true,
            },
          },
        ],
  );
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: CHECK_INJECTION.podGenerateName },
    spec: {
      automountServiceAccountToken: false,
      restartPolicy: 'Never',
      securityContext: { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers,
    },
  };
}

export type NamespaceChoice =
  | { readonly ok: true; readonly namespace: string; readonly why: string }
  | { readonly ok: false; readonly problem: string };

const labelCommand = (namespace: string, optIn: Config['optIn']): string =>
  `kubectl label namespace ${namespace} ${optIn.label}=${optIn.value}`;

/** The namespace to check: the one asked for, if it is opted in; else the first opted-in one by name. */
export function chooseNamespace(
  namespaces: readonly NamespaceInfo[],
  optIn: Config['optIn'],
  options: { readonly namespace?: string | undefined; readonly exclude?: readonly string[] },
): NamespaceChoice {
  const optedIn = (namespace: NamespaceInfo): boolean => namespace.labels[optIn.label] === optIn.value;
  const exclude = options.exclude ?? [];
  if (options.namespace !== undefined) {
    const name = options.namespace;
    const found = namespaces.find((namespace) => namespace.name === name);
    if (found === undefined) return { ok: false, problem: `namespace ${name} does not exist` };
    if (found.terminating) return { ok: false, problem: `namespace ${name} is being deleted` };
    if (!optedIn(found))
      return { ok: false, problem: `namespace ${name} is not opted in: ${labelCommand(name, optIn)}` };
    if (exclude.includes(name))
      return { ok: false, problem: `namespace ${name} is one the webhook never serves: check another one` };
    return { ok: true, namespace: name, why: 'as asked' };
  }
  const candidates = namespaces
    .filter((namespace) => optedIn(namespace) && !namespace.terminating && !exclude.includes(namespace.name))
    .map((namespace) => namespace.name)
    .sort();
  const first = candidates[0];
  if (first === undefined)
    return { ok: false, problem: `no namespace is opted in: label one with ${labelCommand('NS', optIn)}` };
  return { ok: true, namespace: first, why: `the first labelled ${optIn.label}=${optIn.value}` };
}

/** What a read of one Secret found: there, missing, or there with a type the kubelet does not read. */
export type SecretState = 'present' | 'missing' | { readonly type: string };

export interface InjectionAnswer {
  readonly namespace: string;
  readonly probes: readonly Probe[];
  /** imagePullSecrets names of the Pod the apiserver returned. */
  readonly injected: readonly string[];
  readonly secrets: Readonly<Record<string, SecretState>>;
}

export interface Verdict {
  readonly ok: boolean;
  readonly lines: readonly string[];
}

const WEBHOOK_NOT_CALLED =
  'check that the MutatingWebhookConfiguration has a caBundle and that the webhook Service has ready endpoints';

/** One line per entry and a final verdict line, each saying what to fix. */
export function judgeInjection(answer: InjectionAnswer): Verdict {
  const { namespace, probes, injected, secrets } = answer;
  const injectedAny = probes.some((probe) => injected.includes(probe.secretName));
  const lines: string[] = [];
  let problems = 0;
  for (const probe of probes) {
    const head = `registries[${probe.index}] ${probe.server} -> ${probe.secretName}`;
    const found: string[] = [];
    const wrong: string[] = [];
    if (probe.image === undefined) wrong.push('no image can match this server (a one-label host needs a port)');
    else if (injected.includes(probe.secretName)) found.push(`injected for ${probe.image}`);
    else if (injectedAny) wrong.push(`not injected for ${probe.image}: the webhook runs another configuration`);
    else wrong.push(`not injected for ${probe.image}`);
    const secret = secrets[probe.secretName] ?? 'missing';
    if (secret === 'present') found.push(`Secret ${probe.secretName} is there`);
    else if (secret === 'missing')
      wrong.push(
        probe.synced
          ? `Secret ${probe.secretName} is missing from ${namespace}: sync-secrets writes it, see its logs`
          : `Secret ${probe.secretName} is missing from ${namespace}: create it ` +
              `(kubectl -n ${namespace} create secret docker-registry ${probe.secretName} --docker-server=...)`,
      );
    else wrong.push(`Secret ${probe.secretName} has type ${secret.type}, not ${DOCKERCONFIGJSON_TYPE}`);
    if (wrong.length > 0) problems++;
    lines.push(`${wrong.length === 0 ? 'ok  ' : 'FAIL'} ${head}: ${[...wrong, ...found].join('; ')}`);
  }
  if (problems === 0) {
    lines.push(`PASS ${namespace}: every registry's pull secret is injected and present`);
    return { ok: true, lines };
  }
  const hint = injectedAny ? '' : `; the webhook injected nothing: ${WEBHOOK_NOT_CALLED}`;
  lines.push(`FAIL ${namespace}: ${problems} of ${probes.length} registries have a problem${hint}`);
  return { ok: false, lines };
}

/** The one line for a dry-run create the apiserver refused. */
export function describeCreateFailure(namespace: string, message: string): string {
  const hint = /failed calling webhook/.test(message)
    ? `: the apiserver could not call the webhook: ${WEBHOOK_NOT_CALLED}`
    : '';
  return `FAIL ${namespace}: the dry-run Pod was refused${hint} (${message})`;
}

// ---------------------------------------------------------------------------------------------
// The shell

export function parseCheckInjectionArgs(argv: readonly string[], env: NodeJS.ProcessEnv) {
  const { values } = parseFlags({
    args: [...argv],
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'exclude-namespace': { type: 'string', multiple: true },
      kubeconfig: { type: 'string' },
    },
  });
  const config = values.config ?? (env[ENV.config] || undefined);
  if (config === undefined) throw new UsageError(`--config (or ${ENV.config}) is required`);
  if (values.namespace === '') throw new UsageError('--namespace: must not be empty');
  return {
    config,
    namespace: values.namespace,
    exclude: values['exclude-namespace'] ?? [],
    kubeconfig: values.kubeconfig,
  };
}

async function readSecret(core: CoreV1Api, namespace: string, name: string): Promise<SecretState> {
  try {
    const secret = await core.readNamespacedSecret({ namespace, name });
    return secret.type === DOCKERCONFIGJSON_TYPE ? 'present' : { type: secret.type ?? '(none)' };
  } catch (error) {
    const failure = toKubeApiError(error, `get secret ${namespace}/${name}`);
    if (failure.status === 404) return 'missing';
    throw failure;
  }
}

export async function runCheckInjection(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
): Promise<number> {
  const options = parseCheckInjectionArgs(argv, env);
  const config = loadConfig(options.config);
  const { kubeConfig } = loadKubeConfig({ flag: options.kubeconfig, env });
  const clients = makeClients(kubeConfig, { userAgent: `acr-pull-webhook-check-injection/${process.version}` });
  try {
    const { namespaces } = await listNamespaces(clients.raw);
    const choice = chooseNamespace(namespaces, config.optIn, options);
    if (!choice.ok) {
      out(`FAIL ${choice.problem}`);
      return 1;
    }
    const { namespace } = choice;
    out(`namespace ${namespace} (${choice.why})`);
    const probes = probesOf(config.registries);
    let returned: V1Pod;
    try {
      returned = await clients.core.createNamespacedPod({ namespace, body: probePod(probes), dryRun: 'All' });
    } catch (error) {
      const failure = toKubeApiError(error, `create a dry-run pod in ${namespace}`);
      out(describeCreateFailure(namespace, failure.apiMessage ?? failure.message));
      return 1;
    }
    const injected = (returned.spec?.imagePullSecrets ?? []).map((reference) => reference.name ?? '');
    const secrets: Record<string, SecretState> = {};
    for (const name of new Set(probes.map((probe) => probe.secretName)))
      secrets[name] = await readSecret(clients.core, namespace, name);
    const verdict = judgeInjection({ namespace, probes, injected, secrets });
    for (const line of verdict.lines) out(line);
    return verdict.ok ? 0 : 1;
  } finally {
    await clients.close();
  }
}
