import { defineConfig } from 'vitest/config';

// Two projects: fast pure/unit tests, and end-to-end tests that share one real control plane
// (etcd + kube-apiserver built from tools/) started once by the e2e globalSetup.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'certs-gen/**/*.test.ts', 'test/unit/**/*.test.ts'],
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
        },
      },
    ],
  },
});
