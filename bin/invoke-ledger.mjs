#!/usr/bin/env node
// `invoke-ledger`: runs the built CLI (dist/, plain JavaScript) with plain node. dist/ is
// rebuilt first when a source changed since it was built (a fraction of a second); where it
// cannot be (a read-only install without dist/), the TypeScript sources run through tsx.
import { ensureBuilt } from '../scripts/build.mjs';

let entry;
try {
  entry = await ensureBuilt();
} catch (e) {
  process.stderr.write(`invoke-ledger: cannot build dist/ (${e.message}); running the TypeScript sources through tsx (slower to start)\n`);
}
if (entry) {
  // a server imports handlers (TypeScript) in this thread too: the same loader as every
  // runtime thread's, registered before anything loads, as for the sources
  if (process.argv[2] === 'start') {
    const { registerHandlerLoader } = await import('../apps/runtimes/register-loader.mjs');
    registerHandlerLoader();
  }
  await import(entry);
} else {
  // the same registration as every runtime thread's, so inline handlers load exactly as thread handlers do
  const { registerHandlerLoader } = await import('../apps/runtimes/register-loader.mjs');
  registerHandlerLoader();
  await import('../apps/cli/main.ts');
}
