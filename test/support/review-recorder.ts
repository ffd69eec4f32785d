// A test-only mutating webhook: records the raw AdmissionReviews the apiserver sends and, for pods
// labelled `e2e.acr-pull-webhook/sidecar: "true"`, adds an ACR sidecar (idempotently). It stands in
// for "another webhook that runs after ours" in the reinvocation test and captures the fixture.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

export const SIDECAR_LABEL = 'e2e.acr-pull-webhook/sidecar';
export const SIDECAR_IMAGE = 'myregistry.azurecr.io/mesh/sidecar:1.0';

export interface ReviewRecorder {
  readonly port: number;
  readonly reviews: string[];
  close(): Promise<void>;
}

export async function startReviewRecorder(tls: { certPem: string; keyPem: string }): Promise<ReviewRecorder> {
  const reviews: string[] = [];
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      reviews.push(body);
      const review = JSON.parse(body) as {
        request: {
          uid: string;
          object?: { metadata?: { labels?: Record<string, string> }; spec?: { containers?: { name: string }[] } };
        };
      };
      const pod = review.request.object;
      const wantsSidecar = pod?.metadata?.labels?.[SIDECAR_LABEL] === 'true';
      const hasSidecar = pod?.spec?.containers?.some((container) => container.name === 'sidecar') ?? false;
      const response: Record<string, unknown> = { uid: review.request.uid, allowed: true };
      if (wantsSidecar && !hasSidecar) {
        const patch = [{ op: 'add', path: '/spec/containers/-', value: { name: 'sidecar', image: SIDECAR_IMAGE } }];
        response['patchType'] = 'JSONPatch';
        response['patch'] = Buffer.from(JSON.stringify(patch)).toString('base64');
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
    });
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return {
    port: (server.address() as AddressInfo).port,
    reviews,
    close: () =>
      new Promise<void>((closed) => {
        server.closeAllConnections();
        server.close(() => closed());
      }),
  };
}
