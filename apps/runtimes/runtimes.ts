// createRuntimes: picks how an attempt runs (thread pool, inline, HTTP) and turns every
// problem of the function into an outcome, so callers only ever handle outcomes.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorType, HandlerPathError, functionError } from './errors.ts';
import { resolveHandlerPath, type ResolvedHandler } from './handler-path.ts';
import { runHttp } from './http-runtime.ts';
import { loadInlineHandler, runInline } from './inline.ts';
import { defaultLogger } from './logger.ts';
import { ThreadPool } from './thread-pool.ts';
import type { AttemptOutcome, AttemptRequest, Handler, RunnableFunction, Runtimes, RuntimesOptions } from './types.ts';

export function createRuntimes(opts: RuntimesOptions): Runtimes {
  const functionsDir = path.resolve(opts.functionsDir);
  const logger = opts.logger ?? defaultLogger();
  // Threads mostly wait on I/O or a deadline, so allow more than one per core.
  const poolSize = Math.max(1, opts.poolSize ?? Math.max(4, availableParallelism() * 2));
  const httpGraceMs = Math.max(0, opts.httpTimeoutGraceMs ?? 0);

  const pools = new Map<number, ThreadPool>();
  // Keyed by the handler string as configured: the hot path does one Map lookup.
  const resolved = new Map<string, ResolvedHandler & { moduleUrl: string }>();
  const inlineHandlers = new Map<string, Handler>();
  let closed = false;

  /** Successful resolutions are cached; failures are not (the file may appear later). */
  function resolveHandler(handler: string | null): (ResolvedHandler & { moduleUrl: string }) | AttemptOutcome {
    if (handler === null || handler === '') return failure(ErrorType.HandlerNotFound, 'Function has no handler');
    let hit = resolved.get(handler);
    if (hit === undefined) {
      try {
        const r = resolveHandlerPath(functionsDir, handler);
        hit = { ...r, moduleUrl: pathToFileURL(r.file).href };
      } catch (err) {
        if (err instanceof HandlerPathError) return failure(ErrorType.HandlerNotFound, err.message);
        throw err;
      }
      resolved.set(handler, hit);
    }
    return hit;
  }

  function poolFor(memoryMb: number): ThreadPool {
    let pool = pools.get(memoryMb);
    if (pool === undefined) {
      pool = new ThreadPool(memoryMb, poolSize, logger);
      pools.set(memoryMb, pool);
    }
    return pool;
  }

  async function runInlineSlow(fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    const target = resolveHandler(fn.handler);
    if ('ok' in target) return target;
    const loaded = await loadInlineHandler(target.file, target.exportName);
    if (!loaded.ok) return { ok: false, error: loaded.error, durationMs: 0, log: '' };
    inlineHandlers.set(fn.handler as string, loaded.handler);
    return runInline(loaded.handler, fn, req, signal);
  }

  return {
    run(fn, req, signal) {
      if (closed) return Promise.resolve(failure(ErrorType.Aborted, 'Attempt aborted: Runtimes is closed'));
      if (fn.runtime === 'HTTP') return runHttp(fn, req, httpGraceMs, signal);

      if (fn.isolation === 'inline') {
        const handler = fn.handler === null ? undefined : inlineHandlers.get(fn.handler);
        if (handler !== undefined) return Promise.resolve(runInline(handler, fn, req, signal));
        return runInlineSlow(fn, req, signal);
      }

      const target = resolveHandler(fn.handler);
      if ('ok' in target) return Promise.resolve(target);
      return poolFor(heapLimitMb(fn.memoryMb)).run(
        {
          moduleUrl: target.moduleUrl,
          exportName: target.exportName,
          payload: req.payload,
          invocationId: req.invocationId,
          functionName: fn.name,
          functionVersion: fn.version,
          attempt: req.attempt,
          timeoutMs: fn.timeoutMs,
          clientContext: req.clientContext,
        },
        signal,
      ).catch((err: unknown) => failure(ErrorType.ExitError, `Runtime thread could not start: ${(err as Error)?.message ?? String(err)}`));
    },

    async close() {
      closed = true;
      await Promise.all([...pools.values()].map((p) => p.close()));
      pools.clear();
    },
  };
}

/** V8 cannot run in a tiny heap; nonsense values fall back to the contract's default. */
function heapLimitMb(memoryMb: number): number {
  if (!Number.isFinite(memoryMb) || memoryMb <= 0) return 256;
  return Math.max(16, Math.floor(memoryMb));
}

function failure(errorType: string, errorMessage: string): AttemptOutcome {
  return { ok: false, error: functionError(errorType, errorMessage), durationMs: 0, log: '' };
}
