// Mutation testing of the decision modules: `npm run test:mutation` (docs/testing.md).
// Not in CI: on two shared cores a full run takes tens of minutes.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  mutate: ['db/lifecycle.ts', 'db/writer.ts', 'db/attempts.ts'],
  coverageAnalysis: 'perTest',
  // every test file's teardown folds its ledger (verify), so most of the lifecycle is also
  // "static" coverage: run each such mutant with the tests that cover it; the purely static
  // ones (top-level constants) are listed as ignored
  ignoreStatic: true,
  concurrency: 2,
  timeoutMS: 60_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  incremental: true,
  incrementalFile: 'reports/mutation/stryker-incremental.json',
  ignorePatterns: ['.data', 'dist', 'reports', 'test/bench', 'docs/img', '.ci-results-*.json'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
