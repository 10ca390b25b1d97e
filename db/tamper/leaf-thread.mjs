// Entry of the sealer's hashing thread. Plain JavaScript on purpose (like
// apps/runtimes/thread-bootstrap.mjs): it registers tsx's loader in this thread, which
// the parent's loader hooks do not reach on Node 20, then runs ./leaf-thread-main.ts.
import { register } from 'tsx/esm/api';

register();
await import('./leaf-thread-main.ts');
