// Inline isolation: the handler runs on the caller's thread, no structured clone and no
// thread hop. Trade-off: it cannot be killed. At the deadline we abort context.signal and
// report Sandbox.Timedout, but a handler that ignores the signal keeps running (and a
// synchronous infinite loop blocks the whole process); memoryMb is not enforced and a
// crash takes the process down. Use it for trusted, fast handlers; this path serves the
// 12k invocations/s benchmark, so it avoids per-attempt work a handler does not need.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { AttemptContext } from './context.ts';
import { ErrorType, describeReason, functionError, timeoutError, toFunctionError } from './errors.ts';
import { encodeResult } from './result.ts';
import type { AttemptOutcome, AttemptRequest, FunctionError, Handler, RunnableFunction } from './types.ts';

export type LoadedHandler = { ok: true; handler: Handler } | { ok: false; error: FunctionError };

/** Imports a handler module on this thread; the module system caches it. */
export async function loadInlineHandler(file: string, exportName: string): Promise<LoadedHandler> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    const e = toFunctionError(err);
    return { ok: false, error: functionError(ErrorType.ImportModuleError, `${e.errorType}: ${e.errorMessage}`, e.trace) };
  }
  const handler = mod[exportName];
  if (typeof handler !== 'function') {
    return { ok: false, error: functionError(ErrorType.HandlerNotFound, `${exportName} is not a function exported by the module`) };
  }
  return { ok: true, handler: handler as Handler };
}

export function runInline(handler: Handler, fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> | AttemptOutcome {
  const startedAt = performance.now();
  if (signal?.aborted) return failed(functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal.reason)}`), startedAt, '');
  const context = new AttemptContext({
    invocationId: req.invocationId,
    functionName: fn.name,
    functionVersion: fn.version,
    attempt: req.attempt,
    deadline: Date.now() + fn.timeoutMs,
    clientContext: req.clientContext,
    selfTimed: false,
  });

  let returned: unknown;
  try {
    returned = handler(req.payload, context);
  } catch (err) {
    return failed(toFunctionError(err), startedAt, context.collectedLog());
  }
  // Synchronous handlers need no timer at all.
  if (!isThenable(returned)) return succeeded(returned, startedAt, context);

  return new Promise<AttemptOutcome>((resolve) => {
    let settled = false;
    const finish = (outcome: AttemptOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    const giveUp = (error: FunctionError): void => {
      context.expire();
      context.appendLog('ERROR', `${error.errorType}: ${error.errorMessage}`);
      finish(failed(error, startedAt, context.collectedLog()));
    };
    const timer = setTimeout(() => giveUp(timeoutError(fn.timeoutMs)), fn.timeoutMs);
    const onAbort = (): void => giveUp(functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal?.reason)}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    returned.then(
      (value) => finish(succeeded(value, startedAt, context)),
      (err: unknown) => finish(failed(toFunctionError(err), startedAt, context.collectedLog())),
    );
  });
}

function succeeded(value: unknown, startedAt: number, context: AttemptContext): AttemptOutcome {
  const encoded = encodeResult(value);
  if (!encoded.ok) return failed(encoded.error, startedAt, context.collectedLog());
  // The value itself is returned (callers serialise it to the same JSON); JSON-less values become null.
  const result = encoded.json === 'null' ? null : value;
  return { ok: true, result, durationMs: Math.round(performance.now() - startedAt), log: context.collectedLog() };
}

function failed(error: FunctionError, startedAt: number, log: string): AttemptOutcome {
  return { ok: false, error, durationMs: Math.round(performance.now() - startedAt), log };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}
