import { defineConfig } from 'vitest/config';

/**
 * Opt-in tests against the real Groq API (`npm run test:live`, only with GROQ_API_KEY set). Kept
 * out of the unit and e2e projects: they cost money, need the network, and check model behaviour,
 * which is not deterministic.
 */
export default defineConfig({
  test: {
    include: ['test/live/**/*.live.test.ts'],
    testTimeout: 120_000,
    // One request at a time: stay clear of free-tier rate limits.
    fileParallelism: false,
  },
});
