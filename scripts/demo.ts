// `npm start`: the webhook for real, on a local control plane. Builds what is missing (the first
// build of kube-apiserver takes a while), starts etcd + kube-apiserver on loopback, runs
// `acr-pull-webhook serve` against it, labels a namespace, creates a pod from an ACR image, shows
// the imagePullSecrets the apiserver stored, then keeps everything running until Ctrl-C.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { buildLocalCertificates, writeLocalFiles } from '../certs-gen/local.ts';
import { INJECT_ENABLED, INJECT_LABEL } from '../src/constants.ts';
import { createNamespace, startControlPlane } from '../test/support/control-plane.ts';
import { registerWebhook } from '../test/support/webhook-configuration.ts';
import { startWebhookProcess } from '../test/support/webhook-process.ts';

const root = resolve(import.meta.dirname, '..');
const runDir = join(root, '.run', 'demo');
const say = (line: string): void => void process.stdout.write(`${line}\n`);

say(
  '==> Building the control-plane tools if missing ' +
    '(the first build takes about 10 minutes on 2 cores; later runs take seconds)',
);
const build = spawnSync('bash', [join(root, 'tools', 'build.sh')], { stdio: 'inherit' });
if (build.status !== 0) {
  say('tools/build.sh failed; see above.');
  process.exit(1);
}

rmSync(runDir, { recursive: true, force: true });
mkdirSync(runDir, { recursive: true });
say('==> Starting etcd and kube-apiserver on loopback');
const controlPlane = await startControlPlane({
  dir: join(runDir, 'control-plane'),
  keepDir: false,
  log: (line) => say(`    ${line}`),
});
let webhook: Awaited<ReturnType<typeof startWebhookProcess>> | undefined;

const cleanup = async (): Promise<void> => {
  say('\n==> Stopping the webhook and the control plane');
  await webhook?.stop(5_000);
  await controlPlane.stop();
  rmSync(runDir, { recursive: true, force: true });
};

try {
  const certDir = join(runDir, 'certs');
  await writeLocalFiles(
    certDir,
    buildLocalCertificates({ dnsNames: [], ipAddresses: [], validityDays: 30, now: new Date() }),
  );
  say('==> Starting acr-pull-webhook serve on https://127.0.0.1:8443 (health on http://127.0.0.1:8080)');
  webhook = await startWebhookProcess({
    config: join(root, 'examples', 'config.yaml'),
    certFile: join(certDir, 'tls.crt'),
    keyFile: join(certDir, 'tls.key'),
    dir: runDir,
    port: 8443,
    healthPort: 8080,
  });
  const kc = controlPlane.kubeConfig;
  await createNamespace(kc, 'demo', { [INJECT_LABEL]: INJECT_ENABLED });
  say(
    `==> Registering the MutatingWebhookConfiguration; namespace "demo" is labelled ${INJECT_LABEL}=${INJECT_ENABLED}`,
  );
  await registerWebhook(kc, {
    name: 'acr-pull-webhook',
    port: webhook.port,
    caPem: readFileSync(join(certDir, 'ca.crt'), 'utf8'),
    probeNamespace: 'demo',
  });

  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedPod({
    namespace: 'demo',
    body: {
      metadata: { name: 'web' },
      spec: {
        initContainers: [{ name: 'migrate', image: 'contoso.azurecr.cn/tools/migrate:2.1' }],
        containers: [
          { name: 'app', image: 'myregistry.azurecr.io/team/app:v1' },
          { name: 'proxy', image: 'nginx:1.27' },
        ],
      },
    },
  });
  const stored = await core.readNamespacedPod({ name: 'web', namespace: 'demo' });
  say(
    '==> Created pod demo/web ' +
      '(images myregistry.azurecr.io/team/app:v1, contoso.azurecr.cn/tools/migrate:2.1, nginx:1.27).',
  );
  say(`    The apiserver stored: spec.imagePullSecrets = ${JSON.stringify(stored.spec?.imagePullSecrets ?? [])}`);
  say('');
  say('Try it yourself (the control plane keeps running until Ctrl-C):');
  say(`  export KUBECONFIG=${controlPlane.kubeconfigPath}`);
  say(
    '  kubectl run hello -n demo --image=myregistry.azurecr.io/hello:1 && ' +
      "kubectl get pod hello -n demo -o jsonpath='{.spec.imagePullSecrets}'",
  );
  say(
    `  curl -s --cacert ${join(certDir, 'ca.crt')} -H 'Content-Type: application/json' ` +
      '--data @examples/admission-review.json https://127.0.0.1:8443/mutate',
  );
  say('  curl -s http://127.0.0.1:8080/metrics | grep acr_pull_webhook');
  say(`  webhook log: ${webhook.logFile}`);
} catch (error) {
  say(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  await cleanup();
  process.exit(1);
}

await new Promise<void>((done) => {
  process.once('SIGINT', () => done());
  process.once('SIGTERM', () => done());
});
await cleanup();
