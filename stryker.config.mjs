/**
 * npm run mutation: Stryker mutates lambda/engine and runs the engine's tests against each mutant
 * (vitest.mutation.config.ts, against DynamoDB Local). Not in CI: on 2 cores a full run takes long.
 * Incremental: a run reuses reports/stryker-incremental.json and tests again only the mutants whose
 * code or tests changed. Results: docs/testing.md ("Mutation testing"), docs/mutation-score.json
 * (scripts/mutation-score.mjs writes it from reports/mutation/mutation.json).
 */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  mutate: ['lambda/engine/**/*.ts'],
  coverageAnalysis: 'perTest',
  // Module-level code (constants, tables) would run every test for each mutant: left out.
  ignoreStatic: true,
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  concurrency: 2,
  timeoutMS: 30_000,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
