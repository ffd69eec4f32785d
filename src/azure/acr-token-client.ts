// The only I/O of the token flow: read the Entra ID credential from its file, post the Entra ID token request, post
// the ACR exchange, read the refresh token's exp. Requests and answers are built and read by ./requests.ts.
// Trust: the global fetch (undici) with Node's CA store. Checked on Node 24.21: a child started with
// NODE_EXTRA_CA_CERTS=<file> trusts that file's CAs in fetch, and without it the same server fails with
// UNABLE_TO_VERIFY_LEAF_SIGNATURE (test/integration/acr-token-client.test.ts shows both). The store is Node's bundled
// Mozilla roots; the operating system's store only with --use-system-ca or NODE_USE_SYSTEM_CA=1.
// No error message here carries a token, assertion, secret or answer text: only problem lines of ./requests.ts,
// file paths, hosts, errno-style codes, stage names and HTTP status numbers.
import { readFile } from 'node:fs/promises';
import type { AzureCredentials, AzureSecretSource } from './azure-credentials.ts';
import { JwtError, type JwtTimes, readJwtTimes } from './jwt.ts';
import {
  acrExchangeRequest,
  type EntraCredential,
  entraTokenRequest,
  FORM_CONTENT_TYPE,
  type FormPost,
  parseAcrExchangeResponse,
  parseEntraTokenResponse,
} from './requests.ts';

/** Per request (Entra ID, then the exchange), answer body included. */
export const DEFAULT_TOKEN_REQUEST_TIMEOUT_MS = 10_000;

/**
 * The most bytes an answer may have. Both answers are a few kilobytes of JSON (an Entra access token with many group
 * claims stays under 16 KB); without a bound, a wrong host streaming within the timeout could fill the memory of a
 * process whose container limit is 256 MiB.
 */
export const MAX_TOKEN_ANSWER_BYTES = 256 * 1024;

export interface AcrRefreshToken {
  /** The pull secret's password (with the null-GUID user). */
  readonly refreshToken: string;
  /** Its exp (and iat, nbf when present), from the token itself. */
  readonly times: JwtTimes;
  /** Unix milliseconds when the registry's answer was read (see ./refresh.ts lifetimeOf). */
  readonly receivedAt: number;
}

export type AcrTokenStage = 'read' | 'entra' | 'exchange';

/** One line saying which step failed and what to check; never a token, assertion or secret byte. */
export class AcrTokenError extends Error {
  override name = 'AcrTokenError';
  readonly stage: AcrTokenStage;
  /** A network error, timeout, HTTP 429 or 5xx: the same request may succeed later. */
  readonly retriable: boolean;
  constructor(stage: AcrTokenStage, retriable: boolean, message: string) {
    super(message);
    this.stage = stage;
    this.retriable = retriable;
  }
}

export interface AcrTokenClientOptions {
  readonly fetch?: typeof fetch;
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

/** The configuration field a secret source comes from, so a read error names what to fix. */
const FIELD: Readonly<Record<AzureSecretSource['kind'], string>> = {
  'federated-token': 'federatedTokenFile',
  'client-secret': 'clientSecretFile',
};

/** An errno-style code (ENOENT, ECONNREFUSED, CERT_HAS_EXPIRED), or undefined for anything that is not one. */
function codeOf(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,63}$/.test(code) ? code : undefined;
}

/** The file's content without trailing newlines; read on every call because the kubelet rotates a projected token. */
async function readSecret(source: AzureSecretSource): Promise<EntraCredential> {
  const what = `${FIELD[source.kind]} ${source.file}`;
  let text: string;
  try {
    text = await readFile(source.file, 'utf8');
  } catch (error) {
    throw new AcrTokenError('read', false, `cannot read ${what} (${codeOf(error) ?? 'unknown error'})`);
  }
  const value = text.replace(/[\r\n]+$/, '');
  if (value === '') throw new AcrTokenError('read', false, `${what} is empty`);
  return source.kind === 'federated-token'
    ? { kind: 'assertion', assertion: value }
    : { kind: 'secret', secret: value };
}

/**
 * OpenSSL's certificate verification results as Node names them, and Node's own host name check: a configuration
 * problem (the CA, NODE_EXTRA_CA_CERTS, the host), which retrying will not fix.
 */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const REQUEST_NAME: Readonly<Record<Exclude<AcrTokenStage, 'read'>, string>> = {
  entra: 'the Entra ID token request',
  exchange: "the registry's token exchange",
};

/** undici rejects with TypeError('fetch failed') whose cause (sometimes one level deeper) carries the code. */
function networkError(stage: 'entra' | 'exchange', host: string, error: unknown, timeoutMs: number): AcrTokenError {
  const request = `${REQUEST_NAME[stage]} to ${host}`;
  // The timeout signal rejects with a DOMException named TimeoutError, while the request or while its body is read.
  const name = typeof error === 'object' && error !== null && 'name' in error ? error.name : undefined;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new AcrTokenError(stage, true, `${request} timed out after ${timeoutMs} ms`);
  }
  const cause = error instanceof Error ? error.cause : undefined;
  const code =
    codeOf(cause) ?? codeOf(cause instanceof Error ? cause.cause : undefined) ?? codeOf(error) ?? 'no error code';
  if (CERTIFICATE_ERRORS.has(code)) {
    return new AcrTokenError(
      stage,
      false,
      `${request} failed: the server's TLS certificate is not accepted (${code}): check its CA is among Node's ` +
        'or in NODE_EXTRA_CA_CERTS, and that the certificate names the host',
    );
  }
  return new AcrTokenError(stage, true, `${request} failed (${code})`);
}

/** The answer's text, read until MAX_TOKEN_ANSWER_BYTES and no further. */
async function boundedText(stage: 'entra' | 'exchange', host: string, response: Response): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? 0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (declared <= MAX_TOKEN_ANSWER_BYTES && response.body !== null) {
    for await (const chunk of response.body) {
      size += chunk.byteLength;
      if (size > MAX_TOKEN_ANSWER_BYTES) break;
      chunks.push(chunk);
    }
  }
  if (declared > MAX_TOKEN_ANSWER_BYTES || size > MAX_TOKEN_ANSWER_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw new AcrTokenError(
      stage,
      false,
      `${REQUEST_NAME[stage]} to ${host} was answered with more than ${MAX_TOKEN_ANSWER_BYTES} bytes, which no token ` +
        'answer needs: check the configured host',
    );
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

const retriableStatus = (status: number): boolean => status === 429 || status >= 500;

/** POSTs a form, never following a redirect: the credential in the body must reach only the configured host. */
async function post(
  stage: 'entra' | 'exchange',
  request: FormPost,
  fetchFn: typeof fetch,
  timeoutMs: number,
): Promise<{ readonly status: number; readonly body: string }> {
  const host = new URL(request.url).host;
  try {
    const response = await fetchFn(request.url, {
      method: 'POST',
      headers: { 'content-type': FORM_CONTENT_TYPE, accept: 'application/json' },
      body: request.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (response.status >= 300 && response.status <= 399) {
      await response.body?.cancel();
      throw new AcrTokenError(
        stage,
        false,
        `${REQUEST_NAME[stage]} to ${host} was answered with a redirect (HTTP ${response.status}), which is not ` +
          'followed so the credential is posted nowhere else: check the configured host',
      );
    }
    return { status: response.status, body: await boundedText(stage, host, response) };
  } catch (error) {
    if (error instanceof AcrTokenError) throw error;
    throw networkError(stage, host, error, timeoutMs);
  }
}

/**
 * An ACR refresh token for `server` from Entra ID client credentials: the credential file is read, Entra ID asked
 * for an access token in the cloud's ACR scope, and the registry's /oauth2/exchange for the refresh token.
 * Throws AcrTokenError naming the failed stage.
 */
export async function requestAcrRefreshToken(
  server: string,
  credentials: AzureCredentials,
  options: AcrTokenClientOptions = {},
): Promise<AcrRefreshToken> {
  const fetchFn = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_REQUEST_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const { authorityHost, tenantId, clientId, scope } = credentials;

  const credential = await readSecret(credentials.secretSource);
  const entraRequest = entraTokenRequest({ authorityHost, tenantId, clientId, scope, credential });
  const entra = await post('entra', entraRequest, fetchFn, timeoutMs);
  const entraToken = parseEntraTokenResponse(entra.status, entra.body);
  if (!entraToken.ok) throw new AcrTokenError('entra', retriableStatus(entra.status), entraToken.problem);

  const exchangeRequest = acrExchangeRequest({ server, tenantId, accessToken: entraToken.value.accessToken });
  const exchange = await post('exchange', exchangeRequest, fetchFn, timeoutMs);
  const receivedAt = now();
  const refresh = parseAcrExchangeResponse(exchange.status, exchange.body);
  if (!refresh.ok) throw new AcrTokenError('exchange', retriableStatus(exchange.status), refresh.problem);

  const { refreshToken } = refresh.value;
  try {
    return { refreshToken, times: readJwtTimes(refreshToken), receivedAt };
  } catch (error) {
    if (!(error instanceof JwtError)) throw error;
    throw new AcrTokenError('exchange', false, `the registry's refresh token cannot be used: ${error.message}`);
  }
}
