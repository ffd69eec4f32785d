// Pure: the warnings an answer carries, which the apiserver passes to the client (`kubectl` prints each as
// `Warning: <text>`). One per distinct image on an Azure container registry host that no registries[] entry matches,
// since such a pull gets no credentials from this webhook. No I/O; total over any JSON value, like decide().
import { AZURE_CLOUDS, type AdmissionWarningReason } from '../constants.ts';
import { CLOUDS } from '../azure/clouds.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { imageFacts, isOptedOut, isRecord, podImages } from './decide.ts';

/** azurecr.io, azurecr.cn, azurecr.us: the registry suffixes of the Azure clouds. */
export const BUILT_IN_ACR_SUFFIXES: readonly string[] = AZURE_CLOUDS.map((name) => CLOUDS[name].registrySuffix);

// What the apiserver does with response.warnings (k8s.io/apiserver v0.37.2, the version the e2e tier runs):
// - pkg/admission/plugin/webhook/mutating/dispatcher.go calls warning.AddWarning(ctx, "", w) for each: no webhook
//   name is added, so every text here starts with WARNING_PREFIX.
// - pkg/endpoints/filters/warning.go recorder.AddWarning drops empty and repeated texts; once the texts of one
//   request (every webhook's and the apiserver's own) pass truncateAtTotalRunes (4 * 1024 runes), it cuts every text
//   to truncateItemRunes (256), and drops those that come once the cut texts pass 4 * 1024 runes again.
// - k8s.io/apimachinery pkg/util/net/http.go NewWarningHeader drops a text that is not UTF-8 or has a control
//   character (unicode.IsControl).
// - k8s.io/api admission/v1 AdmissionResponse.Warnings: "Limit warnings to 120 characters if possible". Ours take
//   about 180 with a typical image: naming the image and the fix is worth it.
/** truncateItemRunes: a text this long is never cut, whatever else the request warns about. */
export const WARNING_MAX_RUNES = 256;
/** 8 * 256 runes is half of truncateAtTotalRunes, leaving the other half to other webhooks and the apiserver. */
export const WARNINGS_MAX_COUNT = 8;

const WARNING_PREFIX = 'acr-pull-webhook: ';
const ELLIPSIS = '...';
/** Below this an image would be unrecognisable: the advice's host is shortened first. */
const MIN_IMAGE_RUNES = 48;
const MAX_ADVICE_HOST_RUNES = 64;

export interface AdmissionWarning {
  readonly reason: AdmissionWarningReason;
  readonly text: string;
}

export interface UnmatchedAcrImage {
  readonly image: string;
  /** Its registry host as written, port included. */
  readonly domain: string;
}

/**
 * Whether an image's registry host is an Azure container registry: its name (port ignored, case ignored as DNS
 * does) ends in `.` and a built-in or configured suffix. A host equal to a suffix is not: a suffix names a zone of
 * registries (`<registry>.azurecr.io`), and `azurecr.io` itself serves no images.
 */
export function isAcrHost(domain: string, extraSuffixes: readonly string[]): boolean {
  const host = domain.replace(/:[0-9]*$/, '').toLowerCase();
  const under = (suffix: string): boolean => host.endsWith(`.${suffix}`);
  return BUILT_IN_ACR_SUFFIXES.some(under) || extraSuffixes.some(under);
}

/** Distinct images of a pod spec on an ACR host that no rule matches, in the order the kubelet starts them. */
export function unmatchedAcrImages(
  spec: unknown,
  rules: readonly RegistryRule[],
  extraSuffixes: readonly string[],
): UnmatchedAcrImage[] {
  const unmatched: UnmatchedAcrImage[] = [];
  const seen = new Set<string>();
  for (const { image } of podImages(spec)) {
    if (seen.has(image)) continue;
    seen.add(image);
    const facts = imageFacts(image, rules);
    // An invalid reference is refused by the kubelet whatever its credentials: nothing to say about them.
    if (facts.domain === undefined || facts.matches.includes(true)) continue;
    if (isAcrHost(facts.domain, extraSuffixes)) unmatched.push({ image, domain: facts.domain });
  }
  return unmatched;
}

const runeLength = (text: string): number => [...text].length;

/** Cuts the middle out of a text longer than `max` runes, keeping its start (the host) and end (the tag). */
function elide(text: string, max: number): string {
  const runes = [...text];
  if (runes.length <= max) return text;
  const keep = Math.max(0, max - ELLIPSIS.length);
  const head = Math.ceil(keep / 2);
  return runes.slice(0, head).join('') + ELLIPSIS + runes.slice(runes.length - (keep - head)).join('');
}

function advice(domain: string): string {
  // The kubelet compares hosts case-sensitively and `server` must be lowercase: no entry can ever match.
  if (domain !== domain.toLowerCase()) return 'no entry can match a host with uppercase letters: write it in lowercase';
  return `add an entry for server ${domain}`;
}

const unmatchedText = (image: string, hint: string): string =>
  `${WARNING_PREFIX}no registries[] entry matches image "${image}": ` +
  `it will be pulled without credentials from this webhook (${hint})`;

/** The warning for one image, within WARNING_MAX_RUNES: a long image loses its middle, a long host too. */
export function unmatchedImageWarning({ image, domain }: UnmatchedAcrImage): AdmissionWarning {
  let hint = advice(domain);
  if (WARNING_MAX_RUNES - runeLength(unmatchedText('', hint)) < MIN_IMAGE_RUNES)
    hint = advice(elide(domain, MAX_ADVICE_HOST_RUNES));
  const room = WARNING_MAX_RUNES - runeLength(unmatchedText('', hint));
  return { reason: 'unmatched_acr_host', text: unmatchedText(elide(image, room), hint) };
}

function moreImagesWarning(count: number): AdmissionWarning {
  return {
    reason: 'unmatched_acr_host',
    text:
      `${WARNING_PREFIX}and ${count} more images on Azure container registries match no registries[] entry: ` +
      'they will be pulled without credentials from this webhook',
  };
}

/**
 * The warnings for a pod being created: none for an opted-out pod; otherwise one per unmatched ACR image, at most
 * WARNINGS_MAX_COUNT, the last one then saying how many more there are.
 */
export function admissionWarnings(
  pod: unknown,
  rules: readonly RegistryRule[],
  extraSuffixes: readonly string[],
): AdmissionWarning[] {
  if (!isRecord(pod) || isOptedOut(pod)) return [];
  const unmatched = unmatchedAcrImages(pod['spec'], rules, extraSuffixes);
  if (unmatched.length <= WARNINGS_MAX_COUNT) return unmatched.map(unmatchedImageWarning);
  const shown = unmatched.slice(0, WARNINGS_MAX_COUNT - 1).map(unmatchedImageWarning);
  return [...shown, moreImagesWarning(unmatched.length - shown.length)];
}
