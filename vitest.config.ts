import { defineConfig } from 'vitest/config';

// Shared by both groups: scenario runs take seconds of real kernel time each.
const common = {
  testTimeout: 120_000,
  hookTimeout: 180_000,
  pool: 'forks',
} as const;

export default defineConfig({
  test: {
    reporters: ['default'],
    projects: [
      {
        test: {
          ...common,
          name: 'course',
          include: ['test/**/*.test.ts'],
          exclude: ['test/robustness/**', 'test/load/**'],
          // Two cores: two test files at a time keeps the kernel's timers on time.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...common,
          // Fuzzing, 200 aborted runs and many labs at once keep both cores busy on purpose:
          // they run after the timing-sensitive tests, one file at a time, so they neither
          // disturb those nor each other.
          name: 'stress',
          include: ['test/robustness/**/*.test.ts', 'test/load/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
