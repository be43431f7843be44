import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Scenario runs take seconds of real kernel time each.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: two test files at a time keeps the kernel's timers on time.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
