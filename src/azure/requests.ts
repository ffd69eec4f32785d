// The two requests that turn an Entra ID credential into an ACR refresh token, and the reading of their answers.
// Entra ID: the Microsoft identity platform's client credentials flow (v2.0 token endpoint, with a client secret or
// a federated client assertion). ACR: Azure/acr docs/AAD-OAuth.md (`POST /oauth2/exchange`, grant_type=access_token).
// A problem line names the HTTP status, the error code and the field to check; it is built only from fixed text,
// known codes, digits and a GUID, so no token, assertion, secret or other text of the answer can reach a log.
import {
  ACR_EXCHANGE_GRANT_TYPE,
  ACR_EXCHANGE_PATH,
  ENTRA_ASSERTION_TYPE,
  ENTRA_GRANT_TYPE,
  ENTRA_TOKEN_PATH,
} from '../constants.ts';
import { serverHost } from './clouds.ts';

/** A POST with an application/x-www-form-urlencoded body. */
export interface FormPost {
  readonly url: string;
  readonly body: string;
}

export const FORM_CONTENT_TYPE = 'application/x-www-form-urlencoded';

/** A federated ServiceAccount token (workload identity) or a service principal's client secret. */
export type EntraCredential =
  | { readonly kind: 'assertion'; readonly assertion: string }
  | { readonly kind: 'secret'; readonly secret: string };

export interface EntraTokenRequest {
  /** Normalised: HTTPS, ending in a slash (see normaliseAuthorityHost). */
  readonly authorityHost: string;
  readonly tenantId: string;
  readonly clientId: string;
  /** The cloud's ACR scope. */
  readonly scope: string;
  readonly credential: EntraCredential;
}

/** `POST {authorityHost}{tenant}/oauth2/v2.0/token`, client credentials grant. */
export function entraTokenRequest(request: EntraTokenRequest): FormPost {
  const { authorityHost, tenantId, clientId, scope, credential } = request;
  const body = new URLSearchParams({ grant_type: ENTRA_GRANT_TYPE, client_id: clientId, scope });
  if (credential.kind === 'assertion') {
    body.set('client_assertion_type', ENTRA_ASSERTION_TYPE);
    body.set('client_assertion', credential.assertion);
  } else body.set('client_secret', credential.secret);
  const url = new URL(`${encodeURIComponent(tenantId)}/${ENTRA_TOKEN_PATH}`, authorityHost);
  return { url: url.href, body: body.toString() };
}

export interface AcrExchangeRequest {
  /** The registry `server` as configured; a path prefix is dropped. */
  readonly server: string;
  readonly tenantId: string;
  readonly accessToken: string;
}

/**
 * `POST https://<host[:port]>/oauth2/exchange`. `service` is the host as configured: ACR names carry no port, so for
 * ACR it is the registry's FQDN as AAD-OAuth.md asks; a test registry with a port names its service with it.
 */
export function acrExchangeRequest(request: AcrExchangeRequest): FormPost {
  const host = serverHost(request.server);
  const body = new URLSearchParams({
    grant_type: ACR_EXCHANGE_GRANT_TYPE,
    service: host,
    tenant: request.tenantId,
    access_token: request.accessToken,
  });
  return { url: `https://${host}${ACR_EXCHANGE_PATH}`, body: body.toString() };
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

/** OAuth 2.0 error codes (RFC 6749 5.2, and those Entra ID adds); any other `error` value is not repeated. */
const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'interaction_required',
  'temporarily_unavailable',
  'server_error',
]);

/**
 * AADSTS codes of this flow and what to check (Microsoft Learn, "Microsoft Entra authentication and authorization
 * error codes"; 70021 also in azure-workload-identity's troubleshooting page). Microsoft may renumber codes: an
 * unknown one is still shown, with the hint of its OAuth `error`.
 */
const AADSTS_HINTS: ReadonlyMap<number, string> = new Map([
  [70021, 'no federated credential matches the ServiceAccount token: check its issuer, subject and audience'],
  [700211, "no federated credential has the token's issuer: check the issuer (the cluster's OIDC issuer URL)"],
  [700212, "no federated credential has the token's audience: check the audience (api://AzureADTokenExchange)"],
  [700213, "no federated credential has the token's subject: check the subject (system:serviceaccount:<ns>:<name>)"],
  [700024, 'the ServiceAccount token has expired: check federatedTokenFile is a projected token the kubelet rotates'],
  [
    700027,
    "the ServiceAccount token's signature did not verify: check the issuer's public JWKS has the cluster's keys",
  ],
  [50027, 'the ServiceAccount token is not a valid JWT: check federatedTokenFile'],
  [7000215, 'the client secret is wrong: check clientSecretFile holds the secret value (not its ID)'],
  [7000222, 'the client secret has expired: check clientSecretFile holds a current secret'],
  [700016, 'the application was not found in the tenant: check clientId and tenantId'],
  [90002, 'the tenant was not found: check tenantId (and cloud)'],
  [900023, 'the tenant ID is not valid: check tenantId'],
  [500011, "the registry's resource was not found in the tenant: check cloud (the ACR scope)"],
  [70011, 'the scope is not valid: check cloud (the ACR scope)'],
  [7000112, 'the application is disabled: check the app registration or managed identity'],
  [53003, 'Conditional Access blocked the sign-in: check the policies that apply to workload identities'],
]);

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A JSON object, or undefined for anything else (the text itself is never repeated). */
function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The first AADSTS code, from `error_codes` or the description's `AADSTS<digits>:` prefix; digits only. */
function aadstsCode(answer: Record<string, unknown>): number | undefined {
  const codes = answer.error_codes;
  if (Array.isArray(codes) && Number.isSafeInteger(codes[0]) && (codes[0] as number) > 0) return codes[0] as number;
  const description = answer.error_description;
  const match = typeof description === 'string' ? /^AADSTS(\d{1,9})\b/.exec(description) : null;
  return match === null ? undefined : Number(match[1]);
}

function entraProblem(status: number, answer: Record<string, unknown> | undefined): string {
  if (status === 429 || status >= 500) return `Entra ID is unavailable (HTTP ${status}): retrying with backoff`;
  if (answer === undefined)
    return `Entra ID refused the token request (HTTP ${status}) with an answer that is not JSON`;
  const error = typeof answer.error === 'string' && OAUTH_ERRORS.has(answer.error) ? answer.error : undefined;
  const code = aadstsCode(answer);
  const labels = [
    `HTTP ${status}`,
    ...(error === undefined ? [] : [error]),
    ...(code === undefined ? [] : [`AADSTS${code}`]),
  ];
  const hint =
    (code === undefined ? undefined : AADSTS_HINTS.get(code)) ??
    (error === 'invalid_client'
      ? 'check clientId and the credential (the client secret or the federated credential)'
      : 'see the Entra ID sign-in logs for the application');
  const trace =
    typeof answer.trace_id === 'string' && GUID.test(answer.trace_id) ? ` (trace ID ${answer.trace_id})` : '';
  return `Entra ID refused the token request (${labels.join(', ')}): ${hint}${trace}`;
}

/** Entra ID's answer: the access token, or one line saying what to check. */
export function parseEntraTokenResponse(status: number, body: string): Parsed<{ readonly accessToken: string }> {
  const answer = jsonObject(body);
  if (status < 200 || status > 299) return { ok: false, problem: entraProblem(status, answer) };
  const accessToken = nonEmptyString(answer?.access_token);
  if (accessToken === undefined) {
    return { ok: false, problem: `Entra ID answered HTTP ${status} without an access_token` };
  }
  return { ok: true, value: { accessToken } };
}

/** Registry error codes (OCI distribution spec) an exchange may answer with; others are not repeated. */
const REGISTRY_ERRORS = new Set(['UNAUTHORIZED', 'DENIED', 'UNSUPPORTED', 'TOOMANYREQUESTS']);

const ACR_HINTS: ReadonlyMap<number, string> = new Map([
  [400, 'check tenantId and that server names the registry'],
  [401, "the registry refused the Entra token: check tenantId is the registry's tenant and cloud matches the registry"],
  [403, "check the registry's network rules and that it allows Entra ID authentication"],
  [404, 'no token exchange at this host: check server names an Azure container registry'],
]);

function acrProblem(status: number, answer: Record<string, unknown> | undefined): string {
  if (status === 429 || status >= 500)
    return `the registry's token exchange is unavailable (HTTP ${status}): retrying with backoff`;
  const errors = answer?.errors;
  const first: unknown = Array.isArray(errors) ? errors[0] : undefined;
  const code =
    typeof first === 'object' && first !== null && 'code' in first && typeof first.code === 'string'
      ? first.code
      : undefined;
  const labels = [`HTTP ${status}`, ...(code !== undefined && REGISTRY_ERRORS.has(code) ? [code] : [])];
  const hint = ACR_HINTS.get(status) ?? "see the registry's logs";
  return `the registry refused the token exchange (${labels.join(', ')}): ${hint}`;
}

/** The registry's answer to the exchange: the ACR refresh token (the pull secret's password), or one line. */
export function parseAcrExchangeResponse(status: number, body: string): Parsed<{ readonly refreshToken: string }> {
  const answer = jsonObject(body);
  if (status < 200 || status > 299) return { ok: false, problem: acrProblem(status, answer) };
  const refreshToken = nonEmptyString(answer?.refresh_token);
  if (refreshToken === undefined) {
    return { ok: false, problem: `the registry answered the token exchange with HTTP ${status} but no refresh_token` };
  }
  return { ok: true, value: { refreshToken } };
}
