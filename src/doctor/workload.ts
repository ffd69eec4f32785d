// Pure: `doctor KIND NAMESPACE/NAME` for a workload. Which of its pods to check (the one most likely broken), the
// label selector as the API's query string, and the row that says which pod was checked or that none exists yet.
import { type Finding, pullWaiting } from './checks.ts';

export const WORKLOAD_KINDS = ['deployment', 'statefulset', 'daemonset', 'job', 'cronjob'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export const isWorkloadKind = (kind: string): kind is WorkloadKind =>
  (WORKLOAD_KINDS as readonly string[]).includes(kind);

export interface LabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>> | undefined;
  readonly matchExpressions?:
    | readonly { readonly key: string; readonly operator: string; readonly values?: readonly string[] | undefined }[]
    | undefined;
}

/** A metav1.LabelSelector as the `labelSelector` query parameter (kubectl's syntax). */
export function selectorString(selector: LabelSelector): string {
  const terms = Object.entries(selector.matchLabels ?? {}).map(([key, value]) => `${key}=${value}`);
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    if (operator === 'In') terms.push(`${key} in (${values.join(',')})`);
    else if (operator === 'NotIn') terms.push(`${key} notin (${values.join(',')})`);
    else if (operator === 'Exists') terms.push(key);
    else if (operator === 'DoesNotExist') terms.push(`!${key}`);
  }
  return terms.join(',');
}

export interface PodSummary {
  readonly metadata?: {
    readonly name?: string | undefined;
    readonly creationTimestamp?: Date | string | undefined;
    readonly deletionTimestamp?: Date | string | undefined;
  };
  readonly status?: unknown;
}

export interface PickedPod<P> {
  readonly pod: P;
  /** Why this one: "a container waits in ImagePullBackOff" or "the newest". */
  readonly why: string;
}

const created = (pod: PodSummary): number => new Date(pod.metadata?.creationTimestamp ?? 0).getTime();

/** The pod most likely broken: one with a container waiting on a failed pull, else the newest not being deleted. */
export function pickPod<P extends PodSummary>(pods: readonly P[]): PickedPod<P> | undefined {
  const ordered = [...pods].sort(
    (a, b) =>
      Number(a.metadata?.deletionTimestamp !== undefined) - Number(b.metadata?.deletionTimestamp !== undefined) ||
      created(b) - created(a) ||
      (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''),
  );
  for (const pod of ordered) {
    const waiting = pullWaiting(pod.status)[0];
    if (waiting !== undefined) return { pod, why: `a container waits in ${waiting.reason}` };
  }
  const newest = ordered[0];
  return newest === undefined ? undefined : { pod: newest, why: 'the newest' };
}

/** The workload's own row: which pod the rows below are about, or that they are about its pod template. */
export function judgeWorkload(
  workload: { readonly kind: WorkloadKind; readonly namespace: string; readonly name: string },
  podCount: number,
  checked: { readonly name: string; readonly why: string } | undefined,
): Finding {
  const { kind, namespace, name } = workload;
  const subject = `${kind} ${namespace}/${name}`;
  const count = `${podCount} pod${podCount === 1 ? '' : 's'}`;
  if (checked !== undefined)
    return { status: 'ok', subject, detail: `${count}; checked pod ${checked.name} (${checked.why})` };
  const detail = 'no pod exists yet: checked its pod template';
  // A CronJob between runs has no pod, and that is fine; any other workload should have one.
  if (kind === 'cronjob') return { status: 'ok', subject, detail };
  const owner = kind === 'deployment' ? " (or its ReplicaSet's)" : '';
  return {
    status: 'warn',
    subject,
    detail,
    fix: `kubectl -n ${namespace} describe ${kind} ${name}: its events${owner} say why it has no pod`,
  };
}
