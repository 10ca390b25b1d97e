// Entry of every runtime thread. Plain JavaScript on purpose: it must load whether the
// parent runs under tsx, vitest or plain node. It registers the handler loader in this
// thread (loader hooks of the parent do not reach worker threads on Node 20) so both this
// part's own .ts code and .ts handlers can be imported, then starts the thread loop.
import { registerHandlerLoader } from './register-loader.mjs';

registerHandlerLoader();
await import('./thread-main.ts');
