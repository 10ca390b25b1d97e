// Messages between the main thread (thread-pool.ts, discover.ts) and a runtime thread
// (thread-main.ts). Payloads cross by structured clone; results cross as JSON text so
// they have exactly the JSON semantics callers store.
import type { FunctionError, ReplayInfo } from './types.ts';

export interface RunMessage {
  t: 'run';
  id: number;
  /** file:// URL of the handler module. */
  moduleUrl: string;
  exportName: string;
  payload: unknown;
  invocationId: string;
  functionName: string;
  functionVersion: number;
  /** the alias or version number the caller named (context.ts) */
  qualifier?: string | null;
  attempt: number;
  timeoutMs: number;
  clientContext: unknown;
  chainDepth?: number;
  /** Lambda's context.memoryLimitInMB */
  memoryMb?: number;
  /** package code: exactly what process.env holds while the attempt runs (nothing of the server's) */
  env?: Record<string, string>;
  /** docs/replay.md: context.replay */
  replay?: ReplayInfo | null;
  /**
   * The thread has run this module before, so the main thread started the function's
   * timeout when it sent the attempt: no `started` message comes back.
   */
  warm?: boolean;
}

export interface InspectMessage {
  t: 'inspect';
  id: number;
  moduleUrl: string;
}

export type ToThread = RunMessage | InspectMessage;

/** Sent after the module is imported: the timeout counts from here (cold imports are not billed). */
export interface StartedMessage {
  t: 'started';
  id: number;
  deadline: number;
}

export interface LogMessage {
  t: 'log';
  id: number;
  line: string;
}

export interface DoneMessage {
  t: 'done';
  id: number;
  ok: boolean;
  /** Result JSON when ok. */
  json?: string;
  error?: FunctionError;
  /** The handler gave up because its signal fired at the deadline. */
  timedOut?: boolean;
}

export interface InspectedMessage {
  t: 'inspected';
  id: number;
  ok: boolean;
  hasHandler?: boolean;
  config?: Record<string, unknown>;
  /** the module's `schedule` export, as data */
  schedule?: unknown;
  error?: string;
}

/** An error as it crosses the thread boundary. */
export interface ThreadError {
  name: string;
  message: string;
  stack?: string | undefined;
}

/**
 * The running attempt's own code threw outside its awaited promise (a timer, an emitter,
 * an unhandled rejection): the attempt fails with Runtime.ExitError and the thread is retired.
 */
export interface CrashMessage {
  t: 'crash';
  id: number;
  error: ThreadError;
}

/**
 * Code that is not the running attempt's threw or called process.exit: a timer left behind
 * by an attempt that has ended, or code whose origin is unknown. No attempt is blamed; the
 * thread is retired once its current attempt (if any) ends.
 */
export interface StrayMessage {
  t: 'stray';
  error: ThreadError;
  /** the ended attempt whose code it was, when the thread can tell */
  culprit: { invocationId: string; functionName: string; attempt: number } | null;
}

export type FromThread = StartedMessage | LogMessage | DoneMessage | InspectedMessage | CrashMessage | StrayMessage;
