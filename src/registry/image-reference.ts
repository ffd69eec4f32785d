// Parses a container image string the way the kubelet does before it looks up pull credentials:
// github.com/distribution/reference ParseNormalizedNamed, then Name(). There is no maintained
// JavaScript port of the current grammar (IPv6 hosts, `-+` separators, uppercase-domain rule), so
// the grammar below follows distribution/reference's regexp.go and normalize.go term by term.

export interface ImageReference {
  /**
   * Registry host as written, with port if any: `myregistry.azurecr.io`, `localhost:5000`,
   * `[::1]:5000`, `docker.io`.
   */
  readonly domain: string;
  /** Repository path without the domain: `team/app`, `library/nginx`. */
  readonly path: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export type ParseResult = { ok: true; ref: ImageReference } | { ok: false; error: string };

const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const ipv6Address = '\\[(?:[a-fA-F0-9:]+)\\]';
const host = `(?:${domainName}|${ipv6Address})`;
const domainAndPort = `${host}(?::[0-9]+)?`;
const tag = '[\\w][\\w.-]{0,127}';
const digest = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const name = `(?:${domainAndPort}/)?${remoteName}`;

const referenceRegexp = new RegExp(`^(${name})(?::(${tag}))?(?:@(${digest}))?$`);
const anchoredNameRegexp = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`);
const anchoredIdentifierRegexp = /^[a-f0-9]{64}$/;

// Algorithms go-digest registers, with the hex length each requires.
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

/**
 * Splits off the registry host the way the Docker CLI does: the first component is a host only if it
 * looks like one.
 */
function splitDockerDomain(image: string): { domain: string; remainder: string } {
  const slash = image.indexOf('/');
  const first = slash === -1 ? '' : image.slice(0, slash);
  let domain: string;
  let remainder: string;
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = image;
  } else {
    domain = first;
    remainder = image.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

function validateDigest(value: string): string | undefined {
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const expected = DIGEST_HEX_LENGTH[algorithm];
  if (expected === undefined) return `unsupported digest algorithm "${algorithm}"`;
  if (value.length - colon - 1 !== expected) return `invalid ${algorithm} digest length`;
  return undefined;
}

/** Parses and normalizes an image reference; never throws. */
export function parseImageReference(image: string): ParseResult {
  if (image === '') return { ok: false, error: 'empty image reference' };
  if (anchoredIdentifierRegexp.test(image)) {
    return { ok: false, error: 'a 64-character hexadecimal image ID is not a repository name' };
  }
  const { domain, remainder } = splitDockerDomain(image);
  const tagSeparator = remainder.indexOf(':');
  const remote = tagSeparator === -1 ? remainder : remainder.slice(0, tagSeparator);
  if (remote.toLowerCase() !== remote) return { ok: false, error: 'repository name must be lowercase' };

  const match = referenceRegexp.exec(`${domain}/${remainder}`);
  if (match === null) return { ok: false, error: 'invalid reference format' };
  const fullName = match[1] ?? '';
  if (fullName.length > NAME_TOTAL_LENGTH_MAX) {
    return { ok: false, error: `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters` };
  }
  const digestValue = match[3];
  if (digestValue !== undefined) {
    const digestError = validateDigest(digestValue);
    if (digestError !== undefined) return { ok: false, error: digestError };
  }
  const nameMatch = anchoredNameRegexp.exec(fullName);
  return {
    ok: true,
    ref: { domain: nameMatch?.[1] ?? domain, path: nameMatch?.[2] ?? remote, tag: match[2], digest: digestValue },
  };
}
