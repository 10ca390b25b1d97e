// Registers the example/user functions found in FUNCTIONS_DIR at start. Modules are
// imported in a separate thread, not here: a file that calls process.exit() or loops
// forever at its top level must cost one skipped function, not the server.
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { defaultLogger } from './logger.ts';
import type { FromThread, InspectedMessage } from './thread-protocol.ts';
import { startWorker } from './thread-pool.ts';
import type { DiscoveredFunction } from './types.ts';

const MODULE_FILE = /\.(ts|js|mjs)$/;
const IGNORED_FILE = /(\.d\.ts|\.(spec|test)\.(ts|js|mjs))$/;
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** Per file; a top-level infinite loop is skipped after this. */
const IMPORT_TIMEOUT_MS = 10_000;

export async function discoverFunctions(functionsDir: string, opts: { logger?: Logger } = {}): Promise<DiscoveredFunction[]> {
  const logger = opts.logger ?? defaultLogger();
  const dir = path.resolve(functionsDir);
  const entries = await readdir(dir, { withFileTypes: true });
  const files = entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && MODULE_FILE.test(e.name) && !IGNORED_FILE.test(e.name))
    .map((e) => e.name)
    .sort();
  if (files.length === 0) return [];

  const inspector = new ModuleInspector();
  const found: DiscoveredFunction[] = [];
  const names = new Set<string>();
  try {
    for (const fileName of files) {
      const file = path.join(dir, fileName);
      const name = fileName.replace(MODULE_FILE, '');
      if (!FUNCTION_NAME.test(name)) {
        logger.warn({ file }, 'skipping function file: name must match [A-Za-z0-9_-]{1,64}');
        continue;
      }
      if (names.has(name)) {
        logger.warn({ file, name }, 'skipping function file: another file already defines this name');
        continue;
      }
      const inspected = await inspector.inspect(file);
      if (!inspected.ok) {
        logger.warn({ file, error: inspected.error }, 'skipping function file: import failed');
        continue;
      }
      if (!inspected.hasHandler) continue;
      const content = await readFile(file);
      names.add(name);
      found.push({
        name,
        file,
        config: inspected.config ?? {},
        contentHash: createHash('sha256').update(content).digest('hex'),
        ...(inspected.schedule !== undefined ? { schedule: inspected.schedule } : {}),
      });
    }
  } finally {
    await inspector.close();
  }
  return found;
}

/** Imports modules one by one in a thread, replacing the thread when a module kills it. */
class ModuleInspector {
  private worker: Worker | undefined;
  private nextId = 1;

  async inspect(file: string): Promise<InspectedMessage> {
    const worker = (this.worker ??= startWorker());
    const id = this.nextId++;
    return new Promise<InspectedMessage>((resolve) => {
      let lastError: Error | undefined;
      const done = (result: InspectedMessage): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(result);
      };
      const discard = (): void => {
        if (this.worker === worker) this.worker = undefined;
      };
      const onMessage = (msg: FromThread): void => {
        if (msg.t === 'inspected' && msg.id === id) done(msg);
      };
      const onError = (err: Error): void => {
        lastError = err;
      };
      const onExit = (code: number): void => {
        discard();
        done({ t: 'inspected', id, ok: false, error: `module ended its thread (exit status ${code}${lastError ? `: ${lastError.message}` : ''})` });
      };
      const timer = setTimeout(() => {
        discard();
        void worker.terminate();
        done({ t: 'inspected', id, ok: false, error: `import did not finish within ${IMPORT_TIMEOUT_MS} ms` });
      }, IMPORT_TIMEOUT_MS);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage({ t: 'inspect', id, moduleUrl: pathToFileURL(file).href });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }
}
