import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/helpers/global-setup.ts'],
    include: ['apps/**/*.{unit,int}.spec.ts', 'db/**/*.{unit,int}.spec.ts', 'test/**/*.{unit,int}.spec.ts'],
    exclude: ['**/node_modules/**', '.data/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // the chaos tests start their own PostgreSQL; the rest share one server, one database per file
    fileParallelism: true,
  },
});
