// The `context` argument of a MODULE handler, shared by thread and inline isolation.
// The signal, its timer and the log function are created only when a handler uses them:
// inline isolation serves a 12k invocations/s benchmark and most handlers touch neither.
import { AttemptLog, formatLogLine, type LogLevel } from './attempt-log.ts';
import type { HandlerContext, HandlerLog, ReplayInfo } from './types.ts';

/** The header a handler (or an HTTP function) sends with invokes it makes: its own chain depth. */
export const CHAIN_DEPTH_HEADER = 'x-ledger-chain-depth';

export interface ContextInit {
  invocationId: string;
  functionName: string;
  /** the version that runs */
  functionVersion: number;
  /** the alias or version number the caller named; absent: unqualified ($LATEST) */
  qualifier?: string | null | undefined;
  attempt: number;
  deadline: number;
  clientContext: unknown;
  /** depth in a chain of invocations (absent: 0) */
  chainDepth?: number | undefined;
  /** Lambda's context.memoryLimitInMB (absent: 128) */
  memoryMb?: number | undefined;
  /** set when the attempt replays a recorded invocation (docs/replay.md) */
  replay?: ReplayInfo | null | undefined;
  /** Receives each formatted log line; when absent the context keeps them (see collectedLog). */
  writeLog?: ((line: string) => void) | undefined;
  /**
   * When true the context arms its own timer to abort the signal at the deadline (threads).
   * When false the runner calls expire() (inline, which already has a deadline timer).
   */
  selfTimed: boolean;
}

export class AttemptContext implements HandlerContext {
  readonly invocationId: string;
  readonly functionName: string;
  readonly functionVersion: string;
  readonly attempt: number;
  readonly deadline: number;
  readonly clientContext: unknown;
  readonly chainDepth: number;
  /** Lambda's context fields, for handlers written for AWS Lambda */
  readonly memoryLimitInMB: string;
  readonly invokedFunctionArn: string;
  readonly logGroupName: string;
  readonly logStreamName: string;
  readonly identity: undefined = undefined;
  /** accepted and ignored: the attempt ends when the handler's promise (or callback) settles */
  callbackWaitsForEmptyEventLoop = true;
  readonly replay: ReplayInfo | null;
  private readonly writeLog: ((line: string) => void) | undefined;
  private ownLog: AttemptLog | undefined;
  private readonly selfTimed: boolean;
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private expired = false;
  private logFn: HandlerLog | undefined;

  constructor(init: ContextInit) {
    this.invocationId = init.invocationId;
    this.functionName = init.functionName;
    const qualifier = qualifierOf(init);
    this.functionVersion = shownVersion(init.functionVersion, qualifier, null);
    this.attempt = init.attempt;
    this.deadline = init.deadline;
    this.clientContext = init.clientContext;
    this.chainDepth = init.chainDepth ?? 0;
    this.memoryLimitInMB = String(init.memoryMb ?? 128);
    const region = process.env['AWS_REGION'] || 'us-east-1';
    this.invokedFunctionArn = `arn:aws:lambda:${region}:000000000000:function:${init.functionName}${qualifier === null ? '' : `:${qualifier}`}`;
    this.logGroupName = `/aws/lambda/${init.functionName}`;
    this.logStreamName = `${init.functionName}/${init.functionVersion}/${init.invocationId}`;
    this.replay = init.replay ?? null;
    this.writeLog = init.writeLog;
    this.selfTimed = init.selfTimed;
  }

  get awsRequestId(): string {
    return this.invocationId;
  }

  get chainHeaders(): Readonly<Record<string, string>> {
    return { [CHAIN_DEPTH_HEADER]: String(this.chainDepth) };
  }

  /** Lambda's legacy context methods (deprecated there, still called by old handlers): no-ops here */
  done(): void {}
  succeed(): void {}
  fail(): void {}

  getRemainingTimeInMillis(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.expired) {
        this.controller.abort(deadlineReason());
      } else if (this.selfTimed) {
        this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadline - Date.now()));
        // The thread must not be kept alive by a deadline timer of a finished attempt.
        this.timer.unref();
      }
    }
    return this.controller.signal;
  }

  /** True once the deadline passed (or the attempt was abandoned). */
  get isExpired(): boolean {
    return this.expired || (this.selfTimed && Date.now() >= this.deadline);
  }

  get log(): HandlerLog {
    if (this.logFn === undefined) {
      const write = (level: LogLevel, args: unknown[]): void => {
        const line = formatLogLine(level, args);
        if (this.writeLog !== undefined) this.writeLog(line);
        else (this.ownLog ??= new AttemptLog()).append(line);
      };
      const log = ((...args: unknown[]) => write('INFO', args)) as HandlerLog;
      log.info = (...args: unknown[]) => write('INFO', args);
      log.warn = (...args: unknown[]) => write('WARN', args);
      log.error = (...args: unknown[]) => write('ERROR', args);
      this.logFn = log;
    }
    return this.logFn;
  }

  /** Lines logged through context.log when no writeLog was given. */
  collectedLog(): string {
    return this.ownLog === undefined ? '' : this.ownLog.toString();
  }

  /** Appends a runtime line (timeout, abort) to the collected log. */
  appendLog(level: LogLevel, message: string): void {
    (this.ownLog ??= new AttemptLog()).append(formatLogLine(level, [message]));
  }

  /** Aborts the signal: the deadline has passed or the attempt is being abandoned. */
  expire(reason: unknown = deadlineReason()): void {
    if (this.expired) return;
    this.expired = true;
    this.clearTimer();
    this.controller?.abort(reason);
  }

  /** The attempt finished; drop the deadline timer. */
  dispose(): void {
    this.clearTimer();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

/**
 * The qualifier Lambda shows (docs/control-plane.md): what the caller named, or, for a
 * replay, the version it was asked to run; null for an unqualified invoke ($LATEST).
 */
function qualifierOf(init: ContextInit): string | null {
  if (init.qualifier) return init.qualifier;
  return init.replay ? String(init.functionVersion) : null;
}

/** Lambda's AWS_LAMBDA_FUNCTION_VERSION and context.functionVersion: `$LATEST` or the version. */
export function shownVersion(functionVersion: number, qualifier: string | null | undefined, replay: unknown): string {
  return qualifier || replay ? String(functionVersion) : '$LATEST';
}

function deadlineReason(): DOMException {
  return new DOMException('The attempt reached its deadline', 'TimeoutError');
}
