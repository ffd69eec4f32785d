// The pure core: (pod, registry rules) -> the imagePullSecrets to add and the JSON patch that adds
// them. No I/O, no clock, no logging. Total over any JSON value: a review can carry anything, and
// "never block a cluster" means odd input yields "nothing to add", not an exception.
import { INJECT_DISABLED, INJECT_LABEL } from '../constants.ts';
import { parseImageReference } from '../registry/image-reference.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { matchImage } from '../registry/server-pattern.ts';

/** An RFC 6902 operation of the only kind this webhook emits. */
export interface AddOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

export type Decision =
  | { readonly kind: 'opted-out' }
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'patched'; readonly secretsAdded: readonly string[]; readonly ops: readonly AddOperation[] };

const UNCHANGED: Decision = { kind: 'unchanged' };
const OPTED_OUT: Decision = { kind: 'opted-out' };

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
export type ContainerList = (typeof CONTAINER_LISTS)[number];

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface PodImage {
  readonly list: ContainerList;
  readonly container: string;
  readonly image: string;
}

/** Every image string of a pod spec, in the order the kubelet starts them. */
export function podImages(spec: unknown): PodImage[] {
  const images: PodImage[] = [];
  if (!isRecord(spec)) return images;
  for (const list of CONTAINER_LISTS) {
    const containers = spec[list];
    if (!Array.isArray(containers)) continue;
    for (const container of containers) {
      if (isRecord(container) && typeof container['image'] === 'string') {
        const name = typeof container['name'] === 'string' ? container['name'] : '';
        images.push({ list, container: name, image: container['image'] });
      }
    }
  }
  return images;
}

/** Bound on remembered images; the cache starts over when full (a pod's images repeat across replicas). */
const IMAGE_CACHE_LIMIT = 4096;
/** Longer strings are not valid references anyway (names stop at 255); never let them fill memory. */
const CACHEABLE_IMAGE_LENGTH = 512;
const imageFactsCache = new WeakMap<readonly RegistryRule[], Map<string, ImageFacts>>();

/** What the webhook needs to know of one image string, for one list of rules. */
export interface ImageFacts {
  /** The registry host as written, port included; undefined when the image is not a valid reference. */
  readonly domain: string | undefined;
  /** For each rule, whether it matches the image. */
  readonly matches: readonly boolean[];
}

/** Parses and matches an image string once; later calls with the same string and rules are a lookup. */
export function imageFacts(image: string, rules: readonly RegistryRule[]): ImageFacts {
  let cache = imageFactsCache.get(rules);
  if (cache === undefined) imageFactsCache.set(rules, (cache = new Map()));
  let facts = cache.get(image);
  if (facts === undefined) {
    const parsed = parseImageReference(image);
    facts = {
      domain: parsed.ok ? parsed.ref.domain : undefined,
      matches: rules.map((rule) => parsed.ok && matchImage(rule.pattern, parsed.ref).matched),
    };
    if (image.length <= CACHEABLE_IMAGE_LENGTH) {
      if (cache.size >= IMAGE_CACHE_LIMIT) cache.clear();
      cache.set(image, facts);
    }
  }
  return facts;
}

/** Secret names of every rule that matches at least one image, in rule order, each once. */
export function matchingSecrets(images: readonly string[], rules: readonly RegistryRule[]): string[] {
  const secrets: string[] = [];
  if (images.length === 0) return secrets;
  const perImage = images.map((image) => imageFacts(image, rules).matches);
  rules.forEach((rule, index) => {
    if (!secrets.includes(rule.secretName) && perImage.some((matches) => matches[index] === true))
      secrets.push(rule.secretName);
  });
  return secrets;
}

/**
 * Names already listed in spec.imagePullSecrets: undefined when the field is absent (or null), a
 * set when it is a list, and 'not-a-list' for anything the apiserver would never send.
 */
function existingPullSecretNames(spec: Record<string, unknown>): Set<string> | undefined | 'not-a-list' {
  const list = spec['imagePullSecrets'];
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list)) return 'not-a-list';
  const names = new Set<string>();
  for (const entry of list) if (isRecord(entry) && typeof entry['name'] === 'string') names.add(entry['name']);
  return names;
}

/**
 * Ops that add `names` to spec.imagePullSecrets. The apiserver applies patches with
 * evanphx/json-patch v4, which never creates missing parents: the whole list is added when the
 * field is absent, and each name is appended with `/-` when the list exists.
 */
export function pullSecretOps(listExists: boolean, names: readonly string[]): AddOperation[] {
  if (names.length === 0) return [];
  if (!listExists) return [{ op: 'add', path: '/spec/imagePullSecrets', value: names.map((name) => ({ name })) }];
  return names.map((name) => ({ op: 'add', path: '/spec/imagePullSecrets/-', value: { name } }));
}

export function isOptedOut(pod: Record<string, unknown>): boolean {
  const metadata = pod['metadata'];
  if (!isRecord(metadata)) return false;
  const labels = metadata['labels'];
  return isRecord(labels) && labels[INJECT_LABEL] === INJECT_DISABLED;
}

/** Decides what to add to a pod. `pod` is whatever the review carried as `request.object`. */
export function decide(pod: unknown, rules: readonly RegistryRule[]): Decision {
  if (!isRecord(pod)) return UNCHANGED;
  if (isOptedOut(pod)) return OPTED_OUT;
  const spec = pod['spec'];
  if (!isRecord(spec)) return UNCHANGED;
  const existing = existingPullSecretNames(spec);
  // Appending to a value that is not a list cannot be done safely: leave such a pod as it is.
  if (existing === 'not-a-list') return UNCHANGED;
  const wanted = matchingSecrets(
    podImages(spec).map((entry) => entry.image),
    rules,
  );
  const secretsAdded = wanted.filter((name) => !(existing?.has(name) ?? false));
  if (secretsAdded.length === 0) return UNCHANGED;
  return { kind: 'patched', secretsAdded, ops: pullSecretOps(existing !== undefined, secretsAdded) };
}
