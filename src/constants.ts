// Every name that crosses a wire — labels, annotations, HTTP paths, metric names, environment
// variables — lives here, with a line on who reads it. Tests pin these with literal strings, so a
// rename here that would break installed clusters fails a test instead of shipping silently.

/**
 * Label key that opts a namespace in (value {@link INJECT_ENABLED}) or a pod out (value {@link INJECT_DISABLED}). Read
 * by the chart's namespaceSelector/objectSelector, by the server, and by sync-secrets.
 */
export const INJECT_LABEL = 'acr-pull-webhook/inject';
/** Namespace label value that opts the namespace in. */
export const INJECT_ENABLED = 'enabled';
/** Pod label value that opts a single pod out, even in an opted-in namespace. */
export const INJECT_DISABLED = 'disabled';

/** Standard label on every object this project writes (pull secrets); ownership is decided by it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** Value of {@link MANAGED_BY_LABEL} for objects this project owns. */
export const MANAGED_BY_VALUE = 'acr-pull-webhook';

/** HTTPS path the apiserver POSTs AdmissionReviews to (the webhook configuration's clientConfig path). */
export const MUTATE_PATH = '/mutate';
/** Plain-HTTP liveness path on the health port. */
export const HEALTHZ_PATH = '/healthz';
/** Plain-HTTP readiness path: a valid certificate is loaded and the server is not shutting down. */
export const READYZ_PATH = '/readyz';
/** Plain-HTTP Prometheus scrape path on the health port. */
export const METRICS_PATH = '/metrics';

/** AdmissionReview apiVersion understood and answered (the webhook registers admissionReviewVersions: [v1]). */
export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
/** AdmissionReview kind. */
export const ADMISSION_KIND = 'AdmissionReview';

/** Counter: reviews answered, by outcome (see {@link ReviewOutcome}). */
export const METRIC_REVIEWS = 'acr_pull_webhook_admission_reviews_total';
/** Counter: pods that received a patch. */
export const METRIC_PODS_PATCHED = 'acr_pull_webhook_pods_patched_total';
/** Counter: imagePullSecrets entries added, by secret name. */
export const METRIC_SECRETS_ADDED = 'acr_pull_webhook_secrets_added_total';
/** Histogram: seconds from request received to response sent for /mutate. */
export const METRIC_REVIEW_DURATION = 'acr_pull_webhook_admission_duration_seconds';
/** Gauge: notAfter of the serving certificate in use, as Unix seconds (alert well before it). */
export const METRIC_CERT_EXPIRY = 'acr_pull_webhook_serving_certificate_expiry_timestamp_seconds';
/** Counter: certificate reloads, by result (loaded | rejected). */
export const METRIC_CERT_RELOADS = 'acr_pull_webhook_serving_certificate_reloads_total';
/** Counter: log lines dropped because stdout did not keep up (admission never waits for logging). */
export const METRIC_LOG_LINES_DROPPED = 'acr_pull_webhook_log_lines_dropped_total';

/** Counter: warnings returned in AdmissionReview responses (what `kubectl` prints as `Warning:`), by reason. */
export const METRIC_ADMISSION_WARNINGS = 'acr_pull_webhook_admission_warnings_total';
/**
 * Why a warning was returned; label values of {@link METRIC_ADMISSION_WARNINGS}. unmatched_acr_host: an image on an
 * Azure container registry host that no registries[] entry matches (pulled without credentials from the webhook).
 */
export const ADMISSION_WARNING_REASONS = ['unmatched_acr_host'] as const;
export type AdmissionWarningReason = (typeof ADMISSION_WARNING_REASONS)[number];

/**
 * Duration histogram buckets (seconds); 5, 25 and 100 ms line up with the apiserver's own webhook histogram. Up to 15 s
 * so the chart's alert can tell a p99 above half of any timeoutSeconds (at most 30) from one at 1 s.
 */
export const REVIEW_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15];

/** `msg` of the one log line written per review (the lines `serve` writes in batches). */
export const REVIEW_LOG_MESSAGE = 'review';

/** Outcomes a review can have; label values of {@link METRIC_REVIEWS} and the `decision` field of review logs. */
export const REVIEW_OUTCOMES = ['patched', 'unchanged', 'ignored', 'opted-out', 'rejected'] as const;
export type ReviewOutcome = (typeof REVIEW_OUTCOMES)[number];

/** Environment variables `serve` reads when the matching flag is absent. */
export const ENV = {
  config: 'ACR_PULL_WEBHOOK_CONFIG',
  tlsCert: 'ACR_PULL_WEBHOOK_TLS_CERT',
  tlsKey: 'ACR_PULL_WEBHOOK_TLS_KEY',
  port: 'ACR_PULL_WEBHOOK_PORT',
  healthPort: 'ACR_PULL_WEBHOOK_HEALTH_PORT',
  host: 'ACR_PULL_WEBHOOK_HOST',
  logLevel: 'ACR_PULL_WEBHOOK_LOG_LEVEL',
  drainDelay: 'ACR_PULL_WEBHOOK_DRAIN_DELAY_SECONDS',
  shutdownTimeout: 'ACR_PULL_WEBHOOK_SHUTDOWN_TIMEOUT_SECONDS',
} as const;

/** Defaults for `serve`. */
export const DEFAULTS = {
  port: 8443,
  healthPort: 8080,
  host: '0.0.0.0',
  logLevel: 'info',
  /** Seconds to keep serving after SIGTERM with readiness failing, so endpoints drop the pod first. */
  drainDelaySeconds: 5,
  /** Hard bound on shutdown after the drain: remaining connections are cut and the process exits. */
  shutdownTimeoutSeconds: 15,
  /** How often the certificate files are re-read in addition to fs.watch (Secret volumes swap symlinks). */
  certPollMs: 5_000,
} as const;

/**
 * `check-injection` (the chart's `helm test`): the repository and tag of its probe images (never pulled: the Pod is a
 * dry run) and the generateName of its dry-run Pod, as the webhook sees them in its review logs.
 */
export const CHECK_INJECTION = {
  repository: 'acr-pull-webhook-check',
  tag: 'dry-run',
  podGenerateName: 'acr-pull-webhook-check-',
} as const;

// ---------------------------------------------------------------------------------------------
// sync-secrets: the pull-secret job

/** Secret type of every pull secret sync-secrets writes (what `kubectl create secret docker-registry` makes). */
export const DOCKERCONFIGJSON_TYPE = 'kubernetes.io/dockerconfigjson';
/** The one data key of a {@link DOCKERCONFIGJSON_TYPE} Secret; the kubelet reads credentials from it. */
export const DOCKERCONFIGJSON_KEY = '.dockerconfigjson';
/**
 * Annotation on written pull secrets: `sha256:<hex>` of the `.dockerconfigjson` bytes, so drift and rotation are
 * visible without reading data.
 */
export const CONTENT_HASH_ANNOTATION = 'acr-pull-webhook/content-hash';
/**
 * coordination.k8s.io/v1 Lease that elects the one `sync-secrets --watch` replica allowed to write; lives in the
 * release namespace. The RBAC in deploy/rbac names it.
 */
export const SYNC_LEASE_NAME = 'acr-pull-webhook-sync-secrets';

/**
 * Results of reconciling one pull secret in one namespace: what the `--once` summary counts, and the label values of
 * {@link METRIC_SYNC_SECRETS}.
 */
export const SYNC_SECRET_RESULTS = ['created', 'updated', 'unchanged', 'skipped', 'failed', 'pruned'] as const;
export type SyncSecretResult = (typeof SYNC_SECRET_RESULTS)[number];

// `sync-secrets --watch` metrics, served at {@link METRICS_PATH} on its health port.
/**
 * Counter: pull secrets reconciled by --watch (one per namespace and secret name), by result
 * (see {@link SYNC_SECRET_RESULTS}).
 */
export const METRIC_SYNC_SECRETS = 'acr_pull_webhook_sync_secret_reconciles_total';
/**
 * Counter: full passes over every opted-in namespace (leadership, (re)list, credential change, resync), by result
 * (success | failure).
 */
export const METRIC_SYNC_PASSES = 'acr_pull_webhook_sync_passes_total';
/**
 * Gauge: Unix seconds when a full pass last reconciled every opted-in namespace without a failure; 0 until then (and on
 * followers). Alert on its age.
 */
export const METRIC_SYNC_LAST_SUCCESS = 'acr_pull_webhook_sync_last_success_timestamp_seconds';
/** Gauge: 1 while this replica holds the Lease and may write, else 0. */
export const METRIC_SYNC_LEADER = 'acr_pull_webhook_sync_leader';
/** Gauge: opted-in namespaces (not terminating) this replica knows from its namespace list/watch. */
export const METRIC_SYNC_NAMESPACES = 'acr_pull_webhook_sync_opted_in_namespaces';
/**
 * Counter: changed credential files, by result (loaded | rejected; a rejected set is counted once per distinct
 * problem).
 */
export const METRIC_SYNC_CREDENTIAL_RELOADS = 'acr_pull_webhook_sync_credential_reloads_total';
/**
 * Counter: Events not written, by type (Normal | Warning): more than the recorder's queue holds (Normal ones go
 * first), or still queued when a shutdown's flush ended.
 */
export const METRIC_SYNC_EVENTS_DROPPED = 'acr_pull_webhook_sync_events_dropped_total';

/**
 * Environment variables `sync-secrets` reads when the matching flag is absent ({@link ENV} `config`, `host` and
 * `logLevel` apply too).
 */
export const SYNC_ENV = {
  healthPort: 'ACR_PULL_WEBHOOK_SYNC_HEALTH_PORT',
  kubeconfig: 'KUBECONFIG',
  /** Namespace of the Lease; the chart sets it from the downward API (metadata.namespace). */
  leaseNamespace: 'ACR_PULL_WEBHOOK_LEASE_NAMESPACE',
  /** Holder identity in the Lease; the chart sets it to the pod name. Default: hostname + pid. */
  identity: 'ACR_PULL_WEBHOOK_LEASE_IDENTITY',
  /** --token-refresh-fraction: the share of an ACR refresh token's lifetime after which a new one is requested. */
  tokenRefreshFraction: 'ACR_PULL_WEBHOOK_TOKEN_REFRESH_FRACTION',
  /** --kube-api-qps: sustained API requests per second (0: unlimited). */
  kubeApiQps: 'ACR_PULL_WEBHOOK_KUBE_API_QPS',
  /** --kube-api-burst: API requests allowed at once after a quiet period. */
  kubeApiBurst: 'ACR_PULL_WEBHOOK_KUBE_API_BURST',
  /** --concurrency: namespaces reconciled at once. */
  concurrency: 'ACR_PULL_WEBHOOK_SYNC_CONCURRENCY',
} as const;

/** Defaults and timings for `sync-secrets`. */
export const SYNC_DEFAULTS = {
  /** Plain-HTTP /healthz and /readyz (8080 is serve's, so both can share a pod or a host in tests). */
  healthPort: 8081,
  /** Namespace of the Lease when neither flag, environment nor the in-cluster namespace file says. */
  leaseNamespace: 'default',
  /** Full reconcile of every namespace, in addition to watch events (catches Secrets edited or deleted by hand). */
  resyncSeconds: 300,
  /**
   * /healthz fails when the namespace list/watch has made no progress (list, event, bookmark, clean close) for this
   * long.
   */
  watchStallSeconds: 60,
  /** Credential files are re-read this often in addition to fs.watch (Secret volumes swap a `..data` symlink). */
  credentialPollMs: 2_000,
  /**
   * Server-side timeout of one namespace watch (at most a third of the stall timeout), jittered up to +20%; under
   * client-node's 30 s inactivity abort.
   */
  watchTimeoutSeconds: 20,
  /** Attempts per Secret write before it counts as failed; waits double from retryBaseMs up to retryMaxMs. */
  writeAttempts: 5,
  retryBaseMs: 250,
  retryMaxMs: 4_000,
  /** Re-list/re-watch backoff after errors: doubles from 250 ms to this cap. */
  watchBackoffMaxMs: 5_000,
  /**
   * Namespaces reconciled at once (--concurrency), each one's secrets in turn: at most this many writes on the wire,
   * a closed loop that slows down with the apiserver. 32, as the minimal client the benchmark compares with: at 2,000
   * namespaces (a shared, loaded 2-core machine, ratios to that client measured back to back) 16 took 1.8× its time,
   * 32 1.3–1.6×, 64 1.25× (within that noise): past 32 more in flight mostly queues in the apiserver, and 32 is
   * about 5 % of its default 600 seats (--max-requests-inflight 400, --max-mutating-requests-inflight 200).
   */
  concurrency: 32,
  /**
   * Client-side rate limit of API requests (client-go's token bucket), a guard against a runaway loop rather than
   * the load's shape (that is --concurrency, and API Priority and Fairness on the server). One apiserver served
   * about 2,100 Secret creates a second to a minimal client 32 at a time (2,000 namespaces, quiet machine); a cap
   * below that only slows the --once hook: 200/s held 20,000 writes (10,000 namespaces × 2) to 100 s, where the
   * apiserver takes about 10. 2,000/s with a burst of 4,000 lets a cold start run at the apiserver's pace; a loaded
   * 2-core apiserver served 250–450/s, where qps 500 and 1000 changed neither time nor another client's GET latency
   * (p99 160–220 ms at 0, 500 and 1000). With the secret watch a quiet cluster costs no request at all.
   */
  kubeApiQps: 2_000,
  kubeApiBurst: 4_000,
  /**
   * The Events' own budget, apart from the one above (the kubelet's --event-qps 50 and --event-burst 100 on its own
   * client): a cold start's SecretCreated for every Secret never doubles the write load nor delays a Secret. What
   * does not fit the recorder's queue of 1000 is dropped, Normal events first.
   */
  eventsQps: 50,
  eventsBurst: 100,
  /**
   * In --watch, a namespace whose reconcile failed after all attempts is tried again after this long, doubling per
   * further failure up to requeueMaxMs.
   */
  requeueMs: 2_000,
  requeueMaxMs: 300_000,
  /**
   * Lease timings (as client-go's leader election): a holder that stops renewing loses the lease after
   * leaseDurationSeconds;
   */
  leaseDurationSeconds: 15,
  /** the leader stops writing if it could not renew for this long (< leaseDuration, so two never write at once); */
  renewDeadlineMs: 10_000,
  /** and every replica tries to acquire or renew this often. */
  retryPeriodMs: 2_000,
  /**
   * Attempts per azure entry's first token at start (retriable failures only, waits from TOKEN_RETRY_BACKOFF: about
   * 15 s in all) before the process gives up with exit code 1.
   */
  startupTokenAttempts: 5,
} as const;

// ---------------------------------------------------------------------------------------------
// Azure credentials (issue #16): Entra ID client credentials exchanged for an ACR refresh token

/** Entra ID token request grant (Microsoft identity platform, OAuth 2.0 client credentials flow). */
export const ENTRA_GRANT_TYPE = 'client_credentials';
/** client_assertion_type of a federated (workload identity) credential: the assertion is a ServiceAccount token. */
export const ENTRA_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Entra ID v2.0 token endpoint below the authority host, after the tenant: `/{tenant}/oauth2/v2.0/token`. */
export const ENTRA_TOKEN_PATH = 'oauth2/v2.0/token';
/** Path on the registry host exchanging an Entra access token for an ACR refresh token (Azure/acr AAD-OAuth.md). */
export const ACR_EXCHANGE_PATH = '/oauth2/exchange';
/** grant_type of the ACR exchange: an Entra access token in, an ACR refresh token out. */
export const ACR_EXCHANGE_GRANT_TYPE = 'access_token';
/** Pull-secret username telling the registry the password is an ACR refresh token (Azure/acr AAD-OAuth, login). */
export const ACR_REFRESH_TOKEN_USERNAME = '00000000-0000-0000-0000-000000000000';
/** The Azure clouds a registry's `azure.cloud` may name (the Azure SDKs' names). */
export const AZURE_CLOUDS = ['AzurePublicCloud', 'AzureChinaCloud', 'AzureUSGovernment'] as const;
/** Gauge: Unix seconds when the ACR refresh token in a registry's pull secrets expires (its JWT `exp`), by server. */
export const METRIC_SYNC_TOKEN_EXPIRY = 'acr_pull_webhook_sync_token_expiry_timestamp_seconds';
/** Counter: token requests (Entra ID and then ACR) per registry, by server and result. */
export const METRIC_SYNC_TOKEN_REQUESTS = 'acr_pull_webhook_sync_token_requests_total';
/**
 * Results of one token request, the `result` label values of {@link METRIC_SYNC_TOKEN_REQUESTS}: issued; rejected
 * (refused, or an unreadable credential file: retrying alone will not help); failed (network, timeout, 429, 5xx).
 */
export const SYNC_TOKEN_REQUEST_RESULTS = ['issued', 'rejected', 'failed'] as const;
export type SyncTokenRequestResult = (typeof SYNC_TOKEN_REQUEST_RESULTS)[number];

// ---------------------------------------------------------------------------------------------
// sync-secrets Events (issue #18): events.k8s.io/v1 Events regarding an opted-in Namespace, read with
// `kubectl get events -n default` (Events about cluster-scoped objects live there) or `kubectl events`.

/** reportingController of every Event sync-secrets records (the Event's "from"). */
export const SYNC_EVENT_CONTROLLER = 'acr-pull-webhook/sync-secrets';
/**
 * Event reasons: SecretCreated and SecretUpdated (Normal: a pull secret written, or its content changed);
 * SecretNotManaged (a same-named Secret without our managed-by label, or one we cannot change in place, was left
 * alone); SyncFailed (a write still failed after its retries); TokenRequestRejected (Entra ID or the registry refused
 * a token request in --watch); CredentialsRejected (changed credential files cannot be used).
 */
export const SYNC_EVENT_REASONS = {
  created: 'SecretCreated',
  updated: 'SecretUpdated',
  notManaged: 'SecretNotManaged',
  failed: 'SyncFailed',
  tokenRejected: 'TokenRequestRejected',
  credentialsRejected: 'CredentialsRejected',
} as const;
/** Event actions: what sync-secrets did or tried. */
export const SYNC_EVENT_ACTIONS = {
  create: 'CreateSecret',
  update: 'UpdateSecret',
  skip: 'SkipSecret',
  /** A write that failed after its retries (a create or an update). */
  sync: 'SyncSecret',
  refreshToken: 'RefreshToken',
  loadCredentials: 'LoadCredentials',
} as const;
