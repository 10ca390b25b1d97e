// Completions, group-committed (db/group-commit.ts): outcomes wait while a write is in
// flight and go together in the next one, so many attempts cost one statement. A group
// whose functions have destinations commits its outcome events and the delivery intents
// in one transaction. An outcome the database refuses on its own is recorded as a
// failure of its attempt (OutcomeNotStored) instead, and its neighbours are unaffected.
import type { Logger } from 'pino';
import { outcomeNotStored, recordOutcomes, type Outcome } from '../../db/attempts.ts';
import { isDatabaseUnavailable, SequenceConflict } from '../../db/errors.ts';
import { GroupCommit, OUTCOME_RETRY } from '../../db/group-commit.ts';
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
  /** how long a group is retried while the database is unreachable (default 60 s) */
  retryForMs?: number;
  /** told the size of every group written (ledger_commit_batch_size{kind="async_outcome"}) */
  onBatch?: (size: number) => void;
}

export class CompletionFlusher {
  private readonly commit: GroupCommit<Completion, Recorded>;

  constructor(private readonly o: CompletionOptions) {
    this.commit = new GroupCommit((items) => this.write(items), {
      maxBatch: o.maxBatch ?? 1000,
      maxConcurrentFlushes: o.maxConcurrentFlushes ?? 2,
      retry: o.retryForMs === undefined ? OUTCOME_RETRY : { retryForMs: o.retryForMs },
      // a stale attempt (reaped meanwhile) is not replaced: its loss is already recorded
      replace: (item, e) => (e instanceof SequenceConflict ? null : { ...item, outcome: outcomeNotStored(item.outcome, e) }),
    });
  }

  /** outcomes waiting, plus writes in flight */
  get size(): number {
    return this.commit.size;
  }

  /** Never rejects: an outcome that could not be recorded resolves null, and its lease expires. */
  submit(item: Completion): Promise<Recorded> {
    return this.commit.submit(item).catch((e: unknown) => {
      const invocationId = item.attempt.state.id;
      if (e instanceof SequenceConflict) this.o.logger.warn({ invocationId }, 'outcome not recorded: the attempt was already recorded as lost');
      else if (isDatabaseUnavailable(e)) this.o.logger.error({ err: e, invocationId }, 'outcome not recorded; its lease will expire and it will be retried');
      else this.o.logger.error({ err: e, invocationId }, 'outcome refused by the database, and so was its replacement; its lease will expire');
      return null;
    });
  }

  /** resolves when everything submitted so far is written (or given up) */
  drained(): Promise<void> {
    return this.commit.drained();
  }

  private async write(items: readonly Completion[]): Promise<Recorded[]> {
    this.o.onBatch?.(items.length);
    const finished = items.map(({ attempt, outcome }) => ({ state: attempt.state, policy: attempt.policy, outcome }));
    const record = async (db: Executor) => {
      const { results, rejected } = await recordOutcomes(db, finished);
      if (rejected.length > 0) this.o.logger.error({ rejected: rejected.map((r) => r.error.message) }, 'outcome rejected');
      return new Map(results.map((r) => [r.invocationId, r.state]));
    };
    let byId: Map<string, InvocationState>;
    if (items.some((i) => hasDestinations(i.attempt.fn))) {
      byId = await this.o.db.transaction().execute(async (tx) => {
        const written = await record(tx);
        const terminal: FinishedInvocation[] = [];
        for (const { attempt, outcome } of items) {
          const state = written.get(attempt.state.id);
          if (!state || (state.status !== 'succeeded' && state.status !== 'dead_lettered')) continue;
          terminal.push({
            state,
            fn: attempt.fn,
            payload: attempt.payload,
            ...(outcome.ok ? { result: outcome.result } : { error: outcome.error }),
          });
        }
        if (terminal.length > 0) await this.o.onTerminal(tx, terminal);
        return written;
      });
    } else {
      byId = await record(this.o.db);
    }
    return items.map((i) => byId.get(i.attempt.state.id) ?? null);
  }
}
