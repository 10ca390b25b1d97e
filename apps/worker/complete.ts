// Completions, group-committed: outcomes wait while a flush is in flight and go together
// in the next one, so many attempts cost one statement. A batch whose functions have
// destinations commits its outcome events and the delivery intents in one transaction.
import type { Logger } from 'pino';
import { recordOutcomes, type Outcome } from '../../db/attempts.ts';
import { isDatabaseUnavailable, SequenceConflict } from '../../db/errors.ts';
import type { InvocationState } from '../../db/lifecycle.ts';
import type { Db, Executor } from '../../db/schema.ts';
import type { ClaimedAttempt } from './claim.ts';
import { hasDestinations, type FinishedInvocation } from './destinations.ts';

export interface Completion {
  attempt: ClaimedAttempt;
  outcome: Outcome;
}

/** The new state, or null when the outcome was not recorded (the lease was reaped first). */
export type Recorded = InvocationState | null;

export interface CompletionOptions {
  db: Db;
  logger: Logger;
  onTerminal: (tx: Executor, finished: FinishedInvocation[]) => Promise<void>;
  maxBatch?: number;
  maxConcurrentFlushes?: number;
  /** how long a flush is retried while the database is unreachable */
  retryForMs?: number;
}

interface Pending {
  item: Completion;
  resolve: (r: Recorded) => void;
}

export class CompletionFlusher {
  private pending: Pending[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly o: CompletionOptions) {}

  /** outcomes waiting or being written */
  get size(): number {
    return this.pending.length + this.inFlight;
  }

  submit(item: Completion): Promise<Recorded> {
    return new Promise((resolve) => {
      this.pending.push({ item, resolve });
      this.pump();
    });
  }

  /** resolves when everything submitted so far is written (or given up) */
  drained(): Promise<void> {
    if (this.pending.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    const max = this.o.maxConcurrentFlushes ?? 2;
    while (this.pending.length > 0 && this.inFlight < max) {
      const batch = this.pending.splice(0, this.o.maxBatch ?? 1000);
      this.inFlight++;
      this.flushWithRetry(batch.map((b) => b.item))
        .then((out) => batch.forEach((b, i) => b.resolve(out[i] ?? null)))
        .finally(() => {
          this.inFlight--;
          this.pump();
          if (this.pending.length === 0 && this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  private async flushWithRetry(items: Completion[]): Promise<Recorded[]> {
    const until = Date.now() + (this.o.retryForMs ?? 60_000);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.flush(items);
      } catch (e) {
        if (e instanceof SequenceConflict && items.length > 1) {
          // one of them was reaped meanwhile: record them one by one and drop the loser
          const out: Recorded[] = [];
          for (const item of items) out.push(...(await this.flushWithRetry([item])));
          return out;
        }
        if (e instanceof SequenceConflict) {
          this.o.logger.warn({ invocationId: items[0]?.attempt.state.id }, 'outcome not recorded: the attempt was already recorded as lost');
          return [null];
        }
        if (!isDatabaseUnavailable(e) || Date.now() > until) {
          this.o.logger.error({ err: e, count: items.length }, 'outcomes not recorded; their leases will expire and be retried');
          return items.map(() => null);
        }
        await new Promise((r) => setTimeout(r, Math.min(2_000, 50 * 2 ** attempt)));
      }
    }
  }

  private async flush(items: Completion[]): Promise<Recorded[]> {
    const finished = items.map(({ attempt, outcome }) => ({ state: attempt.state, policy: attempt.fn, outcome }));
    const write = async (db: Executor) => {
      const { results, rejected } = await recordOutcomes(db, finished);
      if (rejected.length > 0) this.o.logger.error({ rejected: rejected.map((r) => r.error.message) }, 'outcome rejected');
      const byId = new Map(results.map((r) => [r.invocationId, r.state]));
      return { byId, results };
    };
    let byId: Map<string, InvocationState>;
    if (items.some((i) => hasDestinations(i.attempt.fn))) {
      byId = await this.o.db.transaction().execute(async (tx) => {
        const written = await write(tx);
        const terminal: FinishedInvocation[] = [];
        for (const { attempt, outcome } of items) {
          const state = written.byId.get(attempt.state.id);
          if (!state || (state.status !== 'succeeded' && state.status !== 'dead_lettered')) continue;
          terminal.push({
            state,
            fn: attempt.fn,
            payload: attempt.payload,
            ...(outcome.ok ? { result: outcome.result } : { error: outcome.error }),
          });
        }
        if (terminal.length > 0) await this.o.onTerminal(tx, terminal);
        return written.byId;
      });
    } else {
      byId = (await write(this.o.db)).byId;
    }
    return items.map((i) => byId.get(i.attempt.state.id) ?? null);
  }
}
