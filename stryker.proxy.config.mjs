/**
 * npm run mutation:proxy: Stryker mutates the proxy's settlement and relay code (see `mutate`) and
 * runs the proxy's tests against each mutant (vitest.mutation.proxy.config.ts: the proxy's own and
 * the hard-cap classes through npm start's stack, all in this process, against DynamoDB Local).
 * Not in CI: slow on 2 cores. Results: docs/testing.md ("Mutation testing"),
 * docs/mutation-score.proxy.json (scripts/mutation-score.mjs).
 */
import engine from './stryker.config.mjs';

export default {
  ...engine,
  vitest: { configFile: 'vitest.mutation.proxy.config.ts', related: false },
  mutate: ['lambda/proxy/relay.ts', 'lambda/proxy/usage.ts', 'lambda/proxy/pricing.ts', 'lambda/proxy/settle.ts'],
  incrementalFile: 'reports/stryker-incremental.proxy.json',
  jsonReporter: { fileName: 'reports/mutation-proxy/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation-proxy/mutation.html' },
};
