// One real control plane (etcd + kube-apiserver from tools/build.sh) for the whole e2e project.
// Tests reach it through inject('kubeconfigPath' | 'server' | 'caPem').
//
// There is deliberately no "skip if the binaries are missing": an e2e run without its control plane
// would pass while testing nothing. startControlPlane() throws, naming tools/build.sh.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startControlPlane } from '../support/control-plane.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    server: string;
    caPem: string;
    /** The apiserver's audit log (JSON lines): creates of Secrets and Events by ServiceAccounts, see AUDIT_POLICY. */
    auditLogPath: string;
  }
}

/**
 * Tests that need the order of requests on the apiserver read it here (when each create arrived and was answered, in
 * microseconds): sync-secrets' Secret writes and Events, made as the chart's ServiceAccount. Nothing else is logged.
 */
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    {
      level: 'Metadata',
      verbs: ['create'],
      userGroups: ['system:serviceaccounts'],
      resources: [
        { group: '', resources: ['secrets'] },
        { group: 'events.k8s.io', resources: ['events'] },
      ],
    },
    { level: 'None' },
  ],
};

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const auditDir = await mkdtemp(join(tmpdir(), 'e2e-audit-'));
  const auditPolicy = join(auditDir, 'policy.json');
  const auditLogPath = join(auditDir, 'audit.log');
  await writeFile(auditPolicy, JSON.stringify(AUDIT_POLICY));
  const cp = await startControlPlane({
    log: (line) => process.stderr.write(`[control-plane] ${line}\n`),
    // Blocking: a request's line is written as it completes, not in a batch a second later.
    apiserverArgs: [
      `--audit-policy-file=${auditPolicy}`,
      `--audit-log-path=${auditLogPath}`,
      '--audit-log-format=json',
      '--audit-log-mode=blocking',
    ],
  }).catch(async (error: unknown) => {
    await rm(auditDir, { recursive: true, force: true });
    throw error;
  });
  process.stderr.write(`[control-plane] up in ${((Date.now() - started) / 1000).toFixed(1)}s, dir ${cp.dir}\n`);
  project.provide('kubeconfigPath', cp.kubeconfigPath);
  project.provide('server', cp.server);
  project.provide('caPem', cp.caPem);
  project.provide('auditLogPath', auditLogPath);
  return async () => {
    await cp.stop();
    await rm(auditDir, { recursive: true, force: true });
  };
}
