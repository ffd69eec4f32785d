// The benchmark's pods. The "typical pod": what a ReplicaSet creates for a web service with a
// service mesh and a log shipper: two init containers, the app and two sidecars, probes, resources,
// env, mounts, affinity, tolerations and spread constraints. capture-fixtures.ts creates it on a real
// apiserver to capture the AdmissionReview the webhook receives. The "small pod": the containers of
// the small review (test/fixtures/apiserver-pod-create-review.json), one init container and one app.
// The control-plane phase of run.ts creates either at a steady rate.
import type { V1Pod } from '@kubernetes/client-node';

const appLabels = { app: 'checkout', 'app.kubernetes.io/name': 'checkout', 'app.kubernetes.io/part-of': 'shop' };

const probe = (path: string, port: number, period: number) => ({
  httpGet: { path, port, scheme: 'HTTP' },
  initialDelaySeconds: 5,
  periodSeconds: period,
  timeoutSeconds: 2,
  failureThreshold: 3,
});

const restricted = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

const fieldEnv = (name: string, fieldPath: string) => ({
  name,
  valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
});

export function typicalPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'checkout-6d8f9c7b5-',
      labels: {
        ...appLabels,
        'pod-template-hash': '6d8f9c7b5',
        version: 'v2.14.3',
        'security.istio.io/tlsMode': 'istio',
      },
      annotations: {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
        'prometheus.io/path': '/metrics',
        'kubectl.kubernetes.io/default-container': 'app',
      },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'checkout-6d8f9c7b5',
          uid: '5b0d7c0e-1f2a-4c3b-9d8e-7f6a5b4c3d2e',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      serviceAccountName: 'default',
      terminationGracePeriodSeconds: 45,
      securityContext: {
        runAsUser: 10001,
        runAsGroup: 10001,
        fsGroup: 10001,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      initContainers: [
        {
          name: 'istio-init',
          image: 'docker.io/istio/proxyv2:1.22.3',
          args: [
            'istio-iptables',
            '-p',
            '15001',
            '-z',
            '15006',
            '-u',
            '1337',
            '-m',
            'REDIRECT',
            '-i',
            '*',
            '-x',
            '',
            '-b',
            '*',
            '-d',
            '15090,15021,15020',
            '--log_output_level=default:info',
          ],
          resources: { requests: { cpu: '10m', memory: '40Mi' }, limits: { cpu: '2', memory: '1Gi' } },
          securityContext: {
            allowPrivilegeEscalation: false,
            capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
            runAsUser: 0,
            runAsNonRoot: false,
          },
        },
        {
          name: 'migrate',
          image: 'myregistry.azurecr.io/shop/checkout-migrations:2.14.3',
          command: ['/app/migrate'],
          args: ['--database-url=$(DATABASE_URL)', '--lock-timeout=30s', 'up'],
          env: [
            { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'checkout-db', key: 'url' } } },
            { name: 'MIGRATIONS_TABLE', value: 'schema_migrations' },
          ],
          resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
          securityContext: restricted,
          volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
        },
      ],
      containers: [
        {
          name: 'app',
          image: 'myregistry.azurecr.io/shop/checkout:2.14.3',
          ports: [
            { name: 'http', containerPort: 8080, protocol: 'TCP' },
            { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
          ],
          env: [
            fieldEnv('POD_NAME', 'metadata.name'),
            fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
            fieldEnv('NODE_NAME', 'spec.nodeName'),
            fieldEnv('POD_IP', 'status.podIP'),
            {
              name: 'GOMEMLIMIT',
              valueFrom: { resourceFieldRef: { containerName: 'app', resource: 'limits.memory' } },
            },
            { name: 'LOG_LEVEL', value: 'info' },
            { name: 'LOG_FORMAT', value: 'json' },
            { name: 'HTTP_ADDR', value: ':8080' },
            {
              name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
              value: 'http://otel-collector.observability.svc.cluster.local:4317',
            },
            { name: 'OTEL_SERVICE_NAME', value: 'checkout' },
            { name: 'PAYMENTS_URL', value: 'http://payments.shop.svc.cluster.local:8080' },
            { name: 'REDIS_ADDR', value: 'redis-master.shop.svc.cluster.local:6379' },
            { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'checkout-db', key: 'url' } } },
            { name: 'STRIPE_API_KEY', valueFrom: { secretKeyRef: { name: 'checkout-stripe', key: 'api-key' } } },
          ],
          envFrom: [{ configMapRef: { name: 'checkout-config' } }],
          resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
          readinessProbe: probe('/readyz', 8080, 5),
          livenessProbe: probe('/healthz', 8080, 10),
          securityContext: restricted,
          volumeMounts: [
            { name: 'config', mountPath: '/etc/checkout', readOnly: true },
            { name: 'tls', mountPath: '/etc/checkout/tls', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
            { name: 'podinfo', mountPath: '/etc/podinfo', readOnly: true },
          ],
        },
        {
          name: 'istio-proxy',
          image: 'docker.io/istio/proxyv2:1.22.3',
          args: [
            'proxy',
            'sidecar',
            '--domain',
            '$(POD_NAMESPACE).svc.cluster.local',
            '--proxyLogLevel=warning',
            '--proxyComponentLogLevel=misc:error',
            '--log_output_level=default:info',
          ],
          ports: [{ name: 'http-envoy-prom', containerPort: 15090, protocol: 'TCP' }],
          env: [
            { name: 'PILOT_CERT_PROVIDER', value: 'istiod' },
            { name: 'CA_ADDR', value: 'istiod.istio-system.svc:15012' },
            fieldEnv('POD_NAME', 'metadata.name'),
            fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
            fieldEnv('INSTANCE_IP', 'status.podIP'),
            fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
            { name: 'ISTIO_META_APP_CONTAINERS', value: 'app' },
            { name: 'ISTIO_META_WORKLOAD_NAME', value: 'checkout' },
            { name: 'ISTIO_META_OWNER', value: 'kubernetes://apis/apps/v1/namespaces/shop/deployments/checkout' },
            { name: 'TRUST_DOMAIN', value: 'cluster.local' },
          ],
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
          readinessProbe: {
            httpGet: { path: '/healthz/ready', port: 15021, scheme: 'HTTP' },
            periodSeconds: 15,
            timeoutSeconds: 3,
            failureThreshold: 4,
          },
          securityContext: { ...restricted, runAsUser: 1337, runAsGroup: 1337 },
          volumeMounts: [
            { name: 'istio-envoy', mountPath: '/etc/istio/proxy' },
            { name: 'istio-data', mountPath: '/var/lib/istio/data' },
            { name: 'istio-token', mountPath: '/var/run/secrets/tokens' },
            { name: 'istiod-ca-cert', mountPath: '/var/run/secrets/istio' },
            { name: 'podinfo', mountPath: '/etc/istio/pod' },
          ],
        },
        {
          name: 'log-shipper',
          image: 'myregistry.azurecr.io/platform/fluent-bit:3.1.4',
          args: ['--config=/fluent-bit/etc/fluent-bit.yaml'],
          env: [
            fieldEnv('POD_NAME', 'metadata.name'),
            fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
            { name: 'LOKI_URL', value: 'http://loki-gateway.observability.svc.cluster.local' },
          ],
          resources: { requests: { cpu: '20m', memory: '32Mi' }, limits: { memory: '128Mi' } },
          securityContext: restricted,
          volumeMounts: [
            { name: 'fluent-bit-config', mountPath: '/fluent-bit/etc', readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        { name: 'config', configMap: { name: 'checkout-config', defaultMode: 0o444 } },
        { name: 'tls', secret: { secretName: 'checkout-tls', defaultMode: 0o400 } },
        { name: 'fluent-bit-config', configMap: { name: 'checkout-fluent-bit' } },
        { name: 'tmp', emptyDir: { sizeLimit: '256Mi' } },
        { name: 'istio-envoy', emptyDir: { medium: 'Memory' } },
        { name: 'istio-data', emptyDir: {} },
        {
          name: 'istio-token',
          projected: {
            sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }],
          },
        },
        { name: 'istiod-ca-cert', configMap: { name: 'istio-ca-root-cert' } },
        {
          name: 'podinfo',
          downwardAPI: {
            items: [
              { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
              { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
            ],
          },
        },
      ],
      affinity: {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 100,
              podAffinityTerm: {
                topologyKey: 'kubernetes.io/hostname',
                labelSelector: { matchLabels: { app: 'checkout' } },
              },
            },
          ],
        },
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }] }],
          },
        },
      },
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'workload', operator: 'Equal', value: 'web', effect: 'NoSchedule' },
      ],
      topologySpreadConstraints: [
        {
          maxSkew: 1,
          topologyKey: 'topology.kubernetes.io/zone',
          whenUnsatisfiable: 'ScheduleAnyway',
          labelSelector: { matchLabels: { app: 'checkout' } },
        },
      ],
    },
  };
}

export function smallPod(): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'small-' },
    spec: {
      initContainers: [{ name: 'i0', image: 'contoso.azurecr.cn/init:1' }],
      containers: [{ name: 'c0', image: 'myregistry.azurecr.io/team/app:v1' }],
    },
  };
}
