// The loop inside a runtime thread: import the handler module (cached for the thread's
// life), call it with an AttemptContext, post the result back as JSON. One attempt runs
// at a time, so the main thread can kill this thread on timeout without hurting others.
import { parentPort } from 'node:worker_threads';
import { formatLogLine, type LogLevel } from './attempt-log.ts';
import { AttemptContext } from './context.ts';
import { ErrorType, functionError, toFunctionError } from './errors.ts';
import { encodeResult } from './result.ts';
import type { DoneMessage, FromThread, InspectMessage, RunMessage, ToThread } from './thread-protocol.ts';
import type { Handler } from './types.ts';

const port = parentPort;
if (port === null) throw new Error('thread-main.ts must run inside a worker thread');

const post = (msg: FromThread): void => port.postMessage(msg);

const modules = new Map<string, Promise<Record<string, unknown>>>();

function importModule(url: string): Promise<Record<string, unknown>> {
  let mod = modules.get(url);
  if (mod === undefined) {
    mod = import(url) as Promise<Record<string, unknown>>;
    modules.set(url, mod);
    // A failed import is retried next time (the file may have been fixed).
    mod.catch(() => modules.delete(url));
  }
  return mod;
}

/** Attempt whose log receives console output; null between attempts. */
let currentAttemptId: number | null = null;

captureConsole();

port.on('message', (msg: ToThread) => {
  if (msg.t === 'run') void runAttempt(msg);
  else if (msg.t === 'inspect') void inspectModule(msg);
});

async function runAttempt(msg: RunMessage): Promise<void> {
  const id = msg.id;
  currentAttemptId = id;
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(msg.moduleUrl);
  } catch (err) {
    const e = toFunctionError(err);
    finish({ t: 'done', id, ok: false, error: functionError(ErrorType.ImportModuleError, `${e.errorType}: ${e.errorMessage}`, e.trace) });
    return;
  }
  const handler = mod[msg.exportName];
  if (typeof handler !== 'function') {
    finish({ t: 'done', id, ok: false, error: functionError(ErrorType.HandlerNotFound, `${msg.exportName} is not a function exported by the module`) });
    return;
  }

  const deadline = Date.now() + msg.timeoutMs;
  if (!msg.warm) post({ t: 'started', id, deadline });
  const context = new AttemptContext({
    invocationId: msg.invocationId,
    functionName: msg.functionName,
    functionVersion: msg.functionVersion,
    attempt: msg.attempt,
    deadline,
    clientContext: msg.clientContext,
    writeLog: (line) => post({ t: 'log', id, line }),
    selfTimed: true,
  });
  try {
    const value = await (handler as Handler)(msg.payload, context);
    const encoded = encodeResult(value);
    finish(encoded.ok ? { t: 'done', id, ok: true, json: encoded.json } : { t: 'done', id, ok: false, error: encoded.error });
  } catch (err) {
    finish({ t: 'done', id, ok: false, error: toFunctionError(err), timedOut: context.isExpired });
  } finally {
    context.dispose();
  }
}

function finish(msg: DoneMessage): void {
  currentAttemptId = null;
  post(msg);
}

async function inspectModule(msg: InspectMessage): Promise<void> {
  try {
    const mod = await importModule(msg.moduleUrl);
    const config = mod['config'];
    post({
      t: 'inspected',
      id: msg.id,
      ok: true,
      hasHandler: typeof mod['handler'] === 'function',
      // JSON round trip: config is data; functions or class instances in it do not cross threads.
      config: isPlainObject(config) ? (JSON.parse(JSON.stringify(config)) as Record<string, unknown>) : {},
    });
  } catch (err) {
    post({ t: 'inspected', id: msg.id, ok: false, error: String((err as Error)?.message ?? err) });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * console.* inside a handler lands in the attempt's log, like CloudWatch in Lambda.
 * Output outside an attempt (module top level during discovery, stray timers) keeps
 * going to the real console.
 */
function captureConsole(): void {
  const levels: Array<[keyof Console, LogLevel]> = [
    ['log', 'INFO'],
    ['info', 'INFO'],
    ['debug', 'INFO'],
    ['warn', 'WARN'],
    ['error', 'ERROR'],
  ];
  const target = console as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [method, level] of levels) {
    const original = target[method]?.bind(console);
    if (original === undefined) continue;
    target[method] = (...args: unknown[]) => {
      if (currentAttemptId === null) original(...args);
      else post({ t: 'log', id: currentAttemptId, line: formatLogLine(level, args) });
    };
  }
}
