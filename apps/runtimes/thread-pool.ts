// Worker threads that run MODULE handlers, one pool per memoryMb (resourceLimits are
// fixed when a thread starts). A thread runs one attempt at a time and is killed with
// worker.terminate() when the attempt overruns: that is the only way to stop a
// synchronous infinite loop. Dead threads are replaced lazily by the next acquire.
import { performance } from 'node:perf_hooks';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AttemptLog, formatLogLine } from './attempt-log.ts';
import { ErrorType, describeReason, functionError, timeoutError } from './errors.ts';
import type { DoneMessage, FromThread, RunMessage } from './thread-protocol.ts';
import type { AttemptOutcome, FunctionError } from './types.ts';

const BOOTSTRAP_URL = new URL('./thread-bootstrap.mjs', import.meta.url);

/** Importing a handler module (cold start) has its own limit, like Lambda's init phase. */
export const INIT_TIMEOUT_MS = 10_000;
/**
 * After the deadline, a handler that honours context.signal usually returns within
 * milliseconds; waiting this long for it saves a thread restart. The caller already
 * has its Sandbox.Timedout outcome, so this never delays an answer.
 */
const RECLAIM_GRACE_MS = 100;

export type RunRequest = Omit<RunMessage, 't' | 'id'>;

interface ActiveAttempt {
  id: number;
  moduleUrl: string;
  log: AttemptLog;
  startedAt: number;
  timeoutMs: number;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
  resolve: (outcome: AttemptOutcome) => void;
}

interface RuntimeThread {
  worker: Worker;
  state: 'idle' | 'busy' | 'draining' | 'dead';
  current: ActiveAttempt | null;
  /** Set by the 'error' event that precedes an 'exit' after an uncaught exception or OOM. */
  lastError: (Error & { code?: string }) | undefined;
  /** modules this thread has imported (a thread keeps a successful import for its life) */
  loaded: Set<string>;
}

interface Waiter {
  resolve: (thread: RuntimeThread | null) => void;
}

export class ThreadPool {
  private readonly threads = new Set<RuntimeThread>();
  private readonly idle: RuntimeThread[] = [];
  private readonly waiters: Waiter[] = [];
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly memoryMb: number,
    private readonly maxThreads: number,
    private readonly logger: Logger,
  ) {}

  async run(req: RunRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    if (this.closed) return abortedOutcome('Runtimes is closed', 0, '');
    if (signal?.aborted) return abortedOutcome(describeReason(signal.reason), 0, '');
    const queuedAt = performance.now();
    const thread = await this.acquire(signal);
    if (thread === null) {
      const why = this.closed ? 'Runtimes is closed' : describeReason(signal?.reason);
      return abortedOutcome(why, elapsed(queuedAt), '');
    }
    if (signal?.aborted) {
      this.release(thread);
      return abortedOutcome(describeReason(signal.reason), elapsed(queuedAt), '');
    }

    return new Promise<AttemptOutcome>((resolve) => {
      const attempt: ActiveAttempt = {
        id: this.nextId++,
        moduleUrl: req.moduleUrl,
        log: new AttemptLog(),
        startedAt: performance.now(),
        timeoutMs: req.timeoutMs,
        timer: undefined,
        settled: false,
        resolve,
      };
      thread.current = attempt;

      const onAbort = (): void => {
        this.settleFailure(attempt, functionError(ErrorType.Aborted, `Attempt aborted: ${describeReason(signal?.reason)}`));
        this.kill(thread);
      };
      if (signal !== undefined) {
        signal.addEventListener('abort', onAbort, { once: true });
        const original = attempt.resolve;
        attempt.resolve = (outcome) => {
          signal.removeEventListener('abort', onAbort);
          original(outcome);
        };
      }

      // A module the thread has imported before starts at once: the function's own
      // timeout applies from now, and the thread skips its `started` message (one
      // message round trip per attempt instead of two). A cold one gets the init limit
      // until the thread says the import is done.
      const warm = thread.loaded.has(req.moduleUrl);
      attempt.timer = warm
        ? setTimeout(() => this.onDeadline(thread, attempt), req.timeoutMs)
        : setTimeout(() => {
            this.settleFailure(attempt, timeoutError(INIT_TIMEOUT_MS));
            this.kill(thread);
          }, INIT_TIMEOUT_MS);
      thread.worker.postMessage({ t: 'run', id: attempt.id, ...req, warm } satisfies RunMessage);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.resolve(null);
    const exits = [...this.threads].map((thread) => {
      if (thread.current !== null) this.settleFailure(thread.current, functionError(ErrorType.Aborted, 'Attempt aborted: Runtimes is closed'));
      return this.kill(thread);
    });
    await Promise.all(exits);
  }

  private acquire(signal: AbortSignal | undefined): Promise<RuntimeThread | null> {
    const idle = this.idle.pop();
    if (idle !== undefined) {
      idle.state = 'busy';
      return Promise.resolve(idle);
    }
    if (this.threads.size < this.maxThreads) return Promise.resolve(this.spawn());
    return new Promise((resolve) => {
      const waiter: Waiter = { resolve };
      if (signal !== undefined) {
        const onAbort = (): void => {
          const i = this.waiters.indexOf(waiter);
          if (i !== -1) this.waiters.splice(i, 1);
          resolve(null);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.resolve = (thread) => {
          signal.removeEventListener('abort', onAbort);
          resolve(thread);
        };
      }
      this.waiters.push(waiter);
    });
  }

  /** A thread finished its attempt and is healthy: hand it to a waiter or park it. */
  private release(thread: RuntimeThread): void {
    thread.current = null;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      thread.state = 'busy';
      waiter.resolve(thread);
    } else {
      thread.state = 'idle';
      this.idle.push(thread);
    }
  }

  /** A thread is gone (killed or exited): forget it and start a replacement if someone waits. */
  private remove(thread: RuntimeThread): void {
    if (!this.threads.delete(thread)) return;
    thread.state = 'dead';
    const i = this.idle.indexOf(thread);
    if (i !== -1) this.idle.splice(i, 1);
    if (!this.closed && this.waiters.length > 0 && this.threads.size < this.maxThreads) {
      this.waiters.shift()?.resolve(this.spawn());
    }
  }

  private kill(thread: RuntimeThread): Promise<unknown> {
    this.clearTimer(thread.current);
    this.remove(thread);
    return thread.worker.terminate();
  }

  private spawn(): RuntimeThread {
    const worker = startWorker(this.memoryMb);
    // Idle threads must not keep the process alive; an attempt's timer does while it runs.
    worker.unref();
    const thread: RuntimeThread = { worker, state: 'busy', current: null, lastError: undefined, loaded: new Set() };
    this.threads.add(thread);
    worker.on('message', (msg: FromThread) => this.onMessage(thread, msg));
    worker.on('error', (err: Error) => {
      thread.lastError = err;
    });
    worker.on('exit', (code) => this.onExit(thread, code));
    return thread;
  }

  private onMessage(thread: RuntimeThread, msg: FromThread): void {
    const attempt = thread.current;
    if (attempt === null || !('id' in msg) || msg.id !== attempt.id) return;
    switch (msg.t) {
      case 'log':
        attempt.log.append(msg.line);
        return;
      case 'started': {
        // The module is loaded: from now on the function's own timeout applies.
        thread.loaded.add(attempt.moduleUrl);
        attempt.startedAt = performance.now();
        this.clearTimer(attempt);
        attempt.timer = setTimeout(() => this.onDeadline(thread, attempt), Math.max(0, msg.deadline - Date.now()));
        return;
      }
      case 'done':
        this.clearTimer(attempt);
        // A handler that gave up because its signal fired at the deadline timed out, whatever it threw.
        if (msg.timedOut) this.settleFailure(attempt, timeoutError(attempt.timeoutMs));
        else if (!attempt.settled) this.settle(attempt, outcomeOf(msg, attempt));
        if (thread.state !== 'dead') this.release(thread);
        return;
      default:
        return;
    }
  }

  private onDeadline(thread: RuntimeThread, attempt: ActiveAttempt): void {
    this.settleFailure(attempt, timeoutError(attempt.timeoutMs));
    thread.state = 'draining';
    attempt.timer = setTimeout(() => {
      if (thread.current === attempt) this.kill(thread);
    }, RECLAIM_GRACE_MS);
  }

  private onExit(thread: RuntimeThread, code: number): void {
    const attempt = thread.current;
    const wasKilled = thread.state === 'dead';
    this.remove(thread);
    if (attempt === null || attempt.settled || wasKilled) {
      if (!wasKilled && !this.closed) this.logger.warn({ exitCode: code, err: thread.lastError }, 'runtime thread exited outside an attempt');
      return;
    }
    this.clearTimer(attempt);
    this.settleFailure(attempt, crashError(code, thread.lastError, this.memoryMb));
  }

  private settleFailure(attempt: ActiveAttempt, error: FunctionError): void {
    if (attempt.settled) return;
    attempt.log.append(formatLogLine('ERROR', [`${error.errorType}: ${error.errorMessage}`]));
    this.settle(attempt, { ok: false, error, durationMs: elapsed(attempt.startedAt), log: attempt.log.toString() });
  }

  private settle(attempt: ActiveAttempt, outcome: AttemptOutcome): void {
    if (attempt.settled) return;
    attempt.settled = true;
    attempt.resolve(outcome);
  }

  private clearTimer(attempt: ActiveAttempt | null): void {
    if (attempt?.timer !== undefined) {
      clearTimeout(attempt.timer);
      attempt.timer = undefined;
    }
  }
}

function outcomeOf(msg: DoneMessage, attempt: ActiveAttempt): AttemptOutcome {
  const durationMs = elapsed(attempt.startedAt);
  if (msg.ok) return { ok: true, result: JSON.parse(msg.json ?? 'null'), durationMs, log: attempt.log.toString() };
  return { ok: false, error: msg.error ?? functionError('Error', 'unknown error'), durationMs, log: attempt.log.toString() };
}

function crashError(code: number, err: (Error & { code?: string }) | undefined, memoryMb: number): FunctionError {
  if (err?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
    return functionError(ErrorType.OutOfMemory, `Runtime exited with error: heap limit of ${memoryMb} MB reached`);
  }
  const cause = err === undefined ? '' : ` (${err.name}: ${err.message})`;
  const trace = typeof err?.stack === 'string' ? err.stack.split('\n').filter((l) => l.trim() !== '') : [];
  return functionError(ErrorType.ExitError, `Runtime exited with error: exit status ${code}${cause}`, trace);
}

function abortedOutcome(why: string, durationMs: number, log: string): AttemptOutcome {
  return { ok: false, error: functionError(ErrorType.Aborted, `Attempt aborted: ${why}`), durationMs, log };
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

/** Starts a runtime thread; with memoryMb its heap is capped (discovery threads are not). */
export function startWorker(memoryMb?: number): Worker {
  const options = (execArgv: string[]): WorkerOptions => {
    if (memoryMb === undefined) return { execArgv };
    return {
      execArgv,
      resourceLimits: {
        maxOldGenerationSizeMb: memoryMb,
        // The young generation counts on top of the old one; keep it small so memoryMb stays meaningful.
        maxYoungGenerationSizeMb: Math.max(2, Math.min(16, Math.floor(memoryMb / 16))),
      },
    };
  };
  try {
    return new Worker(BOOTSTRAP_URL, options(threadExecArgv()));
  } catch (err) {
    // Some process-wide flags are refused in threads; run them without the parent's flags then.
    if ((err as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    cachedExecArgv = [];
    return new Worker(BOOTSTRAP_URL, options([]));
  }
}

let cachedExecArgv: string[] | undefined;

/**
 * The parent's flags minus tsx's own loader flags: the bootstrap registers tsx itself,
 * and an inherited `--require tsx/preflight.cjs` keeps a thread alive after it should end.
 */
export function threadExecArgv(): string[] {
  if (cachedExecArgv !== undefined) return cachedExecArgv;
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const takesValue = /^(--require|-r|--import|--loader|--experimental-loader)$/.test(arg);
    if (takesValue) {
      const value = argv[i + 1] ?? '';
      i++;
      if (!value.includes('tsx')) out.push(arg, value);
      continue;
    }
    if (/^--(require|import|loader|experimental-loader)=/.test(arg) && arg.includes('tsx')) continue;
    out.push(arg);
  }
  cachedExecArgv = out;
  return out;
}
