import { defineConfig } from 'vitest/config';

// Three tiers, run one after another (sequence.groupOrder) so that the unit tier's timing bounds never
// share the two cores with helm, npm ci or the e2e suite. `npm test` runs each tier in its own vitest run,
// so the control plane (started by the e2e globalSetup before any file runs) is not even up during the others.
// - unit: in-process only (servers on loopback allowed): no child process, no network, no tools/build.sh binary.
// - integration: real processes (the CLIs, openssl, kubectl, helm from tools/build.sh, npm ci); no control plane.
// - e2e: one real control plane (etcd + kube-apiserver from tools/), started once by its globalSetup.
// - node: a one-node cluster (kubelet, containerd, kube-proxy, registries) in namespaces of its own.
// Every project starts with TMP_GUARD: the run's own TMPDIR, and a red run naming whatever a test left in it.
// It must stay first in each list: vitest tears global setups down in reverse, so it checks after the others.
const TMP_GUARD = 'test/support/tmp-guard.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'certs-gen/**/*.test.ts', 'test/unit/**/*.test.ts'],
          // In-process tests only: every core (vitest's default leaves one free, which on 2 cores is half).
          maxWorkers: '100%',
          globalSetup: [TMP_GUARD],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // A test here starts programs; on a busy 2-core machine one start alone can take seconds.
          testTimeout: 30_000,
          globalSetup: [TMP_GUARD],
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: [TMP_GUARD, 'test/e2e/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // One apiserver for all files; files run one after another so timing assertions hold on 2 cores.
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      {
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          // One real node (test/support/node/cluster.ts) per file: starting it takes seconds, pulls and
          // pod starts on 2 busy cores take longer than an apiserver round trip.
          testTimeout: 180_000,
          hookTimeout: 900_000,
          fileParallelism: false,
          globalSetup: [TMP_GUARD],
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
