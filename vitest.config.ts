import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/support/e2e-global-setup.ts'],
          // @livekit/rtc-node logs at debug level unless NODE_ENV is production; keep CI output readable.
          env: { NODE_ENV: 'production' },
          // e2e tests share one livekit-server and one worker per file; run files one at a time
          // so jobs from one file never land in another file's rooms.
          fileParallelism: false,
          // After the unit project (group 0), so the two never compete for the CPU. Without an
          // explicit order vitest puts a one-file-at-a-time project in a group of its own that runs
          // last, after every numbered group.
          sequence: { groupOrder: 1 },
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'e2e-multinode',
          include: ['test/e2e-multinode/**/*.test.ts'],
          // No shared server: each file starts its own Redis, LiveKit nodes and workers.
          env: { NODE_ENV: 'production' },
          fileParallelism: false,
          // Runs after the other projects, so its servers and workers never compete for the CPU
          // with the e2e project's.
          sequence: { groupOrder: 2 },
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
