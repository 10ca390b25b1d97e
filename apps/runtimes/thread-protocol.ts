// Messages between the main thread (thread-pool.ts, discover.ts) and a runtime thread
// (thread-main.ts). Payloads cross by structured clone; results cross as JSON text so
// they have exactly the JSON semantics callers store.
import type { FunctionError } from './types.ts';

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
  attempt: number;
  timeoutMs: number;
  clientContext: unknown;
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
  error?: string;
}

export type FromThread = StartedMessage | LogMessage | DoneMessage | InspectedMessage;
