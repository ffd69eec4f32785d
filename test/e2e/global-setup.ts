// One real control plane (etcd + kube-apiserver from tools/build.sh) for the whole e2e project.
// Tests reach it through inject('kubeconfigPath' | 'server' | 'caPem').
//
// There is deliberately no "skip if the binaries are missing": an e2e run without its control plane
// would pass while testing nothing. startControlPlane() throws, naming tools/build.sh.
import type { TestProject } from 'vitest/node';
import { startControlPlane } from '../support/control-plane.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    server: string;
    caPem: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const cp = await startControlPlane({ log: (line) => process.stderr.write(`[control-plane] ${line}\n`) });
  process.stderr.write(`[control-plane] up in ${((Date.now() - started) / 1000).toFixed(1)}s, dir ${cp.dir}\n`);
  project.provide('kubeconfigPath', cp.kubeconfigPath);
  project.provide('server', cp.server);
  project.provide('caPem', cp.caPem);
  return async () => {
    await cp.stop();
  };
}
