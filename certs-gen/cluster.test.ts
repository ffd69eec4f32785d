import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ClusterError, ConflictError, describeFailure } from './cluster.ts';

const server = 'https://10.0.0.1:443';
const getSecret = { verb: 'get', resource: 'secrets', name: 'hook-tls', namespace: 'acr' };
const patchConfig = { verb: 'patch', resource: 'mutatingwebhookconfigurations', name: 'hook' };
const status = (code: number, message: string) =>
  new ApiException(code, 'x', JSON.stringify({ kind: 'Status', message }), {});
const fetchFailed = (cause: Error & { code?: string }) => Object.assign(new TypeError('fetch failed'), { cause });
const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
const unknownHost = Object.assign(new Error('getaddrinfo ENOTFOUND api.example'), { code: 'ENOTFOUND' });
const timeout = Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' });

describe('describeFailure', () => {
  it.each([
    [
      'a 403 names the user, the verb and the resource',
      status(
        403,
        'secrets "hook-tls" is forbidden: User "system:serviceaccount:acr:certs-gen" ' +
          'cannot get resource "secrets" in API group "" in the namespace "acr"',
      ),
      getSecret,
      ClusterError,
      'forbidden (403): "system:serviceaccount:acr:certs-gen" may not get secrets "hook-tls" in namespace "acr"; ' +
        'grant verb "get" on secrets (see deploy/rbac/certs-gen.yaml)',
    ],
    [
      'a 403 on a cluster-scoped object has no namespace',
      status(
        403,
        'mutatingwebhookconfigurations.admissionregistration.k8s.io "hook" is forbidden: ' +
          'User "u" cannot patch resource',
      ),
      patchConfig,
      ClusterError,
      'forbidden (403): "u" may not patch mutatingwebhookconfigurations "hook"; ' +
        'grant verb "patch" on mutatingwebhookconfigurations (see deploy/rbac/certs-gen.yaml)',
    ],
    [
      'a 403 from OwnerReferencesPermissionEnforcement says that setting an ownerReference needs delete',
      status(403, 'secrets "hook-tls" is forbidden: cannot set an ownerRef on a resource you can\'t delete: , <nil>'),
      { verb: 'update', resource: 'secrets', name: 'hook-tls', namespace: 'acr' },
      ClusterError,
      'forbidden (403): these credentials may not set the ownerReferences of secrets "hook-tls" in namespace "acr": ' +
        'the OwnerReferencesPermissionEnforcement admission plugin also requires verb "delete" on secrets ' +
        '(see certs-gen/README.md, RBAC)',
    ],
    [
      'a 401 names where the credentials came from',
      status(401, 'Unauthorized'),
      getSecret,
      ClusterError,
      `the Kubernetes API at ${server} rejected the credentials from kubeconfig /k (401 Unauthorized)`,
    ],
    [
      'a 409 is a conflict to retry',
      status(409, 'the object has been modified'),
      getSecret,
      ConflictError,
      'get secrets "hook-tls" in namespace "acr": conflict: the object has been modified',
    ],
    [
      'another status quotes the API message on one line',
      status(422, 'Secret "x" is invalid:\n data: too long'),
      getSecret,
      ClusterError,
      'get secrets "hook-tls" in namespace "acr": HTTP 422: Secret "x" is invalid: data: too long',
    ],
    [
      'a refused connection says the API is unreachable',
      fetchFailed(refused),
      getSecret,
      ClusterError,
      `cannot reach the Kubernetes API at ${server} (get secrets "hook-tls" in namespace "acr"): ` +
        'connect ECONNREFUSED 10.0.0.1:443',
    ],
    [
      'an unknown host says the API is unreachable',
      fetchFailed(unknownHost),
      getSecret,
      ClusterError,
      `cannot reach the Kubernetes API at ${server} (get secrets "hook-tls" in namespace "acr"): ` +
        'getaddrinfo ENOTFOUND api.example',
    ],
    [
      'a timeout says how long it waited',
      timeout,
      patchConfig,
      ClusterError,
      `cannot reach the Kubernetes API at ${server} (patch mutatingwebhookconfigurations "hook"): ` +
        'no answer within 10 s',
    ],
  ])('%s', (_case, error, request, type, message) => {
    const described = describeFailure(error, request, server, 'kubeconfig /k');
    expect(described).toBeInstanceOf(type);
    expect(described.message).toBe(message);
  });
});
