// AdmissionReview in, AdmissionReview out. Knows the admission.k8s.io/v1 contract and nothing of
// HTTP: the server decodes the body (validated against REVIEW_BODY_SCHEMA), calls handleReview, and
// encodes what it returns. handleReview never throws and always allows.
import {
  ADMISSION_API_VERSION,
  ADMISSION_KIND,
  type AdmissionWarningReason,
  type ReviewOutcome,
} from '../constants.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { decide } from '../mutation/decide.ts';
import { admissionWarnings } from '../mutation/warnings.ts';

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}
export interface GroupVersionResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource: GroupVersionResource;
  readonly subResource?: string;
  readonly operation: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly dryRun?: boolean;
  readonly object?: unknown;
}

export interface AdmissionReviewRequest {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_KIND;
  readonly request: AdmissionRequest;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: true;
  readonly patchType?: 'JSONPatch';
  /** Base64 of the JSON patch. */
  readonly patch?: string;
  /** Shown by the client (`kubectl` prints `Warning: <text>`); absent when there are none. */
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: typeof ADMISSION_KIND;
  readonly response: AdmissionResponse;
}

/** What happened, for logs and metrics; never contains pod content beyond names. */
export interface ReviewSummary {
  readonly outcome: Exclude<ReviewOutcome, 'rejected'>;
  readonly secretsAdded: readonly string[];
  readonly namespace: string | undefined;
  /** metadata.name, or metadata.generateName for pods named by their controller. */
  readonly podName: string | undefined;
  /** The reason of each warning in the answer, in order. */
  readonly warnings: readonly AdmissionWarningReason[];
}

export interface ReviewResult {
  readonly review: AdmissionReviewResponse;
  readonly summary: ReviewSummary;
}

const gvkSchema = {
  type: 'object',
  required: ['group', 'version', 'kind'],
  properties: { group: { type: 'string' }, version: { type: 'string' }, kind: { type: 'string' } },
} as const;
const gvrSchema = {
  type: 'object',
  required: ['group', 'version', 'resource'],
  properties: { group: { type: 'string' }, version: { type: 'string' }, resource: { type: 'string' } },
} as const;

/**
 * What the server accepts as a review. Only the fields the decision reads are checked; the pod is
 * checked by the pure core itself, which is total, so a 1 MiB pod costs no schema walk.
 */
export const REVIEW_BODY_SCHEMA = {
  type: 'object',
  required: ['apiVersion', 'kind', 'request'],
  properties: {
    apiVersion: { const: ADMISSION_API_VERSION },
    kind: { const: ADMISSION_KIND },
    request: {
      type: 'object',
      required: ['uid', 'kind', 'resource', 'operation'],
      properties: {
        uid: { type: 'string', minLength: 1, maxLength: 256 },
        kind: gvkSchema,
        resource: gvrSchema,
        subResource: { type: 'string' },
        operation: { type: 'string' },
        namespace: { type: 'string' },
        name: { type: 'string' },
        dryRun: { type: 'boolean' },
        object: { type: ['object', 'null'] },
      },
    },
  },
} as const;

function isPodCreate(request: AdmissionRequest): boolean {
  return (
    request.operation === 'CREATE' &&
    request.kind.group === '' &&
    request.kind.kind === 'Pod' &&
    request.resource.group === '' &&
    request.resource.resource === 'pods' &&
    (request.subResource === undefined || request.subResource === '')
  );
}

function podIdentity(
  pod: unknown,
  request: AdmissionRequest,
): { namespace: string | undefined; podName: string | undefined } {
  const metadata = (pod as { metadata?: { name?: unknown; generateName?: unknown; namespace?: unknown } } | null)
    ?.metadata;
  const name = typeof metadata?.name === 'string' && metadata.name !== '' ? metadata.name : undefined;
  const generateName = typeof metadata?.generateName === 'string' ? metadata.generateName : undefined;
  return { namespace: request.namespace, podName: name ?? request.name ?? generateName };
}

/** Base64 of each patch by its JSON: a cluster's pods get the same few patches (their secrets, in order). */
const encodedPatches = new Map<string, string>();
/** Bound on remembered patches; the cache starts over when full. */
const ENCODED_PATCH_LIMIT = 256;

function encodePatch(ops: unknown): string {
  const json = JSON.stringify(ops);
  let patch = encodedPatches.get(json);
  if (patch === undefined) {
    patch = Buffer.from(json).toString('base64');
    if (encodedPatches.size >= ENCODED_PATCH_LIMIT) encodedPatches.clear();
    encodedPatches.set(json, patch);
  }
  return patch;
}

/**
 * Answers one review. Only CREATE of core/v1 pods can be patched or warned about; everything else, dry runs
 * included (the answer has no side effects), is answered the same way: allowed. `acrHostSuffixes` are the
 * configured ones, beyond azurecr.io, .cn and .us.
 */
export function handleReview(
  review: AdmissionReviewRequest,
  rules: readonly RegistryRule[],
  acrHostSuffixes: readonly string[] = [],
): ReviewResult {
  const request = review.request;
  const base = { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND } as const;
  const allowed: AdmissionResponse = { uid: request.uid, allowed: true };
  const identity = podIdentity(request.object, request);

  if (!isPodCreate(request)) {
    return {
      review: { ...base, response: allowed },
      summary: { outcome: 'ignored', secretsAdded: [], ...identity, warnings: [] },
    };
  }
  const decision = decide(request.object, rules);
  const warnings = admissionWarnings(request.object, rules, acrHostSuffixes);
  const warned = warnings.length === 0 ? allowed : { ...allowed, warnings: warnings.map((w) => w.text) };
  const reasons = warnings.map((w) => w.reason);
  if (decision.kind !== 'patched') {
    return {
      review: { ...base, response: warned },
      summary: { outcome: decision.kind, secretsAdded: [], ...identity, warnings: reasons },
    };
  }
  return {
    review: { ...base, response: { ...warned, patchType: 'JSONPatch', patch: encodePatch(decision.ops) } },
    summary: { outcome: 'patched', secretsAdded: decision.secretsAdded, ...identity, warnings: reasons },
  };
}
