// How handler modules are compiled and loaded, in every thread that loads them: tsx's
// ESM hook (TypeScript, extensionless resolution) and its CommonJS hook (a .ts or .js file
// outside a "type": "module" package is loaded as CommonJS, and only the CommonJS hook
// compiles its import/export syntax). Runtime threads call it first thing; so does the
// `invoke-ledger` binary, so inline handlers load exactly as thread handlers do.
// Plain JavaScript on purpose: it runs before anything can import TypeScript.
import { register as registerCjs } from 'tsx/cjs/api';
import { register as registerEsm } from 'tsx/esm/api';

const REGISTERED = Symbol.for('invoke-ledger.handler-loader');

/** Idempotent per thread. */
export function registerHandlerLoader() {
  if (globalThis[REGISTERED]) return;
  globalThis[REGISTERED] = true;
  registerCjs();
  registerEsm();
}
