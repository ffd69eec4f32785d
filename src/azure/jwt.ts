// The time claims of a JWT, read without verifying its signature: the registry and Entra ID verify tokens,
// this project only schedules their refresh. Parsing is strict (RFC 7515 compact form, unpadded canonical
// base64url, UTF-8 JSON objects, RFC 7519 NumericDate), and no error ever quotes the token or a part of it.

/** A malformed token; the message names what is wrong and never contains the token. */
export class JwtError extends Error {
  override name = 'JwtError';
}

/** NumericDate claims, in Unix seconds as written (RFC 7519 allows fractions). */
export interface JwtTimes {
  readonly exp: number;
  readonly iat?: number;
  readonly nbf?: number;
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes of an unpadded base64url segment; refuses other alphabets, padding and non-canonical trailing bits. */
function decodeSegment(segment: string, what: string): Uint8Array {
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) throw new JwtError(`the token's ${what} is not base64url`);
  const bytes = Buffer.from(segment, 'base64url');
  // Buffer's decoder ignores stray bits; re-encoding shows whether the segment is the one encoding of its bytes.
  if (bytes.toString('base64url') !== segment) throw new JwtError(`the token's ${what} is not canonical base64url`);
  return bytes;
}

function decodeObject(segment: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(decodeSegment(segment, what));
  } catch (error) {
    if (error instanceof JwtError) throw error;
    throw new JwtError(`the token's ${what} is not UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the input, so it is not passed on.
    throw new JwtError(`the token's ${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new JwtError(`the token's ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function numericDate(claims: Record<string, unknown>, name: 'exp' | 'iat' | 'nbf'): number | undefined {
  if (!Object.hasOwn(claims, name)) return undefined;
  const value = claims[name];
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new JwtError(`the token's ${name} claim is not a NumericDate (a non-negative number of seconds)`);
  }
  return value;
}

/** exp (required), iat and nbf of a JWS compact token; throws JwtError for anything else. */
export function readJwtTimes(token: string): JwtTimes {
  const segments = token.split('.');
  if (segments.length !== 3) {
    throw new JwtError(`the token is not a JWT: ${segments.length} dot-separated segments instead of 3`);
  }
  const [header = '', payload = '', signature = ''] = segments;
  decodeObject(header, 'header');
  const claims = decodeObject(payload, 'payload');
  decodeSegment(signature, 'signature');
  const exp = numericDate(claims, 'exp');
  if (exp === undefined) throw new JwtError('the token has no exp claim, so when it expires is unknown');
  const iat = numericDate(claims, 'iat');
  const nbf = numericDate(claims, 'nbf');
  return { exp, ...(iat === undefined ? {} : { iat }), ...(nbf === undefined ? {} : { nbf }) };
}
