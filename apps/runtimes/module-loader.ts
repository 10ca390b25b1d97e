// One way to load a handler module, for thread and inline isolation alike: the same
// import (tsx's hooks, registered by register-loader.mjs in every thread that loads
// handlers), the same export lookup, the same errors. A module that cannot load because
// it is ES module syntax in a CommonJS package scope gets one actionable message.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorType, functionError, toFunctionError } from './errors.ts';
import type { FunctionError, Handler } from './types.ts';

export type LoadedHandler = { ok: true; handler: Handler } | { ok: false; error: FunctionError };

/** Imports a handler module by file:// URL; the module system caches it per thread. */
export function importHandlerModule(moduleUrl: string): Promise<Record<string, unknown>> {
  return import(moduleUrl) as Promise<Record<string, unknown>>;
}

/** The handler export of an imported module, or Runtime.HandlerNotFound. */
export function pickHandler(mod: Record<string, unknown>, exportName: string): LoadedHandler {
  const handler = mod[exportName];
  if (typeof handler !== 'function') {
    return { ok: false, error: functionError(ErrorType.HandlerNotFound, `${exportName} is not a function exported by the module`) };
  }
  return { ok: true, handler: handler.length >= 3 ? fromCallbackStyle(handler as CallbackHandler) : (handler as Handler) };
}

type CallbackHandler = (event: unknown, context: unknown, callback: (err?: unknown, result?: unknown) => void) => unknown;

/**
 * Lambda's callback style, `(event, context, callback)`: the attempt ends at the first of
 * the callback and a returned promise settling, as in Lambda's Node.js runtime.
 */
function fromCallbackStyle(handler: CallbackHandler): Handler {
  return (event, context) =>
    new Promise((resolve, reject) => {
      const returned = handler(event, context, (err, result) => (err !== undefined && err !== null ? reject(err) : resolve(result)));
      if (returned && typeof (returned as PromiseLike<unknown>).then === 'function') (returned as PromiseLike<unknown>).then(resolve, reject);
    });
}

/** What a failed import reports: Runtime.ImportModuleError naming the cause. */
export function importFailure(err: unknown, moduleUrl: string): FunctionError {
  const e = toFunctionError(err);
  const file = moduleUrl.startsWith('file:') ? fileURLToPath(moduleUrl) : moduleUrl;
  if (isModuleFormatError(err) && packageScopeOf(file) === 'commonjs') {
    const cause = e.errorMessage.split('\n')[0] ?? '';
    return functionError(
      ErrorType.ImportModuleError,
      `${file} is loaded as CommonJS because no package.json with "type": "module" covers it, and it cannot load that way ` +
        `(${e.errorType}: ${cause}). Add a package.json with {"type": "module"} to ${path.dirname(file)} (or a directory above it), ` +
        'or name the file .mts / .mjs.',
      e.trace,
    );
  }
  return functionError(ErrorType.ImportModuleError, `${e.errorType}: ${e.errorMessage}`, e.trace);
}

const FORMAT_CODES = new Set(['ERR_REQUIRE_ESM', 'ERR_REQUIRE_CYCLE_MODULE', 'ERR_REQUIRE_ASYNC_MODULE']);
const FORMAT_MESSAGES = [
  '"cjs" output format', // esbuild compiling ESM-only syntax (top-level await) as CommonJS
  'Cannot use import statement outside a module',
  "Cannot use 'import.meta' outside a module",
  "Unexpected token 'export'",
];

function isModuleFormatError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && FORMAT_CODES.has(code)) return true;
  const message = String((err as { message?: unknown } | null)?.message ?? err);
  return FORMAT_MESSAGES.some((m) => message.includes(m));
}

/** Node's rule: .mjs/.mts are ES modules, .cjs/.cts CommonJS, others follow the nearest package.json's "type". */
export function packageScopeOf(file: string): 'module' | 'commonjs' {
  const ext = path.extname(file);
  if (ext === '.mjs' || ext === '.mts') return 'module';
  if (ext === '.cjs' || ext === '.cts') return 'commonjs';
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { type?: unknown };
      return pkg.type === 'module' ? 'module' : 'commonjs';
    } catch {
      // no (readable) package.json here: look further up
    }
    if (path.dirname(dir) === dir) return 'commonjs';
  }
}
