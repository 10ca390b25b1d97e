// createRuntimes: picks how an attempt runs (thread pool, inline, HTTP) and turns every
// problem of the function into an outcome, so callers only ever handle outcomes.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorType, HandlerPathError, functionError } from './errors.ts';
import { resolveHandlerPath, resolveLambdaHandler, type ResolvedHandler } from './handler-path.ts';
import { runHttp } from './http-runtime.ts';
import { loadInlineHandler, runInline } from './inline.ts';
import { withErrorReport } from './attempt-log.ts';
import { shownVersion } from './context.ts';
import { defaultLogger } from './logger.ts';
import { ThreadPool, type RunRequest } from './thread-pool.ts';
import type { AttemptOutcome, AttemptRequest, Handler, ReserveOptions, RunnableFunction, Runtimes, RuntimeSlot, RuntimesOptions } from './types.ts';

export function createRuntimes(opts: RuntimesOptions): Runtimes {
  const functionsDir = path.resolve(opts.functionsDir);
  const logger = opts.logger ?? defaultLogger();
  // Threads mostly wait on I/O or a deadline, so allow more than one per core.
  const poolSize = Math.max(1, opts.poolSize ?? Math.max(4, availableParallelism() * 2));
  const httpGraceMs = Math.max(0, opts.httpTimeoutGraceMs ?? 0);
  const warmThreads = Math.max(0, opts.warmThreads ?? 0);

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

  type Target = ResolvedHandler & { moduleUrl: string; env?: Record<string, string> };
  const packageDirs = new Map<string, Promise<string>>();

  function packageDir(sha: string): Promise<string> {
    let dir = packageDirs.get(sha);
    if (dir === undefined) {
      dir = (opts.codePackageDir as (sha: string) => Promise<string>)(sha);
      packageDirs.set(sha, dir);
      dir.catch(() => packageDirs.delete(sha));
    }
    return dir;
  }

  /**
   * FUNCTIONS_DIR code: the file in this host's functions directory; on a host without
   * it, the file's package from the database (codeHash, docs/control-plane.md), with
   * the server's environment as a file from the directory has. A version registered
   * before files were packed has no such package: the file's absence is the answer.
   */
  async function fileTarget(fn: RunnableFunction): Promise<Target | AttemptOutcome> {
    const local = resolveHandler(fn.handler);
    if (!('ok' in local) || !fn.codeHash || !/^[0-9a-f]{64}$/.test(fn.codeHash) || opts.codePackageDir === undefined) return local;
    const key = `file\u0000${fn.codeHash}\u0000${fn.handler ?? ''}`;
    const hit = resolved.get(key);
    if (hit !== undefined) return hit;
    let root: string;
    try {
      root = await packageDir(fn.codeHash);
    } catch {
      return local;
    }
    try {
      const r = resolveHandlerPath(root, fn.handler as string);
      const target: Target = { ...r, moduleUrl: pathToFileURL(r.file).href };
      resolved.set(key, target);
      return target;
    } catch (err) {
      if (err instanceof HandlerPathError) return failure(ErrorType.HandlerNotFound, err.message);
      throw err;
    }
  }

  /**
   * Package code: the package's directory (extracted into the local cache on first use),
   * the handler inside it, and the Lambda environment of this version. Cached by
   * (package, handler, version): a new version is new code or a new environment.
   */
  async function packageTarget(fn: RunnableFunction): Promise<Target | AttemptOutcome> {
    const sha = fn.codeSha256 as string;
    const key = `${sha}\u0000${fn.handler ?? ''}\u0000${fn.name}\u0000${fn.version}`;
    const hit = resolved.get(key);
    if (hit !== undefined) return hit;
    if (fn.handler === null || fn.handler === '') return failure(ErrorType.HandlerNotFound, 'Function has no handler');
    if (opts.codePackageDir === undefined) return failure(ErrorType.HandlerNotFound, 'This process cannot load code packages');
    let root: string;
    try {
      root = await packageDir(sha);
    } catch (err) {
      return failure(ErrorType.ImportModuleError, `The code package ${sha} could not be loaded: ${(err as Error)?.message ?? String(err)}`);
    }
    try {
      const r = resolveLambdaHandler(root, fn.handler);
      const target: Target = { ...r, moduleUrl: pathToFileURL(r.file).href, env: lambdaEnvironment(fn, root, opts.region ?? 'us-east-1') };
      resolved.set(key, target);
      return target;
    } catch (err) {
      if (err instanceof HandlerPathError) return failure(ErrorType.HandlerNotFound, err.message);
      throw err;
    }
  }

  function poolFor(memoryMb: number): ThreadPool {
    let pool = pools.get(memoryMb);
    if (pool === undefined) {
      pool = new ThreadPool(memoryMb, poolSize, logger);
      pools.set(memoryMb, pool);
      if (warmThreads > 0) pool.prestart(warmThreads);
    }
    return pool;
  }

  async function runInlineSlow(fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    const target = await fileTarget(fn);
    if ('ok' in target) return target;
    const loaded = await loadInlineHandler(target.file, target.exportName);
    if (!loaded.ok) return { ok: false, error: loaded.error, durationMs: 0, log: '' };
    // the fast path (by handler) only for the directory's own files: a packaged file is
    // looked up by its package each time, so a new version of it is new code
    if (target.moduleUrl === resolvedLocalUrl(fn.handler)) inlineHandlers.set(fn.handler as string, loaded.handler);
    return runInline(loaded.handler, fn, req, signal);
  }

  function resolvedLocalUrl(handler: string | null): string | undefined {
    return handler === null ? undefined : resolved.get(handler)?.moduleUrl;
  }

  const threadRequest = (fn: RunnableFunction, target: { moduleUrl: string; exportName: string; env?: Record<string, string> }, req: AttemptRequest): RunRequest => ({
    // AWS_LAMBDA_FUNCTION_VERSION follows how this invocation named the version
    ...(target.env ? { env: { ...target.env, AWS_LAMBDA_FUNCTION_VERSION: shownVersion(fn.version, req.qualifier, req.replay) } } : {}),
    moduleUrl: target.moduleUrl,
    exportName: target.exportName,
    payload: req.payload,
    invocationId: req.invocationId,
    functionName: fn.name,
    functionVersion: fn.version,
    qualifier: req.qualifier ?? null,
    attempt: req.attempt,
    timeoutMs: fn.timeoutMs,
    clientContext: req.clientContext,
    chainDepth: req.chainDepth ?? 0,
    memoryMb: fn.memoryMb,
    replay: req.replay ?? null,
  });
  const threadCouldNotStart = (err: unknown): AttemptOutcome =>
    failure(ErrorType.ExitError, `Runtime thread could not start: ${(err as Error)?.message ?? String(err)}`);

  async function runPackage(fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    const target = await packageTarget(fn);
    if ('ok' in target) return target;
    if (fn.isolation === 'inline') {
      // inline shares the server's process.env: package code should run in threads (the default)
      const key = target.moduleUrl + '#' + target.exportName;
      let handler = inlineHandlers.get(key);
      if (handler === undefined) {
        const loaded = await loadInlineHandler(target.file, target.exportName);
        if (!loaded.ok) return { ok: false, error: loaded.error, durationMs: 0, log: '' };
        handler = loaded.handler;
        inlineHandlers.set(key, handler);
      }
      return runInline(handler, fn, req, signal);
    }
    return poolFor(heapLimitMb(fn.memoryMb)).run(threadRequest(fn, target, req), signal).catch(threadCouldNotStart);
  }

  const runtimes: Runtimes = {
    run(fn, req, signal) {
      return runAttempt(fn, req, signal).then(withErrorReport);
    },

    async reserve(fn, options = {}): Promise<RuntimeSlot> {
      const slot = await reserveRuntime(fn, options);
      return slot.granted ? { ...slot, run: (req, signal) => slot.run(req, signal).then(withErrorReport) } : slot;
    },

    async close() {
      closed = true;
      await Promise.all([...pools.values()].map((p) => p.close()));
      pools.clear();
    },
  };

  function runAttempt(fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    if (closed) return Promise.resolve(failure(ErrorType.Aborted, 'Attempt aborted: Runtimes is closed'));
    if (fn.runtime === 'HTTP') return runHttp(fn, req, httpGraceMs, signal);
    if (fn.codeSha256) return runPackage(fn, req, signal);

    if (fn.isolation === 'inline') {
      const handler = fn.handler === null ? undefined : inlineHandlers.get(fn.handler);
      if (handler !== undefined) return Promise.resolve(runInline(handler, fn, req, signal));
      return runInlineSlow(fn, req, signal);
    }

    return fileTarget(fn).then((target) =>
      'ok' in target ? target : poolFor(heapLimitMb(fn.memoryMb)).run(threadRequest(fn, target, req), signal).catch(threadCouldNotStart),
    );
  }

  async function reserveRuntime(fn: RunnableFunction, options: ReserveOptions): Promise<RuntimeSlot> {
    if (closed) return { granted: false, reason: 'closed', retryAfterMs: 0, message: 'Runtimes is closed' };
    // inline and HTTP attempts do not queue here: they start at once
    const direct: RuntimeSlot = { granted: true, run: (req, signal) => runAttempt(fn, req, signal), release: () => {} };
    if (fn.runtime === 'HTTP' || fn.isolation === 'inline') return direct;
    const target = fn.codeSha256 ? await packageTarget(fn) : await fileTarget(fn);
    // a handler that cannot be found needs no thread to fail
    if ('ok' in target) return direct;
    let slot;
    try {
      slot = await poolFor(heapLimitMb(fn.memoryMb)).reserve({ maxWaitMs: options.maxWaitMs, signal: options.signal });
    } catch (err) {
      return { granted: true, run: () => Promise.resolve(threadCouldNotStart(err)), release: () => {} };
    }
    if (!slot.granted) return slot;
    return {
      granted: true,
      run: (req, signal) => slot.run(threadRequest(fn, target, req), signal).catch(threadCouldNotStart),
      release: () => slot.release(),
    };
  }
  // the default memory size's threads start with the process (see `warmThreads`)
  if (warmThreads > 0) poolFor(256); // functions' default memoryMb (db/functions.ts)
  return runtimes;
}

/** V8 cannot run in a tiny heap; nonsense values fall back to the contract's default. */
function heapLimitMb(memoryMb: number): number {
  if (!Number.isFinite(memoryMb) || memoryMb <= 0) return 256;
  return Math.max(16, Math.floor(memoryMb));
}

function failure(errorType: string, errorMessage: string): AttemptOutcome {
  return { ok: false, error: functionError(errorType, errorMessage), durationMs: 0, log: '' };
}

/**
 * What process.env holds for package code: its Environment.Variables and Lambda's
 * reserved variables, nothing of the server's own environment (docs/control-plane.md).
 */
export function lambdaEnvironment(fn: RunnableFunction, taskRoot: string, region: string): Record<string, string> {
  const logGroup = `/aws/lambda/${fn.name}`;
  return {
    ...(fn.environment ?? {}),
    PATH: '/usr/local/bin:/usr/bin:/bin',
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    NODE_PATH: taskRoot,
    LAMBDA_TASK_ROOT: taskRoot,
    LAMBDA_RUNTIME_DIR: taskRoot,
    _HANDLER: fn.handler ?? '',
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs',
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    // per attempt (threadRequest): `$LATEST` unless the invocation named a version or alias
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memoryMb),
    AWS_LAMBDA_LOG_GROUP_NAME: logGroup,
    AWS_LAMBDA_LOG_STREAM_NAME: `${fn.name}/${fn.version}`,
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
  };
}
