// A local stand-in for Microsoft Entra ID and ACR's token server, implementing only what is documented, so
// tests can run the passwordless flow against the real `distribution` registry (its `auth: token` mode).
// Sources, cited per rule below:
// - ACR: Azure/acr docs/AAD-OAuth.md (exchange, token endpoint, null-GUID login, claim sets).
// - Entra: Microsoft identity platform client-credentials flow; AADSTS codes as seen in answers quoted in
//   GitHub issues (each cited where it is used).
// - Registry side: distribution v3.1.2 registry/auth/token/token.go (what it verifies) and containerd
//   v2.3.7 core/remotes/docker/authorizer.go + auth/fetch.go (which requests a puller sends).
import {
  createPrivateKey,
  createPublicKey,
  createSign,
  createVerify,
  type JsonWebKey,
  randomUUID,
  X509Certificate,
} from 'node:crypto';
import { createServer, request as httpsRequest, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { generateCa, type PemPair } from '../../certs-gen/generate.ts';

/** The username ACR reads as "the password is an ACR refresh token" (Azure/acr docs/AAD-OAuth.md). */
export const ACR_NULL_USER = '00000000-0000-0000-0000-000000000000';
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const ACR_SCOPE = 'https://containerregistry.azure.net/.default';
export const WORKLOAD_IDENTITY_AUDIENCE = 'api://AzureADTokenExchange';
/** The `iss` of ACR's own tokens (Azure/acr docs/AAD-OAuth.md, claim sets); the registry's `issuer`. */
export const ACR_ISSUER = 'Azure Container Registry';
const ACR_AUDIENCE = 'https://containerregistry.azure.net';

export interface JsonWebKeySet {
  readonly keys: readonly (JsonWebKey & { kid?: string })[];
}

export interface AcrTokenServiceOptions {
  readonly tenantId: string;
  readonly clientId: string;
  /** The registry's `service`, the tokens' `aud`; by default this service's own host:port, as in ACR. */
  readonly service?: string;
  /**
   * The registry behind this origin: every request that is not a token endpoint is passed there with its
   * Host header, so registry and token endpoints share one host:port as on ACR (the realm is
   * `https://<registry>/oauth2/token`, Azure/acr docs/AAD-OAuth.md).
   */
  readonly upstream?: { readonly url: string; readonly ca: string };
  /** Where to listen: 127.0.0.1 and a free port by default (the node tier may want its registry address). */
  readonly listen?: { readonly address: string; readonly port: number };
  readonly tls: PemPair;
  /** What the federated identity credential trusts: the assertion's issuer, subject and signing keys. */
  readonly federated?: {
    readonly issuer: string;
    readonly subject: string;
    readonly audience?: string;
    readonly jwks: JsonWebKeySet | (() => Promise<JsonWebKeySet>);
  };
  readonly clientSecret?: string;
  /** Seconds; ACR's real refresh tokens last about 3 hours (Microsoft Learn), tests use far less. */
  readonly refreshTokenLifetimeSeconds?: number;
  readonly accessTokenLifetimeSeconds?: number;
  readonly entraTokenLifetimeSeconds?: number;
}

/** One request as received: never a token, assertion or secret value. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly grantType?: string | undefined;
  readonly basicAuthUser?: string | undefined;
  readonly status: number;
  /** `AADSTS700211`-style code or the registry error code, when refused. */
  readonly error?: string;
}

export interface AcrTokenService {
  /** https://ADDRESS:PORT: the authority host and the realm's origin. The port survives stop/start. */
  readonly url: string;
  /** The `service` the tokens name (host:port); the registry's `auth.token.service`. */
  readonly host: string;
  /** The registry's `realm`. */
  readonly realm: string;
  /** The certificate that signs refresh and access tokens: the registry's `rootcertbundle`. */
  readonly signingCertificatePem: string;
  readonly requests: RecordedRequest[];
  readonly issued: { entra: number; refresh: number; access: number };
  refreshTokenLifetimeSeconds: number;
  /** Whether POST grant_type=password is served; false answers 400 as real ACR did (see route()). */
  passwordGrant: boolean;
  /** Endpoints answering 503 while the listener stays up (an outage of one side, not of the registry). */
  readonly unavailable: Set<'entra' | 'exchange' | 'token'>;
  stop(): Promise<void>;
  start(): Promise<void>;
}

class Refusal extends Error {
  readonly status: number;
  readonly body: unknown;
  readonly code: string;
  constructor(status: number, body: unknown, code: string) {
    super(code);
    this.status = status;
    this.body = body;
    this.code = code;
  }
}

/**
 * Entra's error shape: `error`, `error_description` starting with the AADSTS code, `error_codes`. Status
 * 401 for `invalid_client` and 400 otherwise, as in the answers quoted in Azure/azure-workload-identity
 * #1200 (401, AADSTS700211) and OfficeDev/microsoft-365-agents-toolkit #8621 (401, AADSTS7000215).
 */
function entraError(error: string, code: number, description: string): Refusal {
  return new Refusal(
    error === 'invalid_client' ? 401 : 400,
    { error, error_description: `AADSTS${code}: ${description}`, error_codes: [code] },
    `AADSTS${code}`,
  );
}

const unavailable = (): Refusal => new Refusal(503, { error: 'temporarily_unavailable' }, 'unavailable');

/** distribution's error envelope, which ACR also uses (Azure/acr docs/AAD-OAuth.md shows it on a 401). */
function acrError(status: number, code: string, message: string): Refusal {
  return new Refusal(status, { errors: [{ code, message }] }, code);
}

const b64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } | undefined {
  const [header = '', claims = '', ...rest] = token.split('.');
  if (rest.length !== 1) return undefined;
  try {
    return {
      header: JSON.parse(Buffer.from(header, 'base64url').toString()),
      claims: JSON.parse(Buffer.from(claims, 'base64url').toString()),
    };
  } catch {
    return undefined;
  }
}

function verifySignature(token: string, alg: unknown, key: ReturnType<typeof createPublicKey>): boolean {
  const [h = '', p = '', s = ''] = token.split('.');
  const algorithms: Record<string, { hash: string; ieee?: boolean }> = {
    RS256: { hash: 'RSA-SHA256' },
    ES256: { hash: 'SHA256', ieee: true },
  };
  const spec = typeof alg === 'string' ? algorithms[alg] : undefined;
  if (!spec) return false;
  try {
    return createVerify(spec.hash)
      .update(`${h}.${p}`)
      .verify(spec.ieee ? { key, dsaEncoding: 'ieee-p1363' } : key, Buffer.from(s, 'base64url'));
  } catch {
    return false;
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const audiences = (aud: unknown): unknown[] => (Array.isArray(aud) ? aud : [aud]);

export async function startAcrTokenService(options: AcrTokenServiceOptions): Promise<AcrTokenService> {
  // The signing pair: a self-signed certificate sent in each token's `x5c` header, which distribution
  // verifies against `rootcertbundle` (token.go: verifyCertChain, before `kid` or `jwk` are looked at).
  const signing = generateCa({ commonName: 'acr-token-service', validityDays: 2, now: new Date() });
  const signingKey = createPrivateKey(signing.keyPem);
  const signingPublic = createPublicKey(signing.certPem);
  const x5c = [new X509Certificate(signing.certPem).raw.toString('base64')];
  const sign = (claims: Record<string, unknown>): string => {
    const unsigned = `${b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c }))}.${b64url(JSON.stringify(claims))}`;
    return `${unsigned}.${createSign('RSA-SHA256').update(unsigned).sign(signingKey).toString('base64url')}`;
  };
  /** A token this service signed, unexpired, with the given `aud`; undefined otherwise. */
  const ownToken = (token: string, aud: string): Record<string, unknown> | undefined => {
    const jwt = decodeJwt(token);
    if (!jwt || !verifySignature(token, jwt.header.alg, signingPublic)) return undefined;
    if (!audiences(jwt.claims.aud).includes(aud)) return undefined;
    if (typeof jwt.claims.exp !== 'number' || jwt.claims.exp <= nowSeconds()) return undefined;
    return jwt.claims;
  };

  const issued = { entra: 0, refresh: 0, access: 0 };
  let serviceName = options.service ?? '';
  const requests: RecordedRequest[] = [];
  const accessLifetime = options.accessTokenLifetimeSeconds ?? 300;
  const entraLifetime = options.entraTokenLifetimeSeconds ?? 3600;

  async function checkAssertion(assertion: string): Promise<void> {
    const federated = options.federated;
    if (!federated) throw entraError('invalid_client', 700016, `Application '${options.clientId}' has no credential.`);
    const jwt = decodeJwt(assertion);
    // AADSTS50027 "JWT token is invalid or malformed" (Microsoft Entra error code reference; not seen in an answer).
    if (!jwt) throw entraError('invalid_request', 50027, 'JWT token is invalid or malformed.');
    const jwks = typeof federated.jwks === 'function' ? await federated.jwks() : federated.jwks;
    const candidates = jwks.keys.filter((k) => jwt.header.kid === undefined || k.kid === jwt.header.kid);
    // AADSTS700027 "Client assertion contains an invalid signature" (AzureAD/passport-azure-ad #453).
    if (!candidates.some((k) => verifySignature(assertion, jwt.header.alg, createPublicKey({ key: k, format: 'jwk' }))))
      throw entraError('invalid_client', 700027, 'Client assertion contains an invalid signature.');
    const { iss, sub, aud, exp, nbf } = jwt.claims;
    const what = 'Please check your federated identity credential Subject, Audience and Issuer.';
    // AADSTS700211 issuer (Azure/azure-workload-identity #1200); AADSTS700213 subject (Azure/login PR #619);
    // AADSTS700212 audience: not seen in a quoted answer, numbered by analogy with the two beside it.
    if (iss !== federated.issuer)
      throw entraError(
        'invalid_client',
        700211,
        `No matching federated identity record found for presented assertion issuer '${iss}'. ${what}`,
      );
    if (sub !== federated.subject)
      throw entraError(
        'invalid_client',
        700213,
        `No matching federated identity record found for presented assertion subject '${sub}'. ${what}`,
      );
    if (!audiences(aud).includes(federated.audience ?? WORKLOAD_IDENTITY_AUDIENCE))
      throw entraError(
        'invalid_client',
        700212,
        `No matching federated identity record found for presented assertion audience '${String(aud)}'. ${what}`,
      );
    // AADSTS700024 "Client assertion is not within its valid time range" (Azure DevOps workload identity docs).
    const now = nowSeconds();
    if (typeof exp !== 'number' || exp <= now || (typeof nbf === 'number' && nbf > now))
      throw entraError('invalid_client', 700024, 'Client assertion is not within its valid time range.');
  }

  async function entraToken(path: string, form: URLSearchParams): Promise<unknown> {
    const tenant = path.split('/')[1];
    // AADSTS90002 "Tenant not found" (Microsoft Entra error code reference).
    if (tenant !== options.tenantId) throw entraError('invalid_request', 90002, `Tenant '${tenant}' not found.`);
    // AADSTS70003, AADSTS900144 and AADSTS7000218 are from Microsoft's error code reference as remembered,
    // not checked against a quoted answer here; no test relies on them.
    if (form.get('grant_type') !== 'client_credentials')
      throw entraError('unsupported_grant_type', 70003, 'The app requested an unsupported grant type.');
    // AADSTS700016 "Application with identifier '…' wasn't found" (Azure DevOps workload identity docs).
    if (form.get('client_id') !== options.clientId)
      throw entraError(
        'unauthorized_client',
        700016,
        `Application with identifier '${form.get('client_id')}' was not found.`,
      );
    // AADSTS70011 invalid_scope: the sample error in Microsoft's AADSTS error code reference.
    if (form.get('scope') !== ACR_SCOPE)
      throw entraError('invalid_scope', 70011, `The provided value for the input parameter 'scope' is not valid.`);
    const assertion = form.get('client_assertion');
    const secret = form.get('client_secret');
    if (assertion !== null) {
      if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE)
        throw entraError('invalid_request', 900144, `The request body must contain 'client_assertion_type'.`);
      await checkAssertion(assertion);
    } else if (secret !== null) {
      // AADSTS7000215 "Invalid client secret provided" (OfficeDev/microsoft-365-agents-toolkit #8621).
      if (options.clientSecret === undefined || secret !== options.clientSecret)
        throw entraError('invalid_client', 7000215, 'Invalid client secret provided.');
    } else {
      throw entraError(
        'invalid_client',
        7000218,
        `The request body must contain 'client_assertion' or 'client_secret'.`,
      );
    }
    const now = nowSeconds();
    issued.entra++;
    const accessToken = sign({
      aud: ACR_AUDIENCE,
      iss: `https://sts.windows.net/${options.tenantId}/`,
      iat: now,
      nbf: now,
      exp: now + entraLifetime,
      tid: options.tenantId,
      appid: options.clientId,
      sub: options.clientId,
    });
    return {
      token_type: 'Bearer',
      expires_in: entraLifetime,
      ext_expires_in: entraLifetime,
      access_token: accessToken,
    };
  }

  /** POST /oauth2/exchange (Azure/acr docs/AAD-OAuth.md): an Entra access token for an ACR refresh token. */
  function exchange(form: URLSearchParams): unknown {
    if (form.get('grant_type') !== 'access_token')
      throw acrError(400, 'UNSUPPORTED', 'grant_type must be access_token (the other grants are deprecated)');
    if (form.get('service') !== serviceName) throw acrError(400, 'INVALID_SERVICE', 'unknown service');
    if (form.get('tenant') !== options.tenantId) throw acrError(401, 'UNAUTHORIZED', 'tenant does not match');
    const entra = ownToken(form.get('access_token') ?? '', ACR_AUDIENCE);
    if (!entra || entra.tid !== options.tenantId) throw acrError(401, 'UNAUTHORIZED', 'invalid access token');
    const now = nowSeconds();
    issued.refresh++;
    return {
      refresh_token: sign({
        jti: randomUUID(),
        sub: String(entra.sub),
        nbf: now,
        exp: now + service.refreshTokenLifetimeSeconds,
        iat: now,
        iss: ACR_ISSUER,
        aud: serviceName,
        version: '1.0',
        grant_type: 'refresh_token',
        tenant: options.tenantId,
        permissions: { actions: ['*'], notActions: [] },
        roles: [],
      }),
    };
  }

  /**
   * /oauth2/token: an ACR refresh token for a registry access token scoped as asked. The claim set follows
   * Azure/acr docs/AAD-OAuth.md; `access` is distribution's ResourceActions (registry/auth/token/token.go).
   */
  function accessToken(refreshToken: string | null, asked: string | null, scopes: string[]): unknown {
    if (asked !== serviceName) throw acrError(400, 'INVALID_SERVICE', 'unknown service');
    const refresh = refreshToken === null ? undefined : ownToken(refreshToken, serviceName);
    if (refresh?.grant_type !== 'refresh_token')
      throw acrError(401, 'UNAUTHORIZED', 'the refresh token is invalid or expired');
    const access = scopes
      .flatMap((s) => s.split(' '))
      .filter(Boolean)
      .map((s) => {
        // type:name:actions, where a name may hold a port (host:port/repo is not a scope, but be exact).
        const first = s.indexOf(':');
        const last = s.lastIndexOf(':');
        return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
      });
    const now = nowSeconds();
    issued.access++;
    return {
      access_token: sign({
        jti: randomUUID(),
        sub: refresh.sub,
        nbf: now,
        exp: now + accessLifetime,
        iat: now,
        iss: ACR_ISSUER,
        aud: serviceName,
        version: '1.0',
        access,
        roles: [],
        grant_type: 'access_token',
      }),
    };
  }

  async function route(req: IncomingMessage, url: URL, body: string, record: (r: Partial<RecordedRequest>) => void) {
    const form = new URLSearchParams(body);
    if (req.method === 'POST' && /^\/[^/]+\/oauth2\/v2\.0\/token$/.test(url.pathname)) {
      record({ grantType: form.get('grant_type') ?? undefined });
      if (service.unavailable.has('entra')) throw unavailable();
      return entraToken(url.pathname, form);
    }
    if (req.method === 'POST' && url.pathname === '/oauth2/exchange') {
      record({ grantType: form.get('grant_type') ?? undefined });
      if (service.unavailable.has('exchange')) throw unavailable();
      return exchange(form);
    }
    if (url.pathname === '/oauth2/token' && req.method === 'POST') {
      const grantType = form.get('grant_type');
      record({ grantType: grantType ?? undefined });
      if (service.unavailable.has('token')) throw unavailable();
      if (grantType === 'refresh_token')
        return accessToken(form.get('refresh_token'), form.get('service'), form.getAll('scope'));
      // containerd sends this one first when it holds a username and secret (~/go/pkg/mod/github.com/
      // containerd/containerd/v2@v2.3.7/core/remotes/docker/authorizer.go: fetchToken -> auth/fetch.go
      // FetchTokenWithOAuth, client_id=containerd-client). Its comment says real ACR answers 400 (January
      // 2022), and on 400 it retries with GET and basic auth. Served unless `passwordGrant` is false, so
      // tests can take either road; the request log shows which one a client used.
      if (grantType === 'password') {
        if (!service.passwordGrant) throw acrError(400, 'UNSUPPORTED', 'unsupported grant_type');
        if (form.get('username') !== ACR_NULL_USER) throw acrError(401, 'UNAUTHORIZED', 'unknown user');
        return accessToken(form.get('password'), form.get('service'), form.getAll('scope'));
      }
      throw acrError(400, 'UNSUPPORTED', 'unsupported grant_type');
    }
    if (url.pathname === '/oauth2/token' && req.method === 'GET') {
      // docker's classic flow (and go-containerregistry's refreshBasic): GET with basic auth.
      const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const decoded = basic === undefined ? undefined : Buffer.from(basic, 'base64').toString();
      const colon = decoded?.indexOf(':') ?? -1;
      const user = decoded !== undefined && colon >= 0 ? decoded.slice(0, colon) : undefined;
      record({ basicAuthUser: user });
      if (service.unavailable.has('token')) throw unavailable();
      if (user !== ACR_NULL_USER) throw acrError(401, 'UNAUTHORIZED', 'basic auth with the null-GUID user required');
      return accessToken(
        decoded?.slice(colon + 1) ?? null,
        url.searchParams.get('service'),
        url.searchParams.getAll('scope'),
      );
    }
    throw acrError(404, 'NOT_FOUND', 'no such endpoint');
  }

  const ownPath = (path: string): boolean => path.startsWith('/oauth2/') || /^\/[^/]+\/oauth2\//.test(path);

  function proxy(req: IncomingMessage, res: ServerResponse, upstream: { url: string; ca: string }): void {
    const target = new URL(req.url ?? '/', upstream.url);
    const out = httpsRequest(
      target,
      { method: req.method, headers: req.headers, ca: upstream.ca, agent: false },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    req.pipe(out);
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname;
    if (options.upstream && !ownPath(path)) {
      proxy(req, res, options.upstream);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      let entry: Partial<RecordedRequest> = {};
      const reply = (status: number, body: unknown, error?: string): void => {
        requests.push({ method: req.method ?? '', path: url.pathname, ...entry, status, ...(error ? { error } : {}) });
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
      };
      route(req, url, Buffer.concat(chunks).toString(), (r) => (entry = r)).then(
        (body) => reply(200, body),
        (err: unknown) => {
          if (err instanceof Refusal) reply(err.status, err.body, err.code);
          else reply(500, { error: 'server_error' }, 'server_error');
        },
      );
    });
  }

  let server: Server | undefined;
  const address = options.listen?.address ?? '127.0.0.1';
  let port = options.listen?.port ?? 0;
  const listen = async (): Promise<void> => {
    const s = createServer({ key: options.tls.keyPem, cert: options.tls.certPem }, handle);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, address, () => resolve());
    });
    port = (s.address() as { port: number }).port;
    server = s;
  };
  await listen();
  const origin = `${address.includes(':') ? `[${address}]` : address}:${port}`;
  serviceName ||= origin;

  const service: AcrTokenService = {
    url: `https://${origin}`,
    host: serviceName,
    realm: `https://${origin}/oauth2/token`,
    signingCertificatePem: signing.certPem,
    requests,
    issued,
    refreshTokenLifetimeSeconds: options.refreshTokenLifetimeSeconds ?? 3 * 3600,
    passwordGrant: true,
    unavailable: new Set(),
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    async start() {
      if (!server) await listen();
    },
  };
  return service;
}
