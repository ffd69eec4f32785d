// API clients for sync-secrets and certs-gen. client-node builds a new connection pool (an undici Agent) for
// every request and sets no timeout; a reconcile of many namespaces would open a TLS connection
// per call and a black-holed apiserver would hang it forever. These clients reuse one pool and
// bound every request.
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  createConfiguration,
  DiscoveryV1Api,
  EventsV1Api,
  ServerConfiguration,
  type KubeConfig,
  type RequestContext,
  type SecurityAuthentication,
} from '@kubernetes/client-node';
import { TokenBucket, type RateLimit } from './rate-limit.ts';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/** Bound on one API request: a black-holed connection must not hang a reconcile or a CronJob run. */
export const REQUEST_TIMEOUT_MS = 10_000;

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
  /** The API server URL, for messages. */
  readonly server: string;
  readonly kubeConfig: KubeConfig;
  /** Closes the shared connection pool. */
  close(): Promise<void>;
}

export function makeClients(
  kubeConfig: KubeConfig,
  options: {
    userAgent: string;
    /** Every request through these clients waits its turn (client-go's QPS and burst); none: unlimited. */
    rateLimit?: RateLimit;
  },
): KubeClients {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new Error('kubeconfig: no current cluster');
  let shared: Dispatcher | undefined;
  const limiter = options.rateLimit === undefined ? undefined : new TokenBucket(options.rateLimit);
  const auth: SecurityAuthentication = {
    getName: () => 'kubeconfig with a shared connection pool',
    applySecurityAuthentication: async (context: RequestContext) => {
      // Before anything else, so the request's timeout counts only time spent on the wire.
      await limiter?.wait();
      // Headers (a ServiceAccount token is re-read as it rotates) come fresh for every request;
      // the TLS settings behind the dispatcher do not change, so the first pool serves them all.
      await kubeConfig.applySecurityAuthentication(context);
      const fresh = context.getDispatcher();
      if (fresh !== undefined) {
        if (shared === undefined) shared = fresh;
        else if (fresh !== shared) {
          void fresh.close();
          context.setDispatcher(shared);
        }
      }
      context.setHeaderParam('User-Agent', options.userAgent);
      context.setSignal(AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    },
  };
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: auth },
  });
  return {
    core: new CoreV1Api(configuration),
    coordination: new CoordinationV1Api(configuration),
    admission: new AdmissionregistrationV1Api(configuration),
    events: new EventsV1Api(configuration),
    discovery: new DiscoveryV1Api(configuration),
    apps: new AppsV1Api(configuration),
    batch: new BatchV1Api(configuration),
    server: cluster.server,
    kubeConfig,
    close: async () => {
      await shared?.close();
    },
  };
}
