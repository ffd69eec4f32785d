// `acr-pull-webhook doctor`: reads the install from the cluster (webhook configuration, the certificate its
// endpoints serve, pull secrets in every opted-in namespace, the sync-secrets Lease) or one pod, and says what is
// wrong and what to fix. The judgements are pure (src/doctor/); this shell only reads.
//
// The certificate checked against the caBundle: a url clientConfig is dialled as the apiserver dials it. For a
// service clientConfig the doctor reads the TLS Secret the ready endpoints' pods mount instead of dialling them:
// it usually runs outside the cluster network, where pod IPs are not routable, and the apiserver's service proxy
// would end TLS itself; `serve` reloads that Secret's files within seconds, so it is what the pods serve.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import type { V1MutatingWebhookConfiguration, V1ObjectMeta, V1Pod, V1PodTemplateSpec } from '@kubernetes/client-node';
import { type Config, loadConfig } from '../config/config.ts';
import { ENV, SYNC_DEFAULTS, SYNC_LEASE_NAME } from '../constants.ts';
import {
  expectedSecrets,
  type Finding,
  fixLine,
  isHealthy,
  judgeCertificate,
  judgeEndpoints,
  judgeLease,
  judgePod,
  judgeSecret,
  pemCertificates,
  pullWaiting,
  type ServedCertificate,
  type WebhookClient,
} from '../doctor/checks.ts';
import { formatTable } from '../doctor/format.ts';
import {
  isWorkloadKind,
  judgeWorkload,
  type LabelSelector,
  pickPod,
  selectorString,
  WORKLOAD_KINDS,
  type WorkloadKind,
} from '../doctor/workload.ts';
import { type KubeClients, makeClients } from '../k8s/client.ts';
import { toKubeApiError } from '../k8s/errors.ts';
import { loadKubeConfig } from '../k8s/kube-config.ts';
import { listNamespaces } from '../k8s/namespace-watch.ts';
import type { SecretObject } from '../k8s/secret-object.ts';
import { explainPod } from '../mutation/explain.ts';
import { parseFlags, UsageError } from '../process/flags.ts';
import { readCredentials } from '../sync/credentials.ts';
import { desiredSecrets } from '../sync/desired.ts';

/** The chart's MutatingWebhookConfiguration name for a release called acr-pull-webhook. */
const DEFAULT_WEBHOOK_CONFIGURATION = 'acr-pull-webhook';
const DIAL_TIMEOUT_MS = 5_000;

export const DOCTOR_USAGE = `\
Usage: acr-pull-webhook doctor --config FILE [options]
       acr-pull-webhook doctor pod NAMESPACE/NAME --config FILE [options]
       acr-pull-webhook doctor deployment|statefulset|daemonset|job|cronjob NAMESPACE/NAME --config FILE [options]

Checks a running install and says what to fix. Cluster-wide: the MutatingWebhookConfiguration exists, its
caBundle verifies the certificate its endpoint serves, the endpoints are ready; every opted-in namespace has
every configured pull secret, managed by sync-secrets and current (tokens: their expiry); the sync-secrets
Lease has a live holder. 'doctor pod': the namespace's opt-in, the pod's opt-out, which entry each image
matched, the secrets it needs and its image pull failure Events, ending with one "fix:" line. For a
workload: the same for its pod most likely broken (one waiting on a failed pull, else the newest), or for
its pod template when no pod exists yet.
Exit codes: 0 healthy, 1 a problem found, 2 usage error.

Options:
  --config FILE                  registries and opt-in label (YAML or JSON)      ${ENV.config}
  --webhook-configuration NAME   the MutatingWebhookConfiguration (default: ${DEFAULT_WEBHOOK_CONFIGURATION})
  --lease-namespace NS           where the sync-secrets Lease lives (default: the webhook Service's namespace)
  --kubeconfig FILE              cluster credentials (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  -o, --output text|json         a table for people (colour on a terminal) or JSON for scripts
`;

interface DoctorOptions {
  readonly config: string;
  readonly kubeconfig: string | undefined;
  readonly webhookConfiguration: string;
  readonly leaseNamespace: string | undefined;
  readonly output: 'text' | 'json';
  readonly target:
    | { readonly kind: 'pod' | WorkloadKind; readonly namespace: string; readonly name: string }
    | undefined;
}

export function parseDoctorArgs(argv: readonly string[], env: NodeJS.ProcessEnv): DoctorOptions {
  const { values, positionals } = parseFlags({
    args: [...argv],
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      kubeconfig: { type: 'string' },
      'webhook-configuration': { type: 'string', default: DEFAULT_WEBHOOK_CONFIGURATION },
      'lease-namespace': { type: 'string' },
      output: { type: 'string', short: 'o', default: 'text' },
    },
  });
  const config = values.config ?? (env[ENV.config] || undefined);
  if (config === undefined) throw new UsageError(`--config (or ${ENV.config}) is required`);
  if (values.output !== 'text' && values.output !== 'json') throw new UsageError('-o must be text or json');
  let target: DoctorOptions['target'];
  if (positionals.length > 0) {
    const [kind = '', object, ...rest] = positionals;
    if (kind !== 'pod' && !isWorkloadKind(kind))
      throw new UsageError(`unknown kind ${kind}: pod, ${WORKLOAD_KINDS.join(', ')}`);
    if (rest.length > 0) throw new UsageError(`unknown arguments: ${rest.join(' ')}`);
    const match = /^([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(object ?? '');
    if (match === null) throw new UsageError(`doctor ${kind} needs NAMESPACE/NAME`);
    target = { kind, namespace: match[1] ?? '', name: match[2] ?? '' };
  }
  return {
    config,
    kubeconfig: values.kubeconfig,
    webhookConfiguration: values['webhook-configuration'],
    leaseNamespace: values['lease-namespace'],
    output: values.output,
    target,
  };
}

// ---------------------------------------------------------------------------------------------
// Reads

async function readOrUndefined<T>(what: string, read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (error) {
    const failure = toKubeApiError(error, what);
    if (failure.status === 404) return undefined;
    throw failure;
  }
}

const readSecret = (clients: KubeClients, namespace: string, name: string): Promise<SecretObject | undefined> =>
  readOrUndefined(
    `get secret ${namespace}/${name}`,
    async () => (await clients.core.readNamespacedSecret({ namespace, name })) as SecretObject,
  );

/** The chain a TLS server at host:port presents, leaf first, as PEM. */
function dial(host: string, port: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      // SNI carries names only, never an IP address.
      ...(/^[0-9.]+$|:/.test(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
      timeout: DIAL_TIMEOUT_MS,
    });
    socket.once('secureConnect', () => {
      const chain: string[] = [];
      const seen = new Set<string>();
      let certificate = socket.getPeerCertificate(true);
      // The issuer links end in a self-signed certificate pointing at itself.
      while (certificate?.raw !== undefined && !seen.has(certificate.fingerprint256)) {
        seen.add(certificate.fingerprint256);
        chain.push(new X509Certificate(certificate.raw).toString());
        certificate = certificate.issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`no TLS answer within ${DIAL_TIMEOUT_MS / 1000}s`));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => reject(new Error(error.code ?? error.message)));
  });
}

async function servedByUrl(url: string): Promise<ServedCertificate> {
  const parsed = new URL(url);
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const source = `the certificate served at ${parsed.host}`;
  try {
    return { source, host, chain: await dial(host, Number(parsed.port || 443)) };
  } catch (error) {
    return {
      source,
      unreadable: `cannot connect to ${parsed.host}: ${(error as Error).message}`,
      // doctor dials from where it runs; the apiserver may reach a host that this machine cannot.
      fix: `check that the webhook listens at ${parsed.host}, or run doctor where the apiserver runs`,
    };
  }
}

/** The Service's ready endpoints, and the TLS Secret the first ready pod mounts. */
async function checkService(
  clients: KubeClients,
  service: { namespace: string; name: string },
): Promise<{ endpoints: Finding; served: ServedCertificate }> {
  const found = await readOrUndefined(`get service ${service.namespace}/${service.name}`, () =>
    clients.core.readNamespacedService(service),
  );
  // EndpointSlices are the endpoints API (v1 Endpoints is deprecated).
  const slices = await clients.discovery
    .listNamespacedEndpointSlice({
      namespace: service.namespace,
      labelSelector: `kubernetes.io/service-name=${service.name}`,
    })
    .catch((error: unknown) => {
      throw toKubeApiError(error, `list endpointslices of ${service.namespace}/${service.name}`);
    });
  const endpoints = slices.items.flatMap((slice) => slice.endpoints ?? []);
  // A nil ready condition means ready (discovery.k8s.io/v1 EndpointConditions).
  const ready = endpoints.filter((endpoint) => endpoint.conditions?.ready !== false);
  const host = `${service.name}.${service.namespace}.svc`;
  const pods = ready.flatMap((endpoint) => (endpoint.targetRef?.kind === 'Pod' ? [endpoint.targetRef] : []));
  let served: ServedCertificate = {
    source: `the Service ${service.namespace}/${service.name}`,
    unreadable: 'no ready endpoint names a pod, so the Secret it serves from is unknown',
    fix: `check that the EndpointSlices of ${service.namespace}/${service.name} name the webhook pods`,
  };
  const ref = pods[0];
  if (ref?.name !== undefined) {
    const namespace = ref.namespace ?? service.namespace;
    const pod = await readOrUndefined(`get pod ${namespace}/${ref.name}`, () =>
      clients.core.readNamespacedPod({ namespace, name: ref.name ?? '' }),
    );
    for (const volume of pod?.spec?.volumes ?? []) {
      const name = volume.secret?.secretName;
      if (name === undefined) continue;
      const secret = await readSecret(clients, namespace, name);
      const crt = secret?.data?.['tls.crt'];
      if (crt === undefined) continue;
      served = {
        source: `Secret ${namespace}/${name} (served by pod ${ref.name})`,
        host,
        chain: pemCertificates(Buffer.from(crt, 'base64').toString('utf8')),
      };
      break;
    }
  }
  return {
    endpoints: judgeEndpoints(service, found !== undefined, ready.length, endpoints.length - ready.length),
    served,
  };
}

async function checkWebhooks(
  clients: KubeClients,
  name: string,
  now: Date,
): Promise<{ findings: Finding[]; serviceNamespace: string | undefined }> {
  const configuration: V1MutatingWebhookConfiguration | undefined = await readOrUndefined(
    `get mutatingwebhookconfiguration ${name}`,
    () => clients.admission.readMutatingWebhookConfiguration({ name }),
  );
  const subject = `webhook configuration ${name}`;
  if (configuration === undefined)
    return {
      findings: [
        {
          status: 'fail',
          subject,
          detail: 'missing: no pod gets pull secrets',
          fix: 'install the chart, or pass --webhook-configuration with the name the release uses',
        },
      ],
      serviceNamespace: undefined,
    };
  const webhooks = configuration.webhooks ?? [];
  const findings: Finding[] = [
    { status: 'ok', subject, detail: `${webhooks.length} webhook${webhooks.length === 1 ? '' : 's'}` },
  ];
  let serviceNamespace: string | undefined;
  for (const hook of webhooks) {
    const client: WebhookClient = {
      name: hook.name,
      caBundle: hook.clientConfig.caBundle,
      url: hook.clientConfig.url,
      service: hook.clientConfig.service,
    };
    if (client.service !== undefined) {
      serviceNamespace ??= client.service.namespace;
      const { endpoints, served } = await checkService(clients, client.service);
      findings.push(endpoints, judgeCertificate(client, served, now));
    } else if (client.url !== undefined) {
      findings.push(judgeCertificate(client, await servedByUrl(client.url), now));
    }
  }
  return { findings, serviceNamespace };
}

/** The content hash sync-secrets would write per secretName, for names whose every entry has readable files. */
function currentHashes(config: Config, source: string): Map<string, string> {
  const hashes = new Map<string, string>();
  for (const name of new Set(config.registries.map((entry) => entry.secretName))) {
    const entries = config.registries.filter((entry) => entry.secretName === name);
    if (!entries.every((entry) => entry.credentials?.kind === 'files')) continue;
    try {
      for (const desired of desiredSecrets(readCredentials(entries, source)))
        hashes.set(desired.name, desired.contentHash);
    } catch {
      // Not readable here (the files are mounted in the sync-secrets pod): presence and ownership are checked.
    }
  }
  return hashes;
}

async function checkSecrets(clients: KubeClients, config: Config, source: string, now: Date): Promise<Finding[]> {
  const expected = expectedSecrets(config, currentHashes(config, source));
  const { namespaces } = await listNamespaces(clients.raw);
  const { label, value } = config.optIn;
  const optedIn = namespaces.filter((ns) => ns.labels[label] === value && !ns.terminating).map((ns) => ns.name);
  if (optedIn.length === 0)
    return [
      {
        status: 'warn',
        subject: 'namespaces',
        detail: `none is opted in (${label}=${value})`,
        fix: `kubectl label namespace NAME ${label}=${value}`,
      },
    ];
  const findings: Finding[] = [];
  for (const namespace of optedIn.sort())
    for (const secret of expected)
      findings.push(judgeSecret(namespace, secret, await readSecret(clients, namespace, secret.name), now));
  return findings;
}

async function checkLease(clients: KubeClients, namespace: string, now: Date): Promise<Finding> {
  const lease = await readOrUndefined(`get lease ${namespace}/${SYNC_LEASE_NAME}`, () =>
    clients.coordination.readNamespacedLease({ namespace, name: SYNC_LEASE_NAME }),
  );
  const where = { namespace, name: SYNC_LEASE_NAME };
  if (lease === undefined) return judgeLease({ ...where, missing: true }, now);
  const renewTime = lease.spec?.renewTime ?? lease.spec?.acquireTime;
  return judgeLease(
    {
      ...where,
      holder: lease.spec?.holderIdentity,
      renewTime: renewTime === undefined ? undefined : new Date(renewTime),
      leaseDurationSeconds: lease.spec?.leaseDurationSeconds,
    },
    now,
  );
}

async function checkPod(
  clients: KubeClients,
  config: Config,
  source: string,
  target: { namespace: string; name: string },
  now: Date,
): Promise<{ findings: Finding[]; explanation?: unknown }> {
  const { namespace, name } = target;
  const pod = await readOrUndefined(`get pod ${namespace}/${name}`, () => clients.core.readNamespacedPod(target));
  if (pod === undefined)
    return {
      findings: [
        {
          status: 'fail',
          subject: `pod ${namespace}/${name}`,
          detail: 'not found',
          fix: 'check the name: NAMESPACE/NAME',
        },
      ],
    };
  return judgeOnePod(clients, config, source, { namespace, name, pod }, now);
}

/** judgePod's findings for a pod (with its Events and status) or a workload's pod template (without). */
async function judgeOnePod(
  clients: KubeClients,
  config: Config,
  source: string,
  target: {
    namespace: string;
    name: string;
    pod: V1Pod | V1PodTemplateSpec;
    template?: { kind: string } | undefined;
    recreate?: string | undefined;
  },
  now: Date,
): Promise<{ findings: Finding[]; explanation?: unknown }> {
  const { namespace, name, pod, template } = target;
  const ns = await clients.core.readNamespace({ name: namespace }).catch((error: unknown) => {
    throw toKubeApiError(error, `get namespace ${namespace}`);
  });
  // A template has no Events and no status: only a pod has been pulled for.
  const events =
    template !== undefined
      ? []
      : (
          await clients.core
            .listNamespacedEvent({ namespace, fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${name}` })
            .catch((error: unknown) => {
              throw toKubeApiError(error, `list events of pod ${namespace}/${name}`);
            })
        ).items;
  const uid = pod.metadata?.uid;
  const podEvents = events
    .filter((event) => uid === undefined || event.involvedObject.uid === undefined || event.involvedObject.uid === uid)
    .map((event) => ({ reason: event.reason ?? '', message: event.message ?? '', count: event.count ?? 1 }));
  const needed = new Set<string>();
  for (const image of explainPod(pod, config.rules).images)
    for (const match of image.matches) needed.add(match.secretName);
  const expected = expectedSecrets(config, currentHashes(config, source)).filter((secret) => needed.has(secret.name));
  const secrets: Finding[] = [];
  for (const secret of expected)
    secrets.push(judgeSecret(namespace, secret, await readSecret(clients, namespace, secret.name), now));
  const { findings, explanation } = judgePod(
    {
      namespace,
      name,
      pod,
      namespaceLabels: ns.metadata?.labels ?? {},
      events: podEvents,
      waiting: 'status' in pod ? pullWaiting(pod.status) : [],
      secrets,
      template,
      recreate: target.recreate,
    },
    config,
  );
  return { findings, explanation };
}

interface WorkloadSpec {
  readonly selector?: LabelSelector | undefined;
  readonly template?: V1PodTemplateSpec | undefined;
}

interface Workload {
  readonly uid: string | undefined;
  readonly selector: LabelSelector | undefined;
  readonly template: V1PodTemplateSpec | undefined;
}

async function readWorkload(
  clients: KubeClients,
  kind: WorkloadKind,
  target: { namespace: string; name: string },
): Promise<Workload | undefined> {
  const what = `get ${kind} ${target.namespace}/${target.name}`;
  const read: Record<
    Exclude<WorkloadKind, 'cronjob'>,
    () => Promise<{ metadata?: V1ObjectMeta; spec?: WorkloadSpec }>
  > = {
    deployment: () => clients.apps.readNamespacedDeployment(target),
    statefulset: () => clients.apps.readNamespacedStatefulSet(target),
    daemonset: () => clients.apps.readNamespacedDaemonSet(target),
    job: () => clients.batch.readNamespacedJob(target),
  };
  if (kind === 'cronjob') {
    const cronJob = await readOrUndefined(what, () => clients.batch.readNamespacedCronJob(target));
    if (cronJob === undefined) return undefined;
    return { uid: cronJob.metadata?.uid, selector: undefined, template: cronJob.spec?.jobTemplate.spec?.template };
  }
  const found = await readOrUndefined(what, read[kind]);
  if (found === undefined) return undefined;
  return { uid: found.metadata?.uid, selector: found.spec?.selector, template: found.spec?.template };
}

/** A workload's pods: by its selector, or for a CronJob those of the Jobs it owns. */
async function workloadPods(
  clients: KubeClients,
  kind: WorkloadKind,
  namespace: string,
  workload: Workload,
): Promise<V1Pod[]> {
  const listPods = (labelSelector?: string) =>
    clients.core
      .listNamespacedPod({ namespace, ...(labelSelector === undefined ? {} : { labelSelector }) })
      .catch((error: unknown) => {
        throw toKubeApiError(error, `list pods in ${namespace}`);
      });
  if (kind !== 'cronjob') {
    // An empty selector would select every pod of the namespace; the API refuses such workloads anyway.
    const selector = selectorString(workload.selector ?? {});
    return selector === '' ? [] : (await listPods(selector)).items;
  }
  const jobs = await clients.batch.listNamespacedJob({ namespace }).catch((error: unknown) => {
    throw toKubeApiError(error, `list jobs in ${namespace}`);
  });
  const owned = (owners: { uid: string }[] | undefined, uids: ReadonlySet<string | undefined>) =>
    (owners ?? []).some((owner) => uids.has(owner.uid));
  const jobUids = new Set(
    jobs.items
      .filter((job) => owned(job.metadata?.ownerReferences, new Set([workload.uid])))
      .map((j) => j.metadata?.uid),
  );
  if (jobUids.size === 0) return [];
  return (await listPods()).items.filter((pod) => owned(pod.metadata?.ownerReferences, jobUids));
}

/** A workload: its pod most likely broken, checked as `doctor pod` would, or its pod template when none exists. */
async function checkWorkload(
  clients: KubeClients,
  config: Config,
  source: string,
  target: { kind: WorkloadKind; namespace: string; name: string },
  now: Date,
): Promise<{ findings: Finding[]; explanation?: unknown }> {
  const { kind, namespace, name } = target;
  const workload = await readWorkload(clients, kind, target);
  const subject = `${kind} ${namespace}/${name}`;
  if (workload === undefined)
    return {
      findings: [{ status: 'fail', subject, detail: 'not found', fix: `check the name: ${kind} NAMESPACE/NAME` }],
    };
  const pods = await workloadPods(clients, kind, namespace, workload);
  const picked = pickPod(pods);
  const restartable = kind === 'deployment' || kind === 'statefulset' || kind === 'daemonset';
  const recreate = restartable ? `then kubectl -n ${namespace} rollout restart ${kind}/${name}` : undefined;
  const podName = picked?.pod.metadata?.name;
  if (picked !== undefined && podName !== undefined) {
    const checked = await judgeOnePod(
      clients,
      config,
      source,
      { namespace, name: podName, pod: picked.pod, recreate },
      now,
    );
    const head = judgeWorkload(target, pods.length, { name: podName, why: picked.why });
    return { findings: [head, ...checked.findings], explanation: checked.explanation };
  }
  const checked = await judgeOnePod(
    clients,
    config,
    source,
    { namespace, name, pod: workload.template ?? {}, template: { kind }, recreate },
    now,
  );
  return { findings: [judgeWorkload(target, 0, undefined), ...checked.findings], explanation: checked.explanation };
}

// ---------------------------------------------------------------------------------------------
// The verb

export async function runDoctor(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
  colour: boolean,
): Promise<number> {
  const options = parseDoctorArgs(argv, env);
  const config = loadConfig(options.config);
  const { kubeConfig } = loadKubeConfig({ flag: options.kubeconfig, env });
  const clients = makeClients(kubeConfig, { userAgent: `acr-pull-webhook-doctor/${process.version}` });
  const now = new Date();
  try {
    let findings: Finding[];
    let explanation: unknown;
    const target = options.target;
    if (target?.kind === 'pod') {
      ({ findings, explanation } = await checkPod(clients, config, options.config, target, now));
    } else if (target !== undefined) {
      const kind = target.kind;
      ({ findings, explanation } = await checkWorkload(clients, config, options.config, { ...target, kind }, now));
    } else {
      const webhooks = await checkWebhooks(clients, options.webhookConfiguration, now);
      const secrets = await checkSecrets(clients, config, options.config, now);
      const leaseNamespace = options.leaseNamespace ?? webhooks.serviceNamespace ?? SYNC_DEFAULTS.leaseNamespace;
      findings = [...webhooks.findings, ...secrets, await checkLease(clients, leaseNamespace, now)];
    }
    const healthy = isHealthy(findings);
    const fix = fixLine(findings).replace(/^fix: /, '');
    if (options.output === 'json') {
      out(JSON.stringify({ healthy, findings, fix, ...(explanation === undefined ? {} : { explanation }) }, null, 2));
    } else {
      for (const line of formatTable(findings, colour)) out(line);
      out(`fix: ${fix}`);
    }
    return healthy ? 0 : 1;
  } finally {
    await clients.close();
  }
}
