// Pure explanation of a decision, for `acr-pull-webhook explain`: per image, which entry matched or
// why each did not. Shares podImages/decide with the admission path so the two cannot disagree.
import { parseImageReference } from '../registry/image-reference.ts';
import { describeMismatch, matchImage } from '../registry/server-pattern.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { decide, podImages, type ContainerList } from './decide.ts';

export interface ImageExplanation {
  readonly list: ContainerList;
  readonly container: string;
  readonly image: string;
  /** The registry host and repository the kubelet would pull from, or why the image is invalid. */
  readonly resolved: { readonly domain: string; readonly path: string } | { readonly error: string };
  readonly matches: readonly { readonly server: string; readonly secretName: string }[];
  /** For each entry that did not match: why. */
  readonly misses: readonly { readonly server: string; readonly reason: string }[];
}

export interface PodExplanation {
  readonly optedOut: boolean;
  readonly images: readonly ImageExplanation[];
  /** Secret names the webhook would add, in order. */
  readonly secretsToAdd: readonly string[];
  /** Matching secret names the pod already lists. */
  readonly alreadyListed: readonly string[];
}

export function explainPod(
  pod: { metadata?: unknown; spec?: unknown },
  rules: readonly RegistryRule[],
): PodExplanation {
  const images = podImages(pod.spec).map(({ list, container, image }): ImageExplanation => {
    const parsed = parseImageReference(image);
    if (!parsed.ok) return { list, container, image, resolved: { error: parsed.error }, matches: [], misses: [] };
    const matches: { server: string; secretName: string }[] = [];
    const misses: { server: string; reason: string }[] = [];
    for (const rule of rules) {
      const result = matchImage(rule.pattern, parsed.ref);
      if (result.matched) matches.push({ server: rule.pattern.server, secretName: rule.secretName });
      else misses.push({ server: rule.pattern.server, reason: describeMismatch(result.mismatch) });
    }
    return { list, container, image, resolved: { domain: parsed.ref.domain, path: parsed.ref.path }, matches, misses };
  });
  const decision = decide({ ...pod, metadata: pod.metadata ?? {} }, rules);
  const secretsToAdd = decision.kind === 'patched' ? decision.secretsAdded : [];
  const matched = [
    ...new Set(
      rules
        .filter((rule) => images.some((i) => i.matches.some((m) => m.secretName === rule.secretName)))
        .map((r) => r.secretName),
    ),
  ];
  return {
    optedOut: decision.kind === 'opted-out',
    images,
    secretsToAdd,
    alreadyListed: decision.kind === 'opted-out' ? [] : matched.filter((name) => !secretsToAdd.includes(name)),
  };
}
