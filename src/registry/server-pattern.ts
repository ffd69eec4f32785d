// Decides whether the kubelet would use a credential stored under a `.dockerconfigjson` `auths` key
// (a configured `server`) for an image. Mirrors pkg/credentialprovider in the kubelet: the key is
// read as a schemeless URL, `/v1/` and `/v2/` path prefixes are dropped, then URLsMatch compares
// ports for equality, host label counts for equality, the key's path as a plain string prefix of
// the image's path, and each host label as a glob (`*` within one label).
import type { ImageReference } from './image-reference.ts';

export interface ServerPattern {
  /** The `server` string as configured (also the `auths` key written into the pull secret). */
  readonly server: string;
  readonly hostLabels: readonly string[];
  readonly port: string;
  /** The path prefix the image path must start with, with its leading slash; empty when none. */
  readonly pathPrefix: string;
  readonly labelMatchers: readonly RegExp[];
  /** `index.docker.io` keys also serve every Docker Hub image (the kubelet's default-registry rule). */
  readonly isDefaultRegistry: boolean;
}

export type Mismatch =
  | { kind: 'port'; want: string; got: string }
  | { kind: 'label-count'; want: number; got: number }
  | { kind: 'label'; index: number; want: string; got: string }
  | { kind: 'path'; want: string; got: string };

export type MatchResult = { matched: true } | { matched: false; mismatch: Mismatch };

const MATCHED: MatchResult = { matched: true };

// host: labels of lowercase letters, digits, '-' and '*'; optional port; optional path prefix.
// The kubelet compares hosts case-sensitively and image hosts are lowercase in practice, so an
// uppercase pattern could only ever match by accident: it is refused.
const HOST_LABEL = '[a-z0-9*](?:[a-z0-9*-]*[a-z0-9*])?';
const SERVER_SYNTAX = new RegExp(
  `^(?<host>${HOST_LABEL}(?:\\.${HOST_LABEL})*)(?::(?<port>[0-9]{1,5}))?(?<path>\\/[a-z0-9._/-]*)?$`,
);

/** The pattern syntax accepted for `server`, for use in the config schema. */
export const SERVER_PATTERN_SOURCE = SERVER_SYNTAX.source.replace(/\(\?<[a-z]+>/g, '(');

function labelGlob(label: string): RegExp {
  // Only '*' is special in accepted patterns; every other character is literal.
  const body = label
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

function splitHostPort(hostPort: string): { host: string; port: string } {
  // net.SplitHostPort: a port only after the last ':' and, for IPv6, after the closing bracket.
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close !== -1 && hostPort[close + 1] === ':') {
      return { host: hostPort.slice(1, close), port: hostPort.slice(close + 2) };
    }
    return { host: hostPort, port: '' };
  }
  const colon = hostPort.lastIndexOf(':');
  if (colon === -1 || hostPort.indexOf(':') !== colon) return { host: hostPort, port: '' };
  return { host: hostPort.slice(0, colon), port: hostPort.slice(colon + 1) };
}

/**
 * Compiles a configured `server`; returns undefined when it is not `host[:port][/path]` with `*` only
 * inside host labels.
 */
export function compileServerPattern(server: string): ServerPattern | undefined {
  const groups = SERVER_SYNTAX.exec(server)?.groups;
  if (groups === undefined) return undefined;
  const host = groups['host'] ?? '';
  const port = groups['port'] ?? '';
  let path = groups['path'] ?? '';
  if (path.startsWith('/v2/') || path.startsWith('/v1/')) path = path.slice(3);
  if (path === '/') path = '';
  const hostLabels = host.split('.');
  return {
    server,
    hostLabels,
    port,
    pathPrefix: path,
    labelMatchers: hostLabels.map(labelGlob),
    isDefaultRegistry: host === 'index.docker.io' && port === '' && path === '',
  };
}

/** Would the kubelet use a credential stored under this pattern for this (parsed) image? */
export function matchImage(pattern: ServerPattern, image: ImageReference): MatchResult {
  if (pattern.isDefaultRegistry && image.domain === 'docker.io') return MATCHED;
  const { host, port } = splitHostPort(image.domain);
  if (port !== pattern.port) return { matched: false, mismatch: { kind: 'port', want: pattern.port, got: port } };
  const labels = host.split('.');
  if (labels.length !== pattern.hostLabels.length) {
    return { matched: false, mismatch: { kind: 'label-count', want: pattern.hostLabels.length, got: labels.length } };
  }
  const imagePath = `/${image.path}`;
  if (!imagePath.startsWith(pattern.pathPrefix)) {
    return { matched: false, mismatch: { kind: 'path', want: pattern.pathPrefix, got: imagePath } };
  }
  for (let index = 0; index < labels.length; index++) {
    const label = labels[index] ?? '';
    if (!(pattern.labelMatchers[index]?.test(label) ?? false)) {
      return { matched: false, mismatch: { kind: 'label', index, want: pattern.hostLabels[index] ?? '', got: label } };
    }
  }
  return MATCHED;
}

/** One sentence saying why a pattern did not match, for `explain`. */
export function describeMismatch(mismatch: Mismatch): string {
  switch (mismatch.kind) {
    case 'port':
      return mismatch.want === ''
        ? `image names port ${mismatch.got}; the entry has no port`
        : `port ${mismatch.got || '(none)'} is not ${mismatch.want}`;
    case 'label-count':
      return `host has ${mismatch.got} labels; the entry has ${mismatch.want}`;
    case 'label':
      return `host label ${mismatch.index + 1} "${mismatch.got}" does not match "${mismatch.want}"`;
    case 'path':
      return `path ${mismatch.got} does not start with ${mismatch.want}`;
  }
}
