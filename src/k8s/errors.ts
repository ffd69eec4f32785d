// One error type for every failed API call, carrying only what is safe to log: the HTTP status,
// the Status reason and message. client-node's ApiException message embeds the whole response
// body and headers; that never reaches a log line.
import { ApiException } from '@kubernetes/client-node';

export class KubeApiError extends Error {
  override name = 'KubeApiError';
  /** HTTP status, or undefined when no response arrived (refused, reset, timed out). */
  readonly status: number | undefined;
  /** metav1.Status reason, e.g. Conflict, AlreadyExists, NotFound, Forbidden, Expired. */
  readonly reason: string | undefined;

  constructor(status: number | undefined, reason: string | undefined, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }

  /** Worth retrying as is: no response, the server is overloaded or failing, or a write raced another. */
  get retryable(): boolean {
    return this.status === undefined || this.status === 409 || this.status === 429 || this.status >= 500;
  }
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
    ...(typeof message === 'string' ? { message } : {}),
  };
}

/** Normalises anything a client-node call threw; `what` names the call ("get secret team-a/acr-x"). */
export function toKubeApiError(error: unknown, what: string): KubeApiError {
  if (error instanceof KubeApiError) return error;
  if (error instanceof ApiException) {
    const code = (error as ApiException<unknown>).code;
    const status = statusOf((error as ApiException<unknown>).body);
    return new KubeApiError(
      code,
      status.reason,
      `${what}: HTTP ${code}${status.reason ? ` ${status.reason}` : ''}${status.message ? `: ${status.message}` : ''}`,
    );
  }
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError')
    return new KubeApiError(undefined, 'Timeout', `${what}: timed out`);
  const cause = err?.cause?.code ?? err?.cause?.message;
  return new KubeApiError(
    undefined,
    undefined,
    `${what}: ${err?.message ?? String(error)}${cause ? ` (${cause})` : ''}`,
  );
}
