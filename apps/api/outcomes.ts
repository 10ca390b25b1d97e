// Waiting for invocations to end: sync duplicates of an idempotency key wait here for the
// first invocation's outcome. Every waiter of the process shares one check: on each
// ledger notification (LISTEN ledger_events, through the process's one listener) and on
// a slow safety-net timer, ONE query asks which of all the awaited invocations have
// ended. So a few hundred waiters cost one small query per commit burst, not a poll loop
// each, and a waiter whose client went away stops costing anything at once.
import { finishedAmong } from '../../db/invocations.ts';
import type { LedgerNotifications } from '../../db/notifications.ts';
import type { Executor } from '../../db/schema.ts';
import { EVENTS_CHANNEL } from '../../db/writer.ts';

export type WaitOutcome = 'finished' | 'timeout' | 'aborted';

export interface OutcomeWaitersOptions {
  db: Executor;
  /** without it the check runs only on the timer */
  notifications?: LedgerNotifications;
  /** the safety-net check while anyone waits (default 1 s; 250 ms without notifications) */
  pollIntervalMs?: number;
  onError?: (e: unknown) => void;
}

export class OutcomeWaiters {
  private readonly waiting = new Map<string, Set<() => void>>();
  private unlisten: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private checking = false;
  private checkAgain = false;
  /** queries made, for tests */
  checks = 0;

  constructor(private readonly o: OutcomeWaitersOptions) {}

  /** Invocations someone waits for right now. */
  get size(): number {
    return this.waiting.size;
  }

  /** Waiters right now (several may wait for one invocation). */
  get waiters(): number {
    let n = 0;
    for (const s of this.waiting.values()) n += s.size;
    return n;
  }

  /** Until the invocation has ended, `timeoutMs` passed, or `signal` aborted. */
  wait(id: string, timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (signal?.aborted) return Promise.resolve('aborted');
    return new Promise<WaitOutcome>((resolve) => {
      let set = this.waiting.get(id);
      if (!set) this.waiting.set(id, (set = new Set()));
      const done = (outcome: WaitOutcome) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const s = this.waiting.get(id);
        if (s?.delete(finished) && s.size === 0) this.waiting.delete(id);
        if (this.waiting.size === 0) this.idle();
        resolve(outcome);
      };
      const finished = () => done('finished');
      const onAbort = () => done('aborted');
      const timer = setTimeout(() => done('timeout'), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(finished);
      this.busy();
      // it may have ended between the caller's read and now: look once
      this.check();
    });
  }

  private busy(): void {
    if (!this.unlisten && this.o.notifications) this.unlisten = this.o.notifications.on(EVENTS_CHANNEL, () => this.check());
    if (!this.timer) {
      const ms = this.o.pollIntervalMs ?? (this.o.notifications ? 1_000 : 250);
      this.timer = setInterval(() => this.check(), ms);
      this.timer.unref?.();
    }
  }

  private idle(): void {
    this.unlisten?.();
    this.unlisten = null;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One query for every waiter; wake-ups during it fold into one more. */
  private check(): void {
    if (this.waiting.size === 0) return;
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = true;
    this.checks++;
    finishedAmong(this.o.db, [...this.waiting.keys()])
      .then((ids) => {
        for (const id of ids) for (const wake of [...(this.waiting.get(id) ?? [])]) wake();
      })
      .catch((e: unknown) => this.o.onError?.(e))
      .finally(() => {
        this.checking = false;
        if (this.checkAgain) {
          this.checkAgain = false;
          this.check();
        }
      });
  }
}
