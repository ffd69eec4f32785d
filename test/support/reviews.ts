// The AdmissionReview the socket-level tests send: a pod CREATE with one ACR image.
export const ACR_POD_CREATE_REVIEW = JSON.stringify({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'u-1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    object: { spec: { containers: [{ name: 'a', image: 'myregistry.azurecr.io/app' }] } },
  },
});
