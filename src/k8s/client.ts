// API clients for sync-secrets and certs-gen. client-node builds a new connection pool (an undici Agent) for
// every request, re-reads its certificate files and sets no timeout; a reconcile of many namespaces would
// open a TLS connection per call and a black-holed apiserver would hang it forever. These clients reuse one
// pool and the authentication headers (recomputed once a second, so a rotated token is picked up as client-go
// does) and bound every request. Events go through a client of their own with a budget of its own (the
// kubelet's separate event client), so recording them never takes a turn from a Secret.
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  createConfiguration,
  DiscoveryV1Api,
  EventsV1Api,
  type HttpLibrary,
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  RequestContext,
  ResponseContext,
  ServerConfiguration,
  wrapHttpLibrary,
  type KubeConfig,
  type SecurityAuthentication,
} from '@kubernetes/client-node';
import { TokenBucket, type RateLimit } from './rate-limit.ts';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** Bound on one API request: a black-holed connection must not hang a reconcile or a CronJob run. */
export const REQUEST_TIMEOUT_MS = 10_000;
/**
 * How long the headers the kubeconfig gave (a bearer token, read from its file) serve further requests: client-node
 * re-reads a token file once a minute and an exec plugin's token until it expires, so this only spares the work.
 */
export const AUTH_REUSE_MS = 1_000;

export interface KubeClients {
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;
  readonly admission: AdmissionregistrationV1Api;
  readonly events: EventsV1Api;
  /** EndpointSlices, for `doctor`'s check of the webhook Service's ready endpoints. */
  readonly discovery: DiscoveryV1Api;
  /** Deployments, StatefulSets, DaemonSets, Jobs and CronJobs, for `doctor KIND NAMESPACE/NAME`. */
  readonly apps: AppsV1Api;
  readonly batch: BatchV1Api;
  /** Our own JSON on the same pool, budget and timeout (Secret reads and writes: secrets.ts). */
  readonly raw: RawRequest;
  /** The API server URL, for messages. */
  readonly server: string;
  readonly kubeConfig: KubeConfig;
  /** Closes the shared connection pool. */
  close(): Promise<void>;
}

/** An answer read whole: client-node reads every body whole anyway, and the stream is then free. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/**
 * One request on the pool's own request() instead of WHATWG fetch: the same bytes on the wire without fetch's
 * streams, Request and Response objects and chained abort signals, which cost more CPU than the apiserver spends
 * on a Secret create (a cold --once profile: undici's fetch about a third of the client's time).
 */
async function dispatch(
  dispatcher: Dispatcher,
  request: { url: URL; method: string; headers: Record<string, string>; body?: string; signal?: AbortSignal },
): Promise<RawResponse> {
  let response: Awaited<ReturnType<typeof dispatcher.request>>;
  let body: Buffer;
  try {
    response = await dispatcher.request({
      origin: request.url.origin,
      path: `${request.url.pathname}${request.url.search}`,
      method: request.method as HttpMethod,
      headers: request.headers,
      ...(request.body === undefined ? {} : { body: request.body }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    });
    body = Buffer.from(await response.body.arrayBuffer());
  } catch (error) {
    // As fetch fails, so errors.ts (and every message built on it) reads both alike: the timeout as is,
    // a transport failure as "fetch failed" with the reason in `cause`.
    const name = (error as { name?: string } | null)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') throw error;
    throw new TypeError('fetch failed', { cause: error });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { status: response.statusCode, headers, body };
}

/** client-node's requests through dispatch() (or fetch where the kubeconfig gave no pool: plain http). */
export const dispatcherLibrary: HttpLibrary = (() => {
  const fallback = new IsomorphicFetchHttpLibrary();
  return wrapHttpLibrary({
    async send(context: RequestContext): Promise<ResponseContext> {
      const dispatcher = context.getDispatcher();
      if (dispatcher === undefined) return fallback.send(context).toPromise();
      const body = context.getBody();
      const signal = context.getSignal();
      const response = await dispatch(dispatcher, {
        url: new URL(context.getUrl()),
        method: context.getHttpMethod(),
        headers: context.getHeaders(),
        ...(body === undefined ? {} : { body: body as string }),
        ...(signal === undefined ? {} : { signal }),
      });
      return new ResponseContext(response.status, response.headers, {
        text: async () => response.body.toString('utf8'),
        binary: async () => response.body,
        stream: () => null,
      });
    },
  });
})();

/**
 * A request of our own JSON, answered with the status and the bytes, through the same pool, authentication, rate
 * limit and timeout as the generated clients, without client-node's ObjectSerializer: a Secret create through it
 * walked the model's attribute map to copy our object, and again to turn the answer (which nobody reads) into
 * class instances, about a fifth of a cold --once's client CPU. Any status is returned; the caller judges it.
 */
export type RawRequest = (
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: string,
) => Promise<RawResponse>;

export function makeClients(
  kubeConfig: KubeConfig,
  options: {
    userAgent: string;
    /** Every request through these clients waits its turn (client-go's QPS and burst); none: unlimited. */
    rateLimit?: RateLimit;
    /** The events client's own budget instead (none: it shares `rateLimit`). */
    eventsRateLimit?: RateLimit;
  },
): KubeClients {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error('kubeconfig: no current cluster');
  let shared: Dispatcher | undefined;
  let headers: { readonly values: Readonly<Record<string, string>>; readonly at: number } | undefined;
  let computing: Promise<Readonly<Record<string, string>>> | undefined;
  // The TLS settings behind a dispatcher do not change, so the first pool serves every request.
  const authHeaders = (): Promise<Readonly<Record<string, string>>> => {
    if (headers !== undefined && Date.now() - headers.at < AUTH_REUSE_MS) return Promise.resolve(headers.values);
    computing ??= (async () => {
      try {
        const scratch = new RequestContext(cluster.server, HttpMethod.GET);
        await kubeConfig.applySecurityAuthentication(scratch);
        const fresh = scratch.getDispatcher();
        if (fresh !== undefined && fresh !== shared) {
          if (shared === undefined) shared = fresh;
          else void fresh.close();
        }
        headers = { values: { ...scratch.getHeaders() }, at: Date.now() };
        return headers.values;
      } finally {
        computing = undefined;
      }
    })();
    return computing;
  };
  const limited = (limiter: TokenBucket | undefined): SecurityAuthentication => ({
    getName: () => 'kubeconfig with a shared connection pool',
    applySecurityAuthentication: async (context: RequestContext) => {
      // Before anything else, so the request's timeout counts only time spent on the wire.
      await limiter?.wait();
      for (const [name, value] of Object.entries(await authHeaders())) context.setHeaderParam(name, value);
      if (shared !== undefined) context.setDispatcher(shared);
      context.setHeaderParam('User-Agent', options.userAgent);
      context.setSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    },
  });
  const configured = (limiter: TokenBucket | undefined) =>
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: limited(limiter) },
      httpApi: dispatcherLibrary,
    });
  const limiter = options.rateLimit === undefined ? undefined : new TokenBucket(options.rateLimit);
  const configuration = configured(limiter);
  // The server's own path prefix (a proxy's /k8s/clusters/x) is kept, as client-node's ServerConfiguration does.
  const base = cluster.server.replace(/\/+$/, '');
  const raw: RawRequest = async (method, path, body) => {
    await limiter?.wait();
    const headers: Record<string, string> = { ...(await authHeaders()), 'User-Agent': options.userAgent };
    headers['Accept'] = 'application/json';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const url = new URL(`${base}${path}`);
    const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    if (shared !== undefined)
      return dispatch(shared, { url, method, headers, signal, ...(body === undefined ? {} : { body }) });
    // No pool: the kubeconfig names a plain http server (tests); fetch then, as the generated clients do.
    const response = await fetch(url, { method, headers, signal, ...(body === undefined ? {} : { body }) });
    return {
      status: response.status,
      headers: Object.fromEntries(response.headers),
      body: Buffer.from(await response.arrayBuffer()),
    };
  };
  const eventsConfiguration =
    options.eventsRateLimit === undefined ? configuration : configured(new TokenBucket(options.eventsRateLimit));
  return {
    core: new CoreV1Api(configuration),
    coordination: new CoordinationV1Api(configuration),
    admission: new AdmissionregistrationV1Api(configuration),
    events: new EventsV1Api(eventsConfiguration),
    discovery: new DiscoveryV1Api(configuration),
    apps: new AppsV1Api(configuration),
    batch: new BatchV1Api(configuration),
    raw,
    server: cluster.server,
    kubeConfig,
    close: async () => {
      await shared?.close();
    },
  };
}
