// Kubernetes object names (RFC 1123), the one definition: namespaces and Services are DNS labels,
// Secrets and webhook configurations DNS subdomains, and a label key's prefix is a DNS subdomain.
// Checked before any API call so that a typo is reported as such, not as a 422 from the API.

const LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';

/** A DNS subdomain without anchors or length bound: lowercase labels joined by dots. */
export const DNS_SUBDOMAIN_BODY = `${LABEL}(\\.${LABEL})*`;
/** A DNS subdomain as a JSON-schema or RegExp pattern; the length is bounded separately. */
export const DNS_SUBDOMAIN_PATTERN = `^${DNS_SUBDOMAIN_BODY}$`;
export const DNS_SUBDOMAIN_MAX_LENGTH = 253;
/** A DNS label as a JSON-schema or RegExp pattern; the length is bounded separately. */
export const DNS_LABEL_PATTERN = `^${LABEL}$`;
export const DNS_LABEL_MAX_LENGTH = 63;

const SUBDOMAIN = new RegExp(DNS_SUBDOMAIN_PATTERN);
const DNS_LABEL = new RegExp(DNS_LABEL_PATTERN);

/** Lowercase, at most 253 characters: Secret, ConfigMap and webhook configuration names. */
export function isDnsSubdomain(name: string): boolean {
  return name.length <= DNS_SUBDOMAIN_MAX_LENGTH && SUBDOMAIN.test(name);
}

/** Lowercase, at most 63 characters, no dots: namespace and Service names. */
export function isDnsLabel(name: string): boolean {
  return name.length <= DNS_LABEL_MAX_LENGTH && DNS_LABEL.test(name);
}
