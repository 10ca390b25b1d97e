// The specs Stryker runs against mutants of the decision modules (npm run test:mutation,
// docs/testing.md): the ones that exercise db/lifecycle.ts, db/writer.ts and db/attempts.ts
// in-process. Tests that reach them only through a spawned server cannot see a mutant.
import { defineConfig } from 'vitest/config';

const UNIT = ['db/event-model.unit.spec.ts', 'db/lifecycle.unit.spec.ts', 'db/attempts.unit.spec.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    // MUTATION_SPECS=unit: only the specs without a database (seconds per mutant instead of a
    // database clone and a verify per file); enough for db/lifecycle.ts and db/attempts.ts
    include:
      process.env.MUTATION_SPECS === 'unit'
        ? UNIT
        : [...UNIT, 'db/writer-model.int.spec.ts', 'db/projection.int.spec.ts', 'db/ledger.int.spec.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
