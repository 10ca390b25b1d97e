// The loop inside a runtime thread: import the handler module (cached for the thread's
// life), call it with an AttemptContext, post the result back as JSON. One attempt runs
// at a time, so the main thread can kill this thread on timeout without hurting others.
//
// Every attempt (and every discovery import) runs in its own async context, so an error
// thrown outside the awaited promise — a timer, an emitter, an unhandled rejection, a
// process.exit — is attributed to the attempt whose code it is: the running attempt
// crashes (Runtime.ExitError), an ended attempt's leftover code blames nobody (the thread
// reports it and is retired), and so does code whose origin cannot be told.
import { AsyncLocalStorage } from 'node:async_hooks';
import { parentPort } from 'node:worker_threads';
import { formatLogLine, type LogLevel } from './attempt-log.ts';
import { AttemptContext } from './context.ts';
import { toFunctionError } from './errors.ts';
import { importFailure, importHandlerModule, pickHandler } from './module-loader.ts';
import { encodeResult } from './result.ts';
import type { DoneMessage, FromThread, InspectMessage, RunMessage, ThreadError, ToThread } from './thread-protocol.ts';

const port = parentPort;
if (port === null) throw new Error('thread-main.ts must run inside a worker thread');

const post = (msg: FromThread): void => port.postMessage(msg);

const modules = new Map<string, Promise<Record<string, unknown>>>();

function importModule(url: string): Promise<Record<string, unknown>> {
  let mod = modules.get(url);
  if (mod === undefined) {
    mod = importHandlerModule(url);
    modules.set(url, mod);
    // A failed import is retried next time (the file may have been fixed).
    mod.catch(() => modules.delete(url));
  }
  return mod;
}

/** What runs in this thread: an attempt or a discovery import. */
interface Operation {
  kind: 'attempt' | 'inspect';
  id: number;
  invocationId: string;
  functionName: string;
  attempt: number;
}

/** The async context every piece of an operation's code runs in (timers and promises inherit it). */
const scope = new AsyncLocalStorage<Operation>();
/** The operation running now; null between operations. */
let current: Operation | null = null;
/** Thrown by process.exit called from code that is not the running operation's, to unwind it. */
const EXIT_UNWIND = Symbol('invoke-ledger: process.exit outside its attempt');

captureConsole();
attributeUncaughtErrors();

port.on('message', (msg: ToThread) => {
  if (msg.t === 'run') {
    const op: Operation = { kind: 'attempt', id: msg.id, invocationId: msg.invocationId, functionName: msg.functionName, attempt: msg.attempt };
    void scope.run(op, () => runAttempt(msg, op));
  } else if (msg.t === 'inspect') {
    const op: Operation = { kind: 'inspect', id: msg.id, invocationId: '', functionName: '', attempt: 0 };
    void scope.run(op, () => inspectModule(msg, op));
  }
});

/** The thread's own environment, given back to handlers that are not package code. */
const threadEnv: Record<string, string | undefined> = { ...process.env };

/** Whether process.env holds a package's environment now (so the thread's must come back). */
let packageEnv = false;

/** Package code sees exactly its Lambda environment; FUNCTIONS_DIR handlers the thread's. */
function setEnvironment(env: Record<string, string> | undefined): void {
  if (env === undefined && !packageEnv) return; // the hot path: the thread's own, untouched
  const target: Record<string, string | undefined> = env ?? threadEnv;
  for (const key of Object.keys(process.env)) if (!(key in target)) delete process.env[key];
  for (const [key, value] of Object.entries(target)) if (value !== undefined) process.env[key] = value;
  packageEnv = env !== undefined;
}

async function runAttempt(msg: RunMessage, op: Operation): Promise<void> {
  const id = msg.id;
  current = op;
  // before the import: a module's top level reads process.env too
  setEnvironment(msg.env);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(msg.moduleUrl);
  } catch (err) {
    finish({ t: 'done', id, ok: false, error: importFailure(err, msg.moduleUrl) });
    return;
  }
  const picked = pickHandler(mod, msg.exportName);
  if (!picked.ok) {
    finish({ t: 'done', id, ok: false, error: picked.error });
    return;
  }

  const deadline = Date.now() + msg.timeoutMs;
  if (!msg.warm) post({ t: 'started', id, deadline });
  const context = new AttemptContext({
    invocationId: msg.invocationId,
    functionName: msg.functionName,
    functionVersion: msg.functionVersion,
    qualifier: msg.qualifier,
    attempt: msg.attempt,
    deadline,
    clientContext: msg.clientContext,
    chainDepth: msg.chainDepth,
    memoryMb: msg.memoryMb,
    replay: msg.replay,
    writeLog: (line) => post({ t: 'log', id, line }),
    selfTimed: true,
  });
  try {
    const value = await picked.handler(msg.payload, context);
    const encoded = encodeResult(value);
    finish(encoded.ok ? { t: 'done', id, ok: true, json: encoded.json } : { t: 'done', id, ok: false, error: encoded.error });
  } catch (err) {
    finish({ t: 'done', id, ok: false, error: toFunctionError(err), timedOut: context.isExpired });
  } finally {
    context.dispose();
  }
}

function finish(msg: DoneMessage): void {
  current = null;
  post(msg);
}

async function inspectModule(msg: InspectMessage, op: Operation): Promise<void> {
  current = op;
  try {
    const mod = await importModule(msg.moduleUrl);
    const config = mod['config'];
    const schedule = mod['schedule'];
    post({
      t: 'inspected',
      id: msg.id,
      ok: true,
      hasHandler: typeof mod['handler'] === 'function',
      // JSON round trip: config is data; functions or class instances in it do not cross threads.
      config: isPlainObject(config) ? (JSON.parse(JSON.stringify(config)) as Record<string, unknown>) : {},
      // `export const schedule = 'rate(5 minutes)'` or `{ expression, … }` (docs/schedules.md)
      ...(typeof schedule === 'string' || isPlainObject(schedule) ? { schedule: JSON.parse(JSON.stringify(schedule)) as unknown } : {}),
    });
  } catch (err) {
    post({ t: 'inspected', id: msg.id, ok: false, error: importFailure(err, msg.moduleUrl).errorMessage });
  } finally {
    current = null;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Uncaught exceptions, unhandled rejections and process.exit: the running operation's own
 * code crashes it (the main thread records Runtime.ExitError and ends this thread); anyone
 * else's is reported as stray, touches no attempt, and the main thread retires this thread
 * once its current attempt is over.
 */
function attributeUncaughtErrors(): void {
  const onUncaught = (thrown: unknown): void => {
    if (thrown === EXIT_UNWIND) return;
    const owner = scope.getStore();
    const error = threadError(thrown);
    if (current !== null && owner === current) {
      if (current.kind === 'inspect') {
        post({ t: 'inspected', id: current.id, ok: false, error: `${error.name}: ${error.message}` });
        realExit(1);
      }
      post({ t: 'crash', id: current.id, error });
      return;
    }
    post({ t: 'stray', error, culprit: culpritOf(owner) });
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);

  const realExit = process.exit.bind(process);
  process.exit = ((code?: number | string | null) => {
    const owner = scope.getStore();
    // its own operation (a handler, or a module's top level while it is imported) ends the thread
    if (current !== null && owner === current) return realExit(code);
    const error: ThreadError = { name: 'ProcessExit', message: `process.exit(${code ?? ''}) called outside the attempt that is running` };
    post({ t: 'stray', error, culprit: culpritOf(owner) });
    throw EXIT_UNWIND;
  }) as typeof process.exit;
}

function culpritOf(owner: Operation | undefined): { invocationId: string; functionName: string; attempt: number } | null {
  if (owner === undefined || owner.kind !== 'attempt') return null;
  return { invocationId: owner.invocationId, functionName: owner.functionName, attempt: owner.attempt };
}

function threadError(thrown: unknown): ThreadError {
  if (thrown instanceof Error) return { name: thrown.name, message: thrown.message, stack: thrown.stack };
  const e = toFunctionError(thrown);
  return { name: e.errorType, message: e.errorMessage };
}

/**
 * console.* inside a handler lands in the attempt's log, like CloudWatch in Lambda. Output
 * of code that is known not to be the running attempt's (module top level during
 * discovery, timers left behind by an ended attempt) keeps going to the real console.
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
      const owner = scope.getStore();
      if (current === null || current.kind !== 'attempt' || (owner !== undefined && owner !== current)) original(...args);
      else post({ t: 'log', id: current.id, line: formatLogLine(level, args) });
    };
  }
}

