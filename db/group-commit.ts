// Group commit: callers hand in one item each; while a write is in flight, new items wait
// and then go together in the next one. No timer, so an idle process adds no latency and
// a busy one writes many items per statement. Accepts, sync and async outcomes and queue
// batch settles all go through it, with one retry policy:
//
// - the database refused the statement as a whole (deadlock, serialization failure):
//   nothing was written, the group is written again at once, a few times;
// - the database is unreachable: the group waits and is written again until `retryForMs`
//   has passed (0 when the caller should be told instead: an accept whose commit may or
//   may not have happened must not be written twice);
// - anything else is taken to be the fault of one item: the group is split in halves and
//   each written on its own, down to single items, so only the item at fault fails.
//   Entry points refuse what PostgreSQL cannot store (db/storable.ts) before it gets here;
//   this is what keeps a neighbour's bad byte from failing a batch when one slips through.
import { isDatabaseUnavailable, isTransientConflict } from './errors.ts';

export interface RetryPolicy {
  /** how long a group waits for an unreachable database (0: fail at once) */
  retryForMs: number;
}

/** Outcomes are written until the database comes back, up to a minute: the function has run. */
export const OUTCOME_RETRY: RetryPolicy = { retryForMs: 60_000 };
/** Accepts are not retried once the database is unreachable: the caller gets 503 and retries. */
export const NO_RETRY: RetryPolicy = { retryForMs: 0 };

const CONFLICT_RETRIES = 5;

/** The database rolled the statement back for a reason of its own: writing it again may succeed. */
export const isWriteConflict = isTransientConflict;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `write`, again after a conflict or while the database is unreachable, as the policy says. */
export async function withRetries<T>(write: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  const until = Date.now() + policy.retryForMs;
  for (let attempt = 0, conflicts = 0; ; attempt++) {
    try {
      return await write();
    } catch (e) {
      if (isWriteConflict(e) && conflicts++ < CONFLICT_RETRIES) continue;
      if (!isDatabaseUnavailable(e) || Date.now() >= until) throw e;
      await sleep(Math.min(2_000, 50 * 2 ** attempt, Math.max(0, until - Date.now())));
    }
  }
}

export interface GroupCommitOptions<I> {
  /** items per write (default 500) */
  maxBatch?: number;
  /** writes in flight at once (default 2) */
  maxConcurrentFlushes?: number;
  retry?: RetryPolicy;
  /**
   * What to write instead of an item the database refused on its own, or null to fail
   * it. An outcome becomes an error of its own attempt, so the ledger still tells what
   * happened. The replacement is written once and not replaced again.
   */
  replace?: (item: I, error: unknown) => I | null;
}

type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class GroupCommit<I, O> {
  private pending: Pending<I, O>[] = [];
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    /** writes a group; one output per item, in order. Nothing of a group that throws may have been written. */
    private readonly write: (items: readonly I[]) => Promise<readonly O[]>,
    private readonly options: GroupCommitOptions<I> = {},
  ) {}

  /** Resolves with the item's output, or rejects with the error of the item alone (or of an unreachable database). */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.pump();
    });
  }

  /** items waiting, plus writes in flight (a measure of backlog for callers that pace themselves) */
  get size(): number {
    return this.pending.length + this.inFlight;
  }

  /** resolves when everything submitted so far is written (or has failed) */
  drained(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    const maxFlushes = this.options.maxConcurrentFlushes ?? 2;
    while (this.pending.length > 0 && this.inFlight < maxFlushes) {
      const batch = this.pending.splice(0, this.options.maxBatch ?? 500);
      this.inFlight++;
      void this.commit(batch.map((b) => b.item))
        .catch((error: unknown) => batch.map(() => ({ ok: false as const, error })))
        .then((settled) => {
          batch.forEach((b, i) => {
            const s = settled[i];
            if (s?.ok) b.resolve(s.value);
            else b.reject(s ? s.error : new Error('group commit: no output for an item'));
          });
        })
        .finally(() => {
          this.inFlight--;
          this.pump();
          if (this.size === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }

  /** Writes a group; on an item fault, its halves, down to the item at fault. */
  private async commit(items: readonly I[], replaced = false): Promise<Settled<O>[]> {
    try {
      const out = await withRetries(() => this.write(items), this.options.retry ?? NO_RETRY);
      return out.map((value) => ({ ok: true as const, value }));
    } catch (error) {
      // an unreachable database is nobody's fault: splitting would only wait longer
      if (isDatabaseUnavailable(error) || isWriteConflict(error)) return items.map(() => ({ ok: false as const, error }));
      if (items.length > 1) {
        const mid = Math.ceil(items.length / 2);
        return [...(await this.commit(items.slice(0, mid), replaced)), ...(await this.commit(items.slice(mid), replaced))];
      }
      const instead = replaced ? null : (this.options.replace?.(items[0] as I, error) ?? null);
      if (instead === null) return [{ ok: false, error }];
      const [settled] = await this.commit([instead], true);
      return [settled?.ok ? settled : { ok: false, error }];
    }
  }
}
