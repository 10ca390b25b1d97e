// Worker threads that run MODULE handlers, one pool per memoryMb (resourceLimits are
// fixed when a thread starts). A thread runs one attempt at a time and is killed with
// worker.terminate() when the attempt overruns: that is the only way to stop a
// synchronous infinite loop. Dead threads are replaced lazily by the next acquire.
//
// Threads are shared by every function of the same memoryMb (a thread keeps each module it
// imported), not owned by one function as Lambda's execution environments are: a cold
// import costs 200-300 ms here, and with a fixed number of threads per-function ownership
// would cold-start nearly every attempt of a mixed workload. What isolates attempts is
// that a thread runs one at a time, and that an error is blamed only on the attempt whose
// code raised it (thread-main.ts): a thread that saw an error of someone else's code is
// retired when its current attempt ends, without touching that attempt.
//
// Backpressure: reserve() takes a thread before anything is written and refuses at once
// when the threads cannot be expected to free up within maxWaitMs (the queue ahead of the
// caller times the pool's mean hold time), and when the wait does run out.
import { performance } from 'node:perf_hooks';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AttemptLog, formatLogLine } from './attempt-log.ts';
import { ErrorType, describeReason, functionError, timeoutError } from './errors.ts';
import type { DoneMessage, FromThread, RunMessage, StrayMessage } from './thread-protocol.ts';
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
/** Weight of the newest attempt in the pool's mean hold time. */
const HOLD_EWMA_WEIGHT = 0.2;

export type RunRequest = Omit<RunMessage, 't' | 'id'>;

/** A thread held for one attempt: run it, or release the thread unused. */
export interface ThreadGrant {
  granted: true;
  run(req: RunRequest, signal?: AbortSignal): Promise<AttemptOutcome>;
  release(): void;
}

export interface ThreadRefusal {
  granted: false;
  reason: 'busy' | 'aborted' | 'closed';
  /** when a new caller could expect to be admitted */
  retryAfterMs: number;
  message: string;
}

interface ActiveAttempt {
  id: number;
  moduleUrl: string;
  log: AttemptLog;
  startedAt: number;
  /** when its thread was handed out (the pool's hold time counts from here) */
  heldSince: number;
  timeoutMs: number;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
  resolve: (outcome: AttemptOutcome) => void;
}

interface RuntimeThread {
  worker: Worker;
  /** reserved: handed out, no attempt sent yet */
  state: 'idle' | 'reserved' | 'busy' | 'draining' | 'dead';
  current: ActiveAttempt | null;
  /** Set by the 'error' event that precedes an 'exit' after an uncaught exception or OOM. */
  lastError: (Error & { code?: string }) | undefined;
  /** modules this thread has imported (a thread keeps a successful import for its life) */
  loaded: Set<string>;
  /** saw an error of code that is not its running attempt's: ends once its holder lets go */
  retiring: boolean;
  heldSince: number;
}

interface Waiter {
  grant: (thread: RuntimeThread) => void;
  refuse: (refusal: ThreadRefusal) => void;
}

export class ThreadPool {
  private readonly threads = new Set<RuntimeThread>();
  private readonly idle: RuntimeThread[] = [];
  private readonly waiters: Waiter[] = [];
  private nextId = 1;
  private closed = false;
  /** mean time a thread is held per attempt (ms), undefined until one has run */
  private holdMs: number | undefined;

  constructor(
    private readonly memoryMb: number,
    private readonly maxThreads: number,
    private readonly logger: Logger,
  ) {}

  /** Waits as long as it takes for a thread, then runs the attempt (the async worker's way). */
  async run(req: RunRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    const queuedAt = performance.now();
    const slot = await this.reserve({ signal });
    if (!slot.granted) return abortedOutcome(slot.message, elapsed(queuedAt), '');
    return slot.run(req, signal);
  }

  /**
   * A thread for one attempt, held until run() or release(). With maxWaitMs: refused at
   * once when the queue ahead cannot be expected to clear within it, and refused when it
   * does not clear in time; nothing has run either way.
   */
  reserve(options: { maxWaitMs?: number | undefined; signal?: AbortSignal | undefined } = {}): Promise<ThreadGrant | ThreadRefusal> {
    const { maxWaitMs, signal } = options;
    if (this.closed) return Promise.resolve(refusal('closed', 0, 'Runtimes is closed'));
    if (signal?.aborted) return Promise.resolve(refusal('aborted', 0, describeReason(signal.reason)));
    const ready = this.take();
    if (ready !== null) return Promise.resolve(this.grant(ready));
    if (maxWaitMs !== undefined) {
      const expected = this.expectedWaitMs(this.waiters.length, maxWaitMs);
      if (expected > maxWaitMs) return Promise.resolve(this.busy(expected - maxWaitMs));
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const leave = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) this.waiters.splice(i, 1);
      };
      const onAbort = (): void => {
        leave();
        waiter.refuse(refusal('aborted', 0, describeReason(signal?.reason)));
      };
      const waiter: Waiter = {
        grant: (thread) => {
          cleanup();
          resolve(this.grant(thread));
        },
        refuse: (r) => {
          cleanup();
          resolve(r);
        },
      };
      const cleanup = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      if (maxWaitMs !== undefined) {
        timer = setTimeout(() => {
          leave();
          waiter.refuse(this.busy(this.expectedWaitMs(this.waiters.length, maxWaitMs)));
        }, maxWaitMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Threads alive, attempts waiting for one, and the mean hold time: for metrics and tests. */
  stats(): { threads: number; waiting: number; holdMs: number | undefined } {
    return { threads: this.threads.size, waiting: this.waiters.length, holdMs: this.holdMs };
  }

  /**
   * Starts threads until `n` are alive (at most the pool's size), idle: the first attempt
   * of a function then imports its module on a running thread (about a millisecond for a
   * small module) instead of waiting for a thread to start (docs/worker.md, "Warm threads").
   */
  prestart(n: number): void {
    while (!this.closed && this.threads.size < Math.min(n, this.maxThreads)) {
      const thread = this.spawn();
      thread.state = 'idle';
      this.idle.push(thread);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.refuse(refusal('closed', 0, 'Runtimes is closed'));
    const exits = [...this.threads].map((thread) => {
      if (thread.current !== null) this.settleFailure(thread.current, functionError(ErrorType.Aborted, 'Attempt aborted: Runtimes is closed'));
      return this.kill(thread);
    });
    await Promise.all(exits);
  }

  /** (ahead + 1) attempts must end before this one starts, `maxThreads` at a time. */
  private expectedWaitMs(ahead: number, fallbackHoldMs: number): number {
    // before any attempt has run, assume each holds its thread for the whole wait allowed
    return ((ahead + 1) / this.maxThreads) * (this.holdMs ?? fallbackHoldMs);
  }

  private busy(excessMs: number): ThreadRefusal {
    const retryAfterMs = Math.max(1_000, Math.ceil(excessMs));
    const message = `All ${this.maxThreads} runtime threads of ${this.memoryMb} MB are busy and ${this.waiters.length} attempts wait for them`;
    return refusal('busy', retryAfterMs, message);
  }

  private grant(thread: RuntimeThread): ThreadGrant {
    let used = false;
    return {
      granted: true,
      run: (req, signal) => {
        if (used) throw new Error('a thread grant runs one attempt');
        used = true;
        return this.dispatch(thread, req, signal);
      },
      release: () => {
        if (used) return;
        used = true;
        if (thread.state === 'dead') this.serveWaiter();
        else this.release(thread);
      },
    };
  }

  /** An idle thread, or a new one when there is room; null when every thread is taken. */
  private take(): RuntimeThread | null {
    const idle = this.idle.pop();
    if (idle !== undefined) {
      idle.state = 'reserved';
      idle.heldSince = performance.now();
      return idle;
    }
    if (this.threads.size < this.maxThreads) return this.spawn();
    return null;
  }

  private dispatch(held: RuntimeThread, req: RunRequest, signal?: AbortSignal): Promise<AttemptOutcome> {
    // the held thread died or saw someone else's error while it waited to be used: a fresh one takes its place
    const thread = held.state === 'dead' || held.retiring ? this.replace(held) : held;
    if (this.closed) {
      this.release(thread);
      return Promise.resolve(abortedOutcome('Runtimes is closed', 0, ''));
    }
    if (signal?.aborted) {
      this.release(thread);
      return Promise.resolve(abortedOutcome(describeReason(signal.reason), 0, ''));
    }
    thread.state = 'busy';

    return new Promise<AttemptOutcome>((resolve) => {
      const attempt: ActiveAttempt = {
        id: this.nextId++,
        moduleUrl: req.moduleUrl,
        log: new AttemptLog(),
        startedAt: performance.now(),
        heldSince: thread.heldSince,
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

  /** A thread finished its attempt (or was not used) and is healthy: hand it to a waiter or park it. */
  private release(thread: RuntimeThread): void {
    thread.current = null;
    if (thread.retiring) {
      void this.kill(thread);
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      thread.state = 'reserved';
      thread.heldSince = performance.now();
      waiter.grant(thread);
    } else {
      thread.state = 'idle';
      this.idle.push(thread);
    }
  }

  /** A thread is gone (killed or exited): forget it and, unless its place is still held, start a replacement if someone waits. */
  private remove(thread: RuntimeThread, placeIsFree = true): void {
    if (!this.threads.delete(thread)) return;
    thread.state = 'dead';
    const i = this.idle.indexOf(thread);
    if (i !== -1) this.idle.splice(i, 1);
    if (placeIsFree) this.serveWaiter();
  }

  /** Room for one more thread: the next waiter gets a new one. */
  private serveWaiter(): void {
    if (!this.closed && this.waiters.length > 0 && this.threads.size < this.maxThreads) {
      this.waiters.shift()?.grant(this.spawn());
    }
  }

  /** A held thread that cannot be used is ended; its holder gets a new one in its place. */
  private replace(thread: RuntimeThread): RuntimeThread {
    if (this.threads.delete(thread)) {
      thread.state = 'dead';
      void thread.worker.terminate();
    }
    const fresh = this.spawn();
    fresh.heldSince = thread.heldSince;
    return fresh;
  }

  private kill(thread: RuntimeThread): Promise<unknown> {
    this.clearTimer(thread.current);
    this.remove(thread);
    return thread.worker.terminate();
  }

  /** A new thread, already reserved for whoever asked for it. */
  private spawn(): RuntimeThread {
    const worker = startWorker(this.memoryMb);
    // Idle threads must not keep the process alive; an attempt's timer does while it runs.
    worker.unref();
    const thread: RuntimeThread = {
      worker,
      state: 'reserved',
      current: null,
      lastError: undefined,
      loaded: new Set(),
      retiring: false,
      heldSince: performance.now(),
    };
    this.threads.add(thread);
    worker.on('message', (msg: FromThread) => this.onMessage(thread, msg));
    worker.on('error', (err: Error) => {
      thread.lastError = err;
    });
    worker.on('exit', (code) => this.onExit(thread, code));
    return thread;
  }

  private onMessage(thread: RuntimeThread, msg: FromThread): void {
    if (msg.t === 'stray') {
      this.onStray(thread, msg);
      return;
    }
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
      case 'crash':
        // the attempt's own code threw where nothing could catch it: as if the runtime exited
        this.settleFailure(attempt, crashError(1, Object.assign(new Error(msg.error.message), msg.error), this.memoryMb));
        void this.kill(thread);
        return;
      default:
        return;
    }
  }

  /** Someone else's code misbehaved in this thread: blame no attempt, retire the thread. */
  private onStray(thread: RuntimeThread, msg: StrayMessage): void {
    if (!this.closed) {
      this.logger.warn(
        { culprit: msg.culprit, err: { type: msg.error.name, message: msg.error.message, stack: msg.error.stack } },
        msg.culprit
          ? `runtime thread retired: code of ${msg.culprit.functionName} (invocation ${msg.culprit.invocationId}, attempt ${msg.culprit.attempt}) failed after its attempt ended`
          : 'runtime thread retired: an error no attempt can be blamed for',
      );
    }
    thread.retiring = true;
    if (thread.state === 'idle') void this.kill(thread);
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
    // a reserved thread's place still belongs to its holder, who replaces it when it runs
    this.remove(thread, thread.state !== 'reserved');
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
    const held = performance.now() - attempt.heldSince;
    this.holdMs = this.holdMs === undefined ? held : this.holdMs + HOLD_EWMA_WEIGHT * (held - this.holdMs);
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

function refusal(reason: ThreadRefusal['reason'], retryAfterMs: number, message: string): ThreadRefusal {
  return { granted: false, reason, retryAfterMs, message };
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
