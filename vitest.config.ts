import { defineConfig } from "vitest/config"

// Vitest 5: `poolOptions` and `minWorkers` are gone; worker count is the top-level `maxWorkers`, and the default
// `exclude` is only node_modules and .git. Each test file gets its own forked process (real nats-server per suite).
export default defineConfig({
  test: {
    include: ["libs/**/src/**/*.test.ts", "services/**/src/**/*.test.ts", "cli/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/.git/**", "test/bench/**"],
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
