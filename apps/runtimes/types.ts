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
  /**
   * MODULE code from a package (hex SHA-256): `handler` is then Lambda's `file.export`
   * inside the package's directory (RuntimesOptions.codePackageDir), and the handler sees
   * only Lambda's environment (`environment` plus the reserved variables).
   */
  codeSha256?: string | null;
  /**
   * FUNCTIONS_DIR code: the hex SHA-256 of the file packed on its own. A host whose
   * functions directory lacks the file loads that package (codePackageDir) and runs the
   * file from it, as it would from the directory.
   */
  codeHash?: string | null;
  /** Lambda's Environment.Variables (package code only) */
  environment?: Readonly<Record<string, string>>;
}

export interface AttemptRequest {
  invocationId: string;
  attempt: number;
  payload: unknown;
  /** Passed to the handler as context.clientContext. */
  clientContext?: unknown;
  /** Its depth in a chain of invocations (0 from outside): context.chainDepth, and the chain header it passes on. */
  chainDepth?: number;
  /** Set when the attempt replays a recorded invocation (docs/replay.md): context.replay. */
  replay?: ReplayInfo | null;
  /**
   * How the caller named the version: the alias (`name:live`) or the version number
   * (`name:3`); absent for an unqualified invoke, which Lambda shows as `$LATEST`
   * (context.functionVersion, context.invokedFunctionArn, AWS_LAMBDA_FUNCTION_VERSION).
   */
  qualifier?: string | null;
}

/** What a replayed attempt's handler is told (docs/replay.md): stub your outbound calls when set. */
export interface ReplayInfo {
  /** the replay run */
  replayId: string;
  /** the recorded invocation whose payload this attempt runs */
  originalInvocationId: string;
  /** the version that ran the original */
  originalVersion: number;
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
  /**
   * Holds what one attempt of `fn` runs on (a thread for thread isolation) before anything
   * about the attempt is written, so that the attempt starts the moment it is recorded
   * `started`. Refused, with a time to retry after, when no runtime can be expected to be
   * free within `maxWaitMs` or none became free in that time; never rejects.
   */
  reserve(fn: RunnableFunction, options?: ReserveOptions): Promise<RuntimeSlot>;
  /** Terminates all threads. */
  close(): Promise<void>;
}

export interface ReserveOptions {
  /** longest wait for a free runtime; unset waits as long as it takes */
  maxWaitMs?: number;
  /** stops waiting (the caller went away); an attempt already running is not affected */
  signal?: AbortSignal;
}

export type RuntimeSlot =
  | {
      granted: true;
      /** runs the attempt on what was reserved (once) */
      run(req: AttemptRequest, signal?: AbortSignal): Promise<AttemptOutcome>;
      /** gives it back unused (no-op after run) */
      release(): void;
    }
  | {
      granted: false;
      /** busy: no runtime within maxWaitMs; aborted: the signal fired; closed: close() was called */
      reason: 'busy' | 'aborted' | 'closed';
      /** when a new attempt could expect to be admitted (≥ 1000 when busy) */
      retryAfterMs: number;
      message: string;
    };

export interface RuntimesOptions {
  functionsDir: string;
  /** Threads per memoryMb value (each thread runs one attempt at a time). */
  poolSize?: number;
  /**
   * Threads started ahead of any attempt, per memoryMb value: for the default 256 MB at
   * once, for another size when its first attempt comes (0, the default: threads start
   * when attempts need them).
   */
  warmThreads?: number;
  logger?: Logger;
  /** HTTP runtime: extra time past timeoutMs before the request is abandoned (default 0). */
  httpTimeoutGraceMs?: number;
  /** The directory of a code package's files, by hex SHA-256 (db/code materializeCodePackage); without it package code cannot run. */
  codePackageDir?: (sha256: string) => Promise<string>;
  /** AWS_REGION shown to package code (default us-east-1) */
  region?: string;
}

export interface DiscoveredFunction {
  name: string;
  file: string;
  config: Record<string, unknown>;
  contentHash: string;
  /** the `schedule` export: an expression, or `{ expression, timezone, input, … }` (docs/schedules.md) */
  schedule?: unknown;
}

/** What a MODULE handler receives as its second argument. */
export interface HandlerContext {
  readonly invocationId: string;
  /** Alias of invocationId for handlers written for AWS Lambda. */
  readonly awsRequestId: string;
  readonly functionName: string;
  /** as in Lambda: `$LATEST` when invoked unqualified, else the version that runs (`"3"`) */
  readonly functionVersion: string;
  readonly attempt: number;
  /** Epoch ms after which the attempt is timed out. */
  readonly deadline: number;
  readonly clientContext: unknown;
  /** How many invocations led to this one (0: invoked from outside). */
  readonly chainDepth: number;
  /**
   * Set when this attempt replays a recorded invocation against another version
   * (docs/replay.md), null otherwise. A handler with side effects checks it and stubs them.
   */
  readonly replay: ReplayInfo | null;
  /**
   * Headers to send with any invoke this handler makes of the ledger's API (the loop
   * guard counts the chain through them, as Lambda counts it through trace headers).
   */
  readonly chainHeaders: Readonly<Record<string, string>>;
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
