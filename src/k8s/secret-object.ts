// The subset of a core/v1 Secret that sync-secrets reads and writes, without client-node's classes:
// the pure layers above (plan, desired manifests) use it and never load the client library.
export interface SecretObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  type?: string;
  immutable?: boolean;
  /** base64 values, as the API returns them. */
  data?: Record<string, string>;
}
