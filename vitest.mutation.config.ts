import { defineConfig } from 'vitest/config';
import base from './vitest.config';

/**
 * The tests Stryker runs against each mutant of lambda/engine (stryker.config.mjs): the engine's
 * own, in this process. The tests that spawn processes (test/engine/concurrency.test.ts, the four
 * processes of test/engine/leases.test.ts, which skips itself under Stryker: the runner replaces any
 * test name pattern) run the unmutated code in their children, so they are left out: they cannot
 * kill a mutant and take seconds each.
 */
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/engine/*.test.ts'],
    exclude: ['test/engine/concurrency.test.ts'],
    // Under Stryker the machine is busy (two runners, two DynamoDB Locals): a slow test is not a failed one.
    testTimeout: 120_000,
  },
});
