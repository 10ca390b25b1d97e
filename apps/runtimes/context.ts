// The `context` argument of a MODULE handler, shared by thread and inline isolation.
// The signal, its timer and the log function are created only when a handler uses them:
// inline isolation serves a 12k invocations/s benchmark and most handlers touch neither.
import { AttemptLog, formatLogLine, type LogLevel } from './attempt-log.ts';
import type { HandlerContext, HandlerLog } from './types.ts';

export interface ContextInit {
  invocationId: string;
  functionName: string;
  functionVersion: number;
  attempt: number;
  deadline: number;
  clientContext: unknown;
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
  readonly functionVersion: number;
  readonly attempt: number;
  readonly deadline: number;
  readonly clientContext: unknown;
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
    this.functionVersion = init.functionVersion;
    this.attempt = init.attempt;
    this.deadline = init.deadline;
    this.clientContext = init.clientContext;
    this.writeLog = init.writeLog;
    this.selfTimed = init.selfTimed;
  }

  get awsRequestId(): string {
    return this.invocationId;
  }

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

function deadlineReason(): DOMException {
  return new DOMException('The attempt reached its deadline', 'TimeoutError');
}
