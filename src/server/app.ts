// The HTTP shell around the pure core: the admission app (HTTPS in production, plain for `inject`
// tests). It does not listen, handle signals or exit: the CLI does. Probes and metrics: health.ts.
import type { Server as TlsServer } from 'node:tls';
import Fastify, { errorCodes, LogController, type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import {
  handleReview,
  REVIEW_BODY_SCHEMA,
  type AdmissionReviewRequest,
  type ReviewSummary,
} from '../admission/review.ts';
import { MUTATE_PATH, REVIEW_LOG_MESSAGE } from '../constants.ts';
import type { RegistryRule } from '../registry/registry-rule.ts';
import { TLS_SETTINGS, type ServingPair } from '../tls/certificate-source.ts';
import type { WebhookMetrics } from './metrics.ts';

/** Large enough for the biggest pod etcd stores (about 1.5 MiB) twice over, small enough to bound memory. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** A whole request must arrive within this; the apiserver gives up after at most 30 s anyway. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** Headers must arrive within this (slowloris). */
export const HEADERS_TIMEOUT_MS = 10_000;

/** Idle keep-alive sockets live longer than Go's 90 s IdleConnTimeout, so the client closes first. */
export const KEEP_ALIVE_TIMEOUT_MS = 120_000;
/** How often Node checks the two timeouts above; its 30 s default would let a slow client hold a socket 40 s. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;
export const NODE_SERVER_OPTIONS = {
  headersTimeout: HEADERS_TIMEOUT_MS,
  connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
};

/** The admission server's Fastify settings; the benchmark's floor uses them too, so the two cannot drift. */
export const ADMISSION_SERVER_OPTIONS = {
  bodyLimit: MAX_BODY_BYTES,
  requestTimeout: REQUEST_TIMEOUT_MS,
  keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
  // A request on a kept-alive connection answered 503 is a failed webhook call; during shutdown
  // requests are served and the connection is closed after the response instead.
  return503OnClosing: false,
  forceCloseConnections: 'idle',
} as const;

type BodyDone = (error: Error | null, body?: unknown) => void;

/** For TextDecoder#decode: more of the body follows, so keep a character split across chunks. */
const MORE_TO_COME = { stream: true } as const;

/**
 * Reads a review's body as it arrives, decoding each chunk to text (TextDecoder: heap strings, a
 * leading BOM dropped, invalid UTF-8 as U+FFFD) and letting the chunk go. Fastify's `parseAs`
 * keeps every chunk and then copies them into one buffer of the whole body: under 1 MiB reviews
 * those copies, malloc'd outside the JS heap and freed only after a GC, were most of what the
 * webhook's peak RSS held above the floor's. The limits are Fastify's: MAX_BODY_BYTES, and a body
 * as long as its Content-Length says.
 */
function readJsonBody(request: FastifyRequest, payload: NodeJS.ReadableStream, done: BodyDone): void {
  const declared = Number(request.headers['content-length']);
  if (declared > MAX_BODY_BYTES) {
    done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
    return;
  }
  const decoder = new TextDecoder('utf-8');
  const pieces: string[] = [];
  let received = 0;
  const stop = (): void => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
  };
  function onData(chunk: Buffer): void {
    received += chunk.length;
    if (received > MAX_BODY_BYTES) {
      stop();
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
      return;
    }
    pieces.push(decoder.decode(chunk, MORE_TO_COME));
  }
  function onError(error: Error & { statusCode?: number }): void {
    stop();
    if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400;
    done(error, undefined);
  }
  function onEnd(): void {
    stop();
    if (!Number.isNaN(declared) && received !== declared) {
      done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), undefined);
      return;
    }
    pieces.push(decoder.decode());
    parseJsonText(pieces.length === 2 ? (pieces[0] as string) + pieces[1] : pieces.join(''), done);
  }
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}

/**
 * Fastify's JSON parser minus its `__proto__` and `constructor` scans (about 12 µs of a 20 KB
 * review), which guard merging parsed objects: nothing here does (JSON.parse only makes own data
 * properties, and the core builds its patch from fresh objects).
 */
function parseJsonText(text: string, done: BodyDone): void {
  if (text.length === 0) {
    done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
    return;
  }
  done(null, parsed);
}

export interface AppDeps {
  readonly rules: readonly RegistryRule[];
  /** Configured DNS suffixes of Azure container registries beyond azurecr.io, .cn and .us (for warnings). */
  readonly acrHostSuffixes?: readonly string[];
  readonly logger: Logger;
  readonly metrics: WebhookMetrics;
  /** Serving pair; without it the app speaks plain HTTP (tests through inject only). */
  readonly tls?: { readonly cert: Buffer | string; readonly key: Buffer | string };
  /** While true, responses carry `Connection: close` so clients move to another replica. */
  readonly isShuttingDown?: () => boolean;
}

const RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    response: {
      type: 'object',
      properties: {
        uid: { type: 'string' },
        allowed: { type: 'boolean' },
        patchType: { type: 'string' },
        patch: { type: 'string' },
        warnings: { type: 'array', items: { type: 'string' } },
      },
    },
  },
} as const;

/** Short, content-free messages for body errors: parser messages can quote the body. */
function clientErrorMessage(error: FastifyError): string {
  if (error.validation) return `not a valid AdmissionReview: ${error.message}`;
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `body larger than ${MAX_BODY_BYTES} bytes`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'content type must be application/json';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'body is empty';
    default:
      return 'body is not valid JSON';
  }
}

function sendError(reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply {
  return reply.code(statusCode).type('application/json').send({ code, message });
}

// Hooks on the hot path take a callback rather than being async: no promise per request.
/**
 * Runs as every answer is sent. It drops the parsed review, which Fastify would otherwise keep until
 * the response's 'finish' event, a loop turn or more later: with large reviews on many connections
 * that outgrew the memory limit. While shutting down it also asks the client to close the connection.
 */
function beforeSendHook(deps: AppDeps) {
  const shuttingDown = deps.isShuttingDown;
  return (
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    done: (error: null, payload: unknown) => void,
  ): void => {
    request.body = undefined;
    if (shuttingDown?.()) reply.header('connection', 'close');
    done(null, payload);
  };
}

/**
 * The review's log line. At info only reviews that warned, the ones with something to act on (an image
 * on an Azure registry that no entry matches): which pod, which secrets, the review's uid to find it in
 * the apiserver's audit log, and how long it took. Every other review goes at debug with every field: a
 * patched pod shows its secrets in its own spec, the apiserver's audit log records the patch, and the
 * metrics count them all; at info a line per pod created was most of the log and 7–10 µs of CPU a
 * review (of a small pod's 170–200). Never the pod itself.
 */
export function logReview(
  logger: Logger,
  request: AdmissionReviewRequest['request'],
  summary: ReviewSummary,
  uid: string,
  durationMs: number,
): void {
  const rounded = Math.round(durationMs * 1000) / 1000;
  if (summary.warnings.length > 0) {
    logger.info(
      {
        uid,
        namespace: summary.namespace,
        pod: summary.podName,
        decision: summary.outcome,
        secretsAdded: summary.secretsAdded,
        // No operation (a pod is only warned about on a CREATE); dryRun only when it says something
        // (pino leaves out undefined fields).
        warnings: summary.warnings.length,
        dryRun: request.dryRun === true ? true : undefined,
        durationMs: rounded,
      },
      REVIEW_LOG_MESSAGE,
    );
  } else if (logger.isLevelEnabled('debug')) {
    logger.debug(
      {
        uid,
        namespace: summary.namespace,
        pod: summary.podName,
        operation: request.operation,
        dryRun: request.dryRun === true,
        decision: summary.outcome,
        secretsAdded: summary.secretsAdded,
        warnings: summary.warnings.length,
        durationMs: rounded,
      },
      REVIEW_LOG_MESSAGE,
    );
  }
}

/**
 * The logger Fastify gets. Fastify makes its own logger from it once, a child with its serializers,
 * and that child's child() is itself: request.log is that one logger. A child per request only adds
 * a reqId, which the review's uid does better, and costs an allocation and a bindings string on
 * every review; a custom childLoggerFactory would do the same but makes Fastify check the logger's
 * methods on every request (about 1.5 µs). Fastify's own lines (mostly about bugs: a reply sent
 * twice, a serializer failing) still go out, through its serializers.
 */
export function childlessLogger(logger: Logger): Logger {
  const parent = logger.child({});
  parent.child = ((bindings, options) => {
    const own = logger.child(bindings, options);
    own.child = (() => own) as unknown as Logger['child'];
    return own;
  }) as Logger['child'];
  return parent;
}

export function buildApp(deps: AppDeps) {
  const app = Fastify({
    loggerInstance: childlessLogger(deps.logger),
    // One line per review is written by the handler; Fastify's per-request lines would triple it.
    logController: new LogController({ disableRequestLogging: true }),
    ...ADMISSION_SERVER_OPTIONS,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    ...(deps.tls
      ? { https: { ...TLS_SETTINGS, ...NODE_SERVER_OPTIONS, cert: deps.tls.cert, key: deps.tls.key } }
      : { http: NODE_SERVER_OPTIONS }),
  });
  // Reviews are JSON; a text body is refused as such (415) rather than failing the schema.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', readJsonBody);
  const { metrics } = deps;
  const acrHostSuffixes = deps.acrHostSuffixes ?? [];

  app.addHook('onSend', beforeSendHook(deps));

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const statusCode =
      error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (request.routeOptions.url === MUTATE_PATH) {
      metrics.reviews.inc({ outcome: 'rejected' });
      metrics.reviewDuration.observe(reply.elapsedTime / 1000);
    }
    if (statusCode === 500) {
      request.log.error(
        { code: error.code, statusCode, err: { type: error.name, message: error.message } },
        'request failed',
      );
      return sendError(reply, 500, 'internal', 'internal error');
    }
    // Never log the body or the parser's message, which may quote it.
    request.log.warn({ code: error.code ?? 'FST_ERR_VALIDATION', statusCode, decision: 'rejected' }, 'bad request');
    return sendError(reply, statusCode, error.code ?? 'FST_ERR_VALIDATION', clientErrorMessage(error));
  });

  app.setNotFoundHandler((_request, reply) =>
    sendError(reply, 404, 'not_found', `only POST ${MUTATE_PATH} is served here`),
  );

  const logger = deps.logger;
  app.post<{ Body: AdmissionReviewRequest }>(
    MUTATE_PATH,
    { schema: { body: REVIEW_BODY_SCHEMA, response: { 200: RESPONSE_SCHEMA } } },
    async (request, reply) => {
      const body = request.body;
      const { review, summary } = handleReview(body, deps.rules, acrHostSuffixes);
      const durationMs = reply.elapsedTime;
      // Observed here, as the log line's durationMs is, rather than in an onResponse hook: a hook
      // costs every review a hook-runner pass, and what is left after this is serialising ~300 bytes.
      metrics.recordReview(summary, durationMs / 1000);
      logReview(logger, body.request, summary, review.response.uid, durationMs);
      return review;
    },
  );
  return app;
}

export type WebhookApp = ReturnType<typeof buildApp>;

/**
 * Serves a new pair to new connections; connections already open keep theirs, so no request in
 * flight fails. (Fastify types its server as plain HTTP; with `tls` it is a tls.Server.)
 */
export function setServingPair(app: WebhookApp, pair: Pick<ServingPair, 'cert' | 'key'>): void {
  (app.server as unknown as TlsServer).setSecureContext({ ...TLS_SETTINGS, cert: pair.cert, key: pair.key });
}
