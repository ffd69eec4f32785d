// One error type for every failed API call (sync-secrets and certs-gen), carrying only what is safe
// to log: the HTTP status, the Status reason and message, or why no answer came. client-node's
// ApiException message embeds the whole response body and headers; that never reaches a log line.
import { ApiException } from '@kubernetes/client-node';
import type { RawResponse } from './client.ts';

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  /** HTTP status, or undefined when no response arrived (refused, reset, timed out). */
  readonly status: number | undefined;
  /** metav1.Status reason, e.g. Conflict, AlreadyExists, NotFound, Forbidden, Expired. */
  readonly reason: string | undefined;
  /** The apiserver's metav1.Status message, on one line, when it answered with one. */
  readonly apiMessage: string | undefined;
  /** Why no answer came, on one line ("connect ECONNREFUSED 10.0.0.1:443"), when none did. */
  readonly transport: string | undefined;
  /**
   * Seconds the apiserver asked us to wait (its Retry-After header: API Priority and Fairness
   * rejections and other 429s, some 5xx); retry() waits at least this long before the next attempt.
   */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    status: number | undefined,
    reason: string | undefined,
    message: string,
    detail: { apiMessage?: string; transport?: string; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.apiMessage = detail.apiMessage;
    this.transport = detail.transport;
    this.retryAfterSeconds = detail.retryAfterSeconds;
  }

  /** No answer within the request timeout. */
  get timedOut(): boolean {
    return this.status === undefined && this.reason === 'Timeout';
  }

  /** Worth retrying as is: no response, the server is overloaded or failing, or a write raced another. */
  get retryable(): boolean {
    return this.status === undefined || this.status === 409 || this.status === 429 || this.status >= 500;
  }
}

export function oneLine(text: string): string {
  return text.replaceAll(/\s*\n\s*/g, ' ');
}

function statusOf(body: unknown): { reason?: string; message?: string } {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return {};
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return {};
  const { reason, message } = parsed as { reason?: unknown; message?: unknown };
  return {
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof message === 'string' ? { message: oneLine(message) } : {}),
  };
}

/**
 * Retry-After as whole seconds (RFC 9110 also allows an HTTP date, which the apiserver never sends);
 * anything else is ignored rather than trusted.
 */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*\d{1,9}\s*$/.test(value)) return undefined;
  return Number(value);
}

function headerOf(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

/** Normalises anything a client-node call threw; `what` names the call ("get secret team-a/acr-x"). */
export function toKubeApiError(error: unknown, what: string): KubeApiError {
  if (error instanceof KubeApiError) return error;
  if (error instanceof ApiException) {
    const code = (error as ApiException<unknown>).code;
    const status = statusOf((error as ApiException<unknown>).body);
    const retryAfterSeconds = parseRetryAfter(headerOf((error as ApiException<unknown>).headers, 'retry-after'));
    return new KubeApiError(
      code,
      status.reason,
      `${what}: HTTP ${code}${status.reason ? ` ${status.reason}` : ''}${status.message ? `: ${status.message}` : ''}`,
      {
        ...(status.message === undefined ? {} : { apiMessage: status.message }),
        ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      },
    );
  }
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError')
    return new KubeApiError(undefined, 'Timeout', `${what}: timed out`, { transport: 'timed out' });
  const cause = err?.cause?.code ?? err?.cause?.message;
  return new KubeApiError(
    undefined,
    undefined,
    `${what}: ${err?.message ?? String(error)}${cause ? ` (${cause})` : ''}`,
    {
      transport: transportReason(error),
    },
  );
}

// undici reports "fetch failed" and hides the reason in `cause` (ECONNREFUSED, ENOTFOUND, a TLS error).
function transportReason(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as (Error & { code?: string }) | undefined) : undefined;
  if (cause instanceof Error)
    return oneLine(
      cause.code !== undefined && !cause.message.includes(cause.code)
        ? `${cause.code}: ${cause.message}`
        : cause.message,
    );
  return oneLine(error instanceof Error ? error.message : String(error));
}

/** A non-2xx answer on the raw path as client-node would have thrown it, so toKubeApiError reads both paths alike. */
export function rawFailure(response: RawResponse): ApiException<string> {
  const body = response.body.toString('utf8');
  return new ApiException(response.status, `HTTP-Code: ${response.status}`, body, response.headers);
}
