// Where a MODULE handler lives. Functions can be created over the API with any handler
// string, so a path must never reach a file outside FUNCTIONS_DIR (".." or symlinks).
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { HandlerPathError } from './errors.ts';

export interface ResolvedHandler {
  file: string;
  exportName: string;
}

const EXPORT_NAME = /^[A-Za-z_$][\w$]*$/;
/** Tried in order when the handler names a module without its extension ("echo"). */
const EXTENSIONS = ['.ts', '.js', '.mjs'];

export function resolveHandlerPath(functionsDir: string, handler: string): ResolvedHandler {
  const hash = handler.lastIndexOf('#');
  const modulePath = hash === -1 ? handler : handler.slice(0, hash);
  const exportName = hash === -1 || hash === handler.length - 1 ? 'handler' : handler.slice(hash + 1);
  if (modulePath.trim() === '' || modulePath.includes('\0')) {
    throw new HandlerPathError(`Invalid handler path '${handler}'`, 'invalid');
  }
  if (!EXPORT_NAME.test(exportName)) {
    throw new HandlerPathError(`Invalid export name '${exportName}' in handler '${handler}'`, 'invalid');
  }

  let root: string;
  try {
    root = realpathSync(functionsDir);
  } catch {
    throw new HandlerPathError(`Functions directory '${functionsDir}' does not exist`, 'missing');
  }
  const candidate = path.resolve(root, modulePath);
  // Refuse before touching the file system, so probing paths outside reveals nothing.
  if (!isInside(root, candidate)) {
    throw new HandlerPathError(`Handler '${handler}' is outside the functions directory`, 'outside');
  }

  const file = findFile(candidate);
  if (file === undefined) throw new HandlerPathError(`Handler module '${modulePath}' does not exist`, 'missing');
  // The lexical check above is not enough: a symlink inside may point anywhere.
  if (!isInside(root, file)) {
    throw new HandlerPathError(`Handler '${handler}' is outside the functions directory`, 'outside');
  }
  return { file, exportName };
}

function findFile(candidate: string): string | undefined {
  const tries = path.extname(candidate) === '' ? [candidate, ...EXTENSIONS.map((e) => candidate + e)] : [candidate];
  for (const p of tries) {
    try {
      const real = realpathSync(p);
      if (statSync(real).isFile()) return real;
    } catch {
      // not this one
    }
  }
  return undefined;
}

function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Lambda's Node.js order for `file.export`: as written, then .js, .mjs, .cjs; .ts last (this server's loader). */
const LAMBDA_EXTENSIONS = ['', '.js', '.mjs', '.cjs', '.ts'];

/**
 * A Lambda handler (`index.handler`, `src/app.main`) inside a code package's directory:
 * the module is the path up to the first dot of its last segment, the export the rest.
 * Nothing outside the directory, as for FUNCTIONS_DIR.
 */
export function resolveLambdaHandler(dir: string, handler: string): ResolvedHandler {
  const slash = handler.lastIndexOf('/');
  const base = handler.slice(slash + 1);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) throw new HandlerPathError(`Bad handler ${handler}: expected file.export, such as index.handler`, 'invalid');
  const modulePath = handler.slice(0, slash + 1) + base.slice(0, dot);
  const exportName = base.slice(dot + 1);
  if (!EXPORT_NAME.test(exportName)) throw new HandlerPathError(`Invalid export name '${exportName}' in handler '${handler}'`, 'invalid');
  let root: string;
  try {
    root = realpathSync(dir);
  } catch {
    throw new HandlerPathError(`Code directory '${dir}' does not exist`, 'missing');
  }
  const candidate = path.resolve(root, modulePath);
  if (!isInside(root, candidate)) throw new HandlerPathError(`Handler '${handler}' is outside the code package`, 'outside');
  for (const ext of LAMBDA_EXTENSIONS) {
    try {
      const real = realpathSync(candidate + ext);
      if (statSync(real).isFile()) {
        if (!isInside(root, real)) throw new HandlerPathError(`Handler '${handler}' is outside the code package`, 'outside');
        return { file: real, exportName };
      }
    } catch (e) {
      if (e instanceof HandlerPathError) throw e;
    }
  }
  throw new HandlerPathError(`Cannot find module '${modulePath}' in the code package (tried ${LAMBDA_EXTENSIONS.map((e) => modulePath + e).join(', ')})`, 'missing');
}
