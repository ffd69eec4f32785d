// The `.dockerconfigjson` of a pull secret, byte for byte what `kubectl create secret
// docker-registry` writes for the same inputs. kubectl marshals a Go struct with encoding/json, so
// the bytes follow Go's rules rather than JSON.stringify's: struct fields in declaration order
// (username, password, email with omitempty, auth), map keys (the `auths` servers) sorted by
// bytes, and HTML-safe string escaping (<, >, & and U+2028/U+2029 as \u escapes). Matching those
// bytes is what makes "the same secret kubectl would make" checkable with a byte comparison.

/** One registry's credential inside a pull secret. */
export interface DockerAuth {
  /** The `auths` key: the configured `server`, matched by the kubelet against image references. */
  readonly server: string;
  readonly username: string;
  readonly password: string;
}

/** A JSON string literal as Go's encoding/json (with its default HTML escaping) writes it. */
export function goJsonString(value: string): string {
  // JSON.stringify already escapes '"', '\\', \b \f \n \r \t and other C0 controls as \u00xx
  // (lowercase hex), as Go does; lone surrogates cannot occur in strings decoded from UTF-8.
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Byte-wise order of the UTF-8 encodings, as Go sorts map keys. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The `.dockerconfigjson` text for the given credentials, one `auths` key per server. Servers must
 * be distinct (the config refuses an entry repeated for the same secret).
 */
export function dockerConfigJson(auths: readonly DockerAuth[]): string {
  const entries = [...auths]
    .sort((a, b) => compareBytes(a.server, b.server))
    .map((entry) => {
      const auth = Buffer.from(`${entry.username}:${entry.password}`, 'utf8').toString('base64');
      // email is omitted: kubectl declares it `omitempty` and pull secrets for ACR never need one.
      const { username, password } = entry;
      return (
        `${goJsonString(entry.server)}:{"username":${goJsonString(username)},` +
        `"password":${goJsonString(password)},"auth":${goJsonString(auth)}}`
      );
    });
  return `{"auths":{${entries.join(',')}}}`;
}
