// Inline isolation: the handler runs on the caller's thread, no structured clone and no
// thread hop. Trade-off: it cannot be killed. At the deadline we abort context.signal and
// report Sandbox.Timedout, but a handler that ignores the signal keeps running (and a
// synchronous infinite loop blocks the whole process); memoryMb is not enforced and a
// crash takes the process down. A handler that blocked the event loop past its deadline
// is still recorded as timed out when it finally returns (its result is dropped), so the
// ledger says what happened even though nothing could stop it. Use it for trusted, fast
// handlers; this path serves the 12k invocations/s benchmark, so it avoids per-attempt
// work a handler does not need.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { AttemptContext } from './context.ts';
import { ErrorType, describeReason, functionError, timeoutError, toFunctionError } from './errors.ts';
import { importFailure, importHandlerModule, pickHandler, type LoadedHandler } from './module-loader.ts';
import { encodeResult } from './result.ts';
import type { AttemptOutcome, AttemptRequest, FunctionError, Handler, RunnableFunction } from './types.ts';

export type { LoadedHandler } from './module-loader.ts';

/** Imports a handler module on this thread, the same way a runtime thread does (module-loader.ts). */
export async function loadInlineHandler(file: string, exportName: string): Promise<LoadedHandler> {
  const moduleUrl = pathToFileURL(file).href;
  let mod: Record<string, unknown>;
  try {
    mod = await importHandlerModule(moduleUrl);
  } catch (err) {
    return { ok: false, error: importFailure(err, moduleUrl) };
  }
  return pickHandler(mod, exportName);
}

export function runInline(handler: Handler, fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome> | AttemptOutcome {
  const startedAt = performance.now();
  if (signal?.aborted) return failed(functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal.reason)}`), startedAt, '');
  const context = new AttemptContext({
    invocationId: req.invocationId,
    functionName: fn.name,
    functionVersion: fn.version,
    qualifier: req.qualifier,
    attempt: req.attempt,
    deadline: Date.now() + fn.timeoutMs,
    clientContext: req.clientContext,
    chainDepth: req.chainDepth,
    memoryMb: fn.memoryMb,
    replay: req.replay,
    selfTimed: false,
  });

  let returned: unknown;
  try {
    returned = handler(req.payload, context);
  } catch (err) {
    return overran(fn, startedAt, context, true) ?? failed(toFunctionError(err), startedAt, context.collectedLog());
  }
  // the synchronous part of the call (all of a sync handler) ran past the deadline: nothing could fire meanwhile
  const blocked = overran(fn, startedAt, context, true);
  // Synchronous handlers need no timer at all.
  if (!isThenable(returned)) return blocked ?? succeeded(returned, startedAt, context);
  if (blocked !== null) {
    returned.then(undefined, () => {}); // its outcome no longer matters; do not leave a rejection unhandled
    return blocked;
  }

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
      if (settled) return;
      context.expire();
      context.appendLog('ERROR', `${error.errorType}: ${error.errorMessage}`);
      finish(failed(error, startedAt, context.collectedLog()));
    };
    const timer = setTimeout(() => finish(timedOut(fn, startedAt, context)), fn.timeoutMs);
    const onAbort = (): void => giveUp(functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal?.reason)}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    returned.then(
      // settling after the deadline (a block after an await kept the timer from firing) is a timeout too
      (value) => finish(overran(fn, startedAt, context, false) ?? succeeded(value, startedAt, context)),
      (err: unknown) => finish(overran(fn, startedAt, context, false) ?? failed(toFunctionError(err), startedAt, context.collectedLog())),
    );
  });
}

function timedOut(fn: RunnableFunction, startedAt: number, context: AttemptContext): AttemptOutcome {
  const error = timeoutError(fn.timeoutMs);
  context.expire();
  context.appendLog('ERROR', `${error.errorType}: ${error.errorMessage}`);
  return failed(error, startedAt, context.collectedLog());
}

/**
 * The attempt ended after its deadline: whatever the handler returned or threw, it timed
 * out. When its synchronous part alone ran past the deadline, it blocked the event loop
 * (no timer could fire) and the log says so.
 */
function overran(fn: RunnableFunction, startedAt: number, context: AttemptContext, synchronous: boolean): AttemptOutcome | null {
  const ranMs = performance.now() - startedAt;
  if (ranMs <= fn.timeoutMs) return null;
  if (synchronous) {
    context.appendLog(
      'ERROR',
      `The handler blocked the event loop for ${Math.round(ranMs)} ms, past its ${fn.timeoutMs} ms timeout; ` +
        "inline isolation cannot interrupt it (isolation 'thread' stops a handler at its deadline)",
    );
  }
  return timedOut(fn, startedAt, context);
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
