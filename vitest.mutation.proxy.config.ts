import { defineConfig } from 'vitest/config';
import base from './vitest.config';

/**
 * The tests Stryker runs against each mutant of the proxy's settlement and relay code
 * (stryker.proxy.config.mjs): the proxy's own, and the hard-cap classes through npm start's
 * stack, which runs the handlers in this process (so a mutant is what they run).
 */
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/proxy/*.test.ts', 'test/e2e/hard-cap.test.ts'],
    testTimeout: 120_000,
  },
});
