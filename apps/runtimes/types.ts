// The contract other parts (worker, API, CLI) code against. Keep it in sync with the
// brief in docs; everything here is re-exported from ./index.ts.
import type { Logger } from 'pino';

export type RuntimeKind = 'MODULE' | 'HTTP';

export interface RunnableFunction {
  name: string;
  version: number;
  runtime: RuntimeKind;
  /** MODULE: path absolute or relative to functionsDir, optional "#exportName" (default "handler"). */
  handler: string | null;
  /** HTTP endpoint. */
  url: string | null;
  timeoutMs: number;
  memoryMb: number;
  isolation: 'thread' | 'inline';
  /** HTTP: HMAC-SHA256 key for X-Ledger-Signature. Never logged. */
  secret: string | null;
}

export interface AttemptRequest {
  invocationId: string;
  attempt: number;
  payload: unknown;
  /** Passed to the handler as context.clientContext. */
  clientContext?: unknown;
}

export interface FunctionError {
  errorType: string;
  errorMessage: string;
  trace: string[];
}

export type AttemptOutcome =
  | { ok: true; result: unknown; durationMs: number; log: string }
  | { ok: false; error: FunctionError; durationMs: number; log: string; httpStatus?: number };

export interface Runtimes {
  /** Never rejects for function problems; the outcome carries them. */
  run(fn: RunnableFunction, req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome>;
  /** Terminates all threads. */
  close(): Promise<void>;
}

export interface RuntimesOptions {
  functionsDir: string;
  /** Threads per memoryMb value (each thread runs one attempt at a time). */
  poolSize?: number;
  logger?: Logger;
  /** HTTP runtime: extra time past timeoutMs before the request is abandoned (default 0). */
  httpTimeoutGraceMs?: number;
}

export interface DiscoveredFunction {
  name: string;
  file: string;
  config: Record<string, unknown>;
  contentHash: string;
}

/** What a MODULE handler receives as its second argument. */
export interface HandlerContext {
  readonly invocationId: string;
  /** Alias of invocationId for handlers written for AWS Lambda. */
  readonly awsRequestId: string;
  readonly functionName: string;
  readonly functionVersion: number;
  readonly attempt: number;
  /** Epoch ms after which the attempt is timed out. */
  readonly deadline: number;
  readonly clientContext: unknown;
  /** Aborted at the deadline (and when the attempt is abandoned). */
  readonly signal: AbortSignal;
  readonly log: HandlerLog;
  getRemainingTimeInMillis(): number;
}

export interface HandlerLog {
  (...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

export type Handler = (event: unknown, context: HandlerContext) => unknown;
