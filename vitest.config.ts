import { configDefaults, defineConfig } from 'vitest/config';

// Tests that run a program this repository does not build from node_modules: kubectl from PATH, to
// compare the pull secrets with the ones it makes. They belong in test/integration/ (their owners move them).
const NEEDS_KUBECTL = ['src/sync/docker-config.test.ts', 'src/cli/sync-secrets.test.ts'];

// Three tiers, run one after another (sequence.groupOrder) so that the unit tier's timing bounds never
// share the two cores with helm, npm ci or the e2e suite. `npm test` runs each tier in its own vitest run,
// so the control plane (started by the e2e globalSetup before any file runs) is not even up during the others.
// - unit: no network, no binary from tools/build.sh, no control plane; seconds.
// - integration: helm (from tools/build.sh), the npm registry, kubectl; no control plane.
// - e2e: one real control plane (etcd + kube-apiserver from tools/), started once by its globalSetup.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'certs-gen/**/*.test.ts', 'test/unit/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...NEEDS_KUBECTL],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', ...NEEDS_KUBECTL],
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // One apiserver for all files; files run one after another so timing assertions hold on 2 cores.
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
