// What sync-secrets tells a namespace's owners through Events on their Namespace: a pull secret created or changed,
// a same-named Secret left alone, a write that failed after its retries, a token request or credential files
// refused. Notes are fixed text and names (never a credential, never an apiserver message); the recorder
// (src/k8s/events.ts) aggregates repeats into series and rate-limits per namespace.
import type { EventsV1Api } from '@kubernetes/client-node';
import { SYNC_DEFAULTS, SYNC_EVENT_ACTIONS, SYNC_EVENT_CONTROLLER, SYNC_EVENT_REASONS } from '../constants.ts';
import {
  type EventInput,
  EventRecorder,
  eventSink,
  type EventType,
  type ObjectRef,
  type RecorderLogger,
} from '../k8s/events.ts';
import type { NamespaceInfo } from '../k8s/namespace-watch.ts';

/** One pull secret's outcome worth an Event; unchanged and pruned ones are not. */
export type SecretEvent =
  | { readonly kind: 'created' }
  | { readonly kind: 'updated' }
  /** `reason` is plan.ts's fixed text (which label is missing, whose it is, which type it has). */
  | { readonly kind: 'not-managed'; readonly reason: string }
  | { readonly kind: 'failed'; readonly status: number | undefined; readonly statusReason: string | undefined };

/** The reconciler's hook: which namespaces it saw, and what happened to each secret. */
export interface SecretEventHook {
  namespace(namespace: NamespaceInfo, optedIn: boolean): void;
  secret(namespace: string, secret: string, event: SecretEvent): void;
  /** The namespace was deleted. */
  forget(namespace: string): void;
}

function namespaceRef(namespace: NamespaceInfo): ObjectRef {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    name: namespace.name,
    ...(namespace.uid === undefined ? {} : { uid: namespace.uid }),
  };
}

function secretRef(namespace: string, name: string): ObjectRef {
  return { apiVersion: 'v1', kind: 'Secret', namespace, name };
}

/** The Event for one secret's outcome, regarding its Namespace and related to the Secret. */
export function secretEvent(regarding: ObjectRef, secret: string, event: SecretEvent): EventInput {
  const related = secretRef(regarding.name, secret);
  switch (event.kind) {
    case 'created':
      return {
        type: 'Normal',
        reason: SYNC_EVENT_REASONS.created,
        action: SYNC_EVENT_ACTIONS.create,
        note: `Created pull secret ${secret}`,
        regarding,
        related,
      };
    case 'updated':
      return {
        type: 'Normal',
        reason: SYNC_EVENT_REASONS.updated,
        action: SYNC_EVENT_ACTIONS.update,
        note: `Updated pull secret ${secret}: its content changed`,
        regarding,
        related,
      };
    case 'not-managed':
      return {
        type: 'Warning',
        reason: SYNC_EVENT_REASONS.notManaged,
        action: SYNC_EVENT_ACTIONS.skip,
        note:
          `Left Secret ${secret} unchanged, pods using it get no credentials from acr-pull-webhook: ` +
          `${event.reason}`,
        regarding,
        related,
      };
    case 'failed': {
      const answer =
        event.status === undefined
          ? 'no answer'
          : `HTTP ${event.status}${event.statusReason ? ` ${event.statusReason}` : ''}`;
      return {
        type: 'Warning',
        reason: SYNC_EVENT_REASONS.failed,
        action: SYNC_EVENT_ACTIONS.sync,
        note: `Could not write pull secret ${secret} after retries (${answer}); it is retried later`,
        regarding,
        related,
      };
    }
  }
}

export interface Recorder {
  record(input: EventInput): void;
}

/** Remembers the opted-in namespaces it has seen, so a problem not tied to one namespace reaches them all. */
export class SyncEvents implements SecretEventHook {
  private readonly recorder: Recorder;
  private readonly optedIn = new Map<string, ObjectRef>();

  constructor(recorder: Recorder) {
    this.recorder = recorder;
  }

  namespace(namespace: NamespaceInfo, optedIn: boolean): void {
    if (optedIn) this.optedIn.set(namespace.name, namespaceRef(namespace));
    else this.optedIn.delete(namespace.name);
  }

  forget(namespace: string): void {
    this.optedIn.delete(namespace);
  }

  secret(namespace: string, secret: string, event: SecretEvent): void {
    const regarding = this.optedIn.get(namespace) ?? { apiVersion: 'v1', kind: 'Namespace', name: namespace };
    this.recorder.record(secretEvent(regarding, secret, event));
  }

  /** A token request in --watch was refused: every opted-in namespace's pull secret for that registry is affected. */
  tokenRejected(server: string, secret: string, expired: boolean): void {
    const keeps = expired
      ? 'the token in it has expired, so pulls fail until a request succeeds'
      : 'it keeps its current token while that is valid';
    this.everywhere((regarding) => ({
      type: 'Warning',
      reason: SYNC_EVENT_REASONS.tokenRejected,
      action: SYNC_EVENT_ACTIONS.refreshToken,
      note: `The token request for registry ${server} was refused; pull secret ${secret}: ${keeps}`,
      regarding,
      related: secretRef(regarding.name, secret),
    }));
  }

  /** Changed credential files cannot be used: the secrets keep what they hold. */
  credentialsRejected(): void {
    this.everywhere((regarding) => ({
      type: 'Warning',
      reason: SYNC_EVENT_REASONS.credentialsRejected,
      action: SYNC_EVENT_ACTIONS.loadCredentials,
      note: 'Changed credential files cannot be used; the pull secrets keep the credentials they hold',
      regarding,
    }));
  }

  private everywhere(event: (regarding: ObjectRef) => EventInput): void {
    for (const regarding of this.optedIn.values()) this.recorder.record(event(regarding));
  }
}

/**
 * How long --watch's shutdown and the end of --once wait for queued Warning events and writes on the wire; what is
 * left is dropped (a write to an unreachable apiserver, or more than the events' budget sends in that time). Queued
 * Normal events are dropped at once (EventRecorder.shutdown).
 */
export const SHUTDOWN_EVENT_FLUSH_MS = 2_000;

/**
 * The recorder for one sync-secrets process (`instance`: this replica) and the events it records. `holdNormal`
 * (--once): Normal events wait until the end, so the run's own writes never share the apiserver with them.
 */
export function syncEventRecorder(
  api: EventsV1Api,
  logger: RecorderLogger,
  instance: string,
  options: { readonly onDropped?: (type: EventType) => void; readonly holdNormal?: boolean } = {},
): {
  readonly events: SyncEvents;
  readonly flush: (withinMs?: number) => Promise<void>;
  /** The end of the process: see EventRecorder.shutdown. */
  readonly shutdown: (withinMs: number) => Promise<void>;
} {
  const recorder = new EventRecorder({
    sink: eventSink(api),
    reportingController: SYNC_EVENT_CONTROLLER,
    // client-go: the controller name and the host; the API allows 128 characters.
    reportingInstance: `${SYNC_EVENT_CONTROLLER}-${instance}`.slice(0, 128),
    logger,
    sendsPerSecond: SYNC_DEFAULTS.eventsQps,
    sendBurst: SYNC_DEFAULTS.eventsBurst,
    ...options,
  });
  return {
    events: new SyncEvents(recorder),
    flush: (withinMs) => recorder.flush(withinMs),
    shutdown: (withinMs) => recorder.shutdown(withinMs),
  };
}
