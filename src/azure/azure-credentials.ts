// The resolved form of a registry's `credentials.azure` block, shared by the configuration (which builds it) and
// the token client (which uses it), so neither layer has to know the other's types.
import type { AzureCloudName } from './clouds.ts';

/** Where the Entra ID client credential is read from, on every token request (the kubelet rotates the token file). */
export type AzureSecretSource =
  /** Workload identity: a projected ServiceAccount token, sent as the client assertion. */
  | { readonly kind: 'federated-token'; readonly file: string }
  /** A service principal's client secret. */
  | { readonly kind: 'client-secret'; readonly file: string };

export interface AzureCredentials {
  /** Directory (tenant) ID, a GUID. */
  readonly tenantId: string;
  /** Application (client) ID of the app registration or managed identity, a GUID. */
  readonly clientId: string;
  readonly secretSource: AzureSecretSource;
  /** As configured, or from the registry name's suffix. */
  readonly cloud: AzureCloudName;
  /** Normalised (HTTPS, trailing slash): the override, or the cloud's. */
  readonly authorityHost: string;
  /** The cloud's ACR scope for the Entra token request. */
  readonly scope: string;
}
