// Entry of every runtime thread. Plain JavaScript on purpose: it must load whether the
// parent runs under tsx, vitest or plain node. It registers tsx's loaders in this thread
// (loader hooks of the parent do not reach worker threads on Node 20) so both this
// part's own .ts code and .ts handlers can be imported, then starts the thread loop.
// Both hooks are needed: a .ts file outside a "type": "module" package is loaded as
// CommonJS, and only tsx's CommonJS hook compiles its import/export syntax.
import { register as registerCjs } from 'tsx/cjs/api';
import { register as registerEsm } from 'tsx/esm/api';

registerCjs();
registerEsm();
await import('./thread-main.ts');
